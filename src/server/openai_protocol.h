// The OpenAI HTTP API as elutq serves it: requests of /v1/chat/completions and /v1/completions
// parsed and checked into plain structs, and the JSON of responses, stream chunks and errors.
// No I/O: http_server.cpp moves the bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "generate/chat_template.h"
#include "generate/sampler.h"

namespace elutq {

// An error as OpenAI's API reports it: HTTP status, and the body
// {"error": {"message", "type", "param", "code"}}.
struct ApiError : std::runtime_error {
  int status;
  std::string type;   // "invalid_request_error", "authentication_error", ...
  std::string param;  // the offending field, or ""
  ApiError(int status, std::string type, const std::string& message, std::string param = "")
      : std::runtime_error(message), status(status), type(std::move(type)), param(std::move(param)) {}
};

std::string error_json(const ApiError& e);

struct CompletionRequest {
  bool chat = false;                  // /v1/chat/completions (messages) or /v1/completions
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // completions
  bool stream = false;
  bool include_usage = false;         // stream_options.include_usage: a last chunk with usage
  std::optional<int> max_tokens;      // unset: until the end of text or of the context
  std::vector<std::string> stop;      // up to 4 strings; the text ends before the first found
  SamplerOptions sampling;            // OpenAI's defaults: temperature 1, top_p 1, no top-k/min-p
  std::optional<uint64_t> seed;       // unset: the server draws one
  std::string model;                  // echoed back
};

// Parses a request body; throws ApiError (400) naming the field for malformed JSON, a field of
// the wrong type or out of range, or a missing one.
CompletionRequest parse_completion_request(const std::string& body, bool chat);

struct Usage {
  int prompt_tokens = 0, completion_tokens = 0;
};

// "stop" (end of text or a stop string), "length" (max_tokens or the context).
struct CompletionResult {
  std::string text;
  std::string finish_reason;
  Usage usage;
};

// A whole (non-streamed) response.
std::string completion_json(const CompletionRequest& req, const std::string& id, int64_t created,
                            const CompletionResult& r);
// One streamed chunk: a piece of text (role on the first chat chunk), or the finish reason
// (finish non-empty, delta empty), or only usage (usage_only: choices empty).
std::string chunk_json(const CompletionRequest& req, const std::string& id, int64_t created,
                       const std::string& delta, bool first, const std::string& finish,
                       const Usage* usage);

// GET /v1/models.
std::string models_json(const std::string& model_id, int64_t created);

}  // namespace elutq
