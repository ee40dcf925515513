// `elutq serve`'s HTTP side, on cpp-httplib: the OpenAI endpoints (chat and text completions,
// streamed as server-sent events or whole; models), /health and Prometheus /metrics, an optional
// API key, errors in OpenAI's JSON shape. Generation runs in a BatchEngine.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "generate/chat_template.h"
#include "server/batch_engine.h"
#include "tokenizer/tokenizer.h"

namespace elutq {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;             // 0: any free port (bind() says which)
  std::string api_key;         // non-empty: requests need "Authorization: Bearer KEY"
  std::string model_id;        // what /v1/models lists and responses echo
  uint64_t max_body_bytes = 8u << 20;
  int http_threads = 0;        // connections served at once; 0: slots + queue + 4
};

class OpenAiServer {
 public:
  OpenAiServer(BatchEngine& engine, const Tokenizer& tok, const ChatTemplate& chat,
               const ServerOptions& opt);
  ~OpenAiServer();

  // Binds the socket; returns the port. Throws Error if the address is taken or invalid.
  int bind();
  // Serves until stop() (from another thread or a signal handler thread).
  void run();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace elutq
