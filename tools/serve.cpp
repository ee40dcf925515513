// `elutq serve`: an OpenAI-compatible HTTP server (src/server/): chat and text completions,
// streamed or whole, for many clients at once, their decoding steps batched through one model.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "cli.h"
#include "core/error.h"
#include "generate/chat_template.h"
#include "kernel_options.h"
#include "model/model.h"
#include "runtime/open_model.h"
#include "server/batch_engine.h"
#include "server/http_server.h"
#include "tokenizer/tokenizer.h"

namespace elutq::cli {
namespace {

int g_stop_pipe[2] = {-1, -1};

void on_stop_signal(int sig) {
  const char c = char(sig);
  (void)!::write(g_stop_pipe[1], &c, 1);
}

int run_serve(int argc, char** argv) {
  CLI::App app(
      "Serve a model over HTTP with the OpenAI API (POST /v1/chat/completions, /v1/completions; "
      "GET /v1/models, /health, /metrics), to any OpenAI client, e.g. "
      "OpenAI(base_url=\"http://127.0.0.1:8080/v1\", api_key=\"x\").",
      argv[0]);
  std::string model, chat_template;
  ServerOptions so;
  EngineOptions eo;
  int threads = 0;
  app.add_option("-m,--model", model, "model: GGUF file (e.g. one elutq quantize wrote) or "
                 "Hugging Face folder")->required();
  app.add_option("--host", so.host, "address to listen on (default 127.0.0.1: this machine only)");
  app.add_option("--port", so.port, "port (default 8080; 0: any free one, printed)");
  app.add_option("--parallel", eo.parallel,
                 "requests generated at once, batched together (default 4)");
  app.add_option("-c,--ctx-size", eo.slot_ctx,
                 "context per request in tokens, prompt and answer together (default 2048)");
  app.add_option("--queue", eo.max_queue,
                 "requests that may wait for a free slot; more get HTTP 429 (default 32)");
  app.add_option("--api-key", so.api_key, "require 'Authorization: Bearer KEY' on API requests");
  app.add_option("--chat-template", chat_template, "use a built-in chat format instead of the "
                 "model's: chatml, llama2, llama3 or zephyr");
  app.add_option("-t,--threads", threads, "threads for the model (default: all cores)");
  KernelOptions kernel_opts;
  kernel_opts.add_to(app);
  int code = 0;
  if (!parse(app, argc, argv, &code)) return code;
  require(eo.parallel >= 1 && eo.parallel <= 64, "--parallel must be 1..64, got ", eo.parallel);
  require(eo.slot_ctx >= 16, "--ctx-size must be at least 16, got ", eo.slot_ctx);
  require(eo.max_queue >= 1, "--queue must be at least 1, got ", eo.max_queue);
  require(so.port >= 0 && so.port <= 65535, "--port must be 0..65535, got ", so.port);

  // SIGINT / SIGTERM: the handler only writes a byte to a pipe; a thread of ours reads it and
  // stops the engine and the server. (Masking the signals would not do: threads started before
  // main, OpenBLAS's, would still take them and end the process on the spot.)
  require(::pipe(g_stop_pipe) == 0, "cannot create a pipe");
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that hangs up is a failed write, not the end of us

  auto src = open_model(model);
  const Tokenizer tok(src->tokenizer());
  const ChatTemplate chat = chat_template_for(tok.spec(), chat_template);
  if (eo.slot_ctx > src->config().max_seq_len) {
    std::fprintf(stderr, "note: --ctx-size %d exceeds the model's trained context %d; using %d\n",
                 eo.slot_ctx, src->config().max_seq_len, src->config().max_seq_len);
    eo.slot_ctx = src->config().max_seq_len;
  }
  ModelOptions mo;
  mo.n_threads = threads;
  mo.linear_factory = kernel_opts.factory_for(*src);
  mo.max_ctx = eo.parallel * eo.slot_ctx;
  mo.max_batch = eo.parallel + eo.prefill_chunk;
  Model m(*src, mo);
  BatchEngine engine(m, tok, eo);
  so.model_id = std::filesystem::path(model).filename().string();
  OpenAiServer server(engine, tok, chat, so);
  const int port = server.bind();
  std::fprintf(stderr,
               "serving %s on http://%s:%d/v1 (%d parallel, %d tokens each, %d threads); "
               "Ctrl-C stops\n",
               so.model_id.c_str(), so.host.c_str(), port, eo.parallel, eo.slot_ctx,
               m.pool().size());
  std::fflush(stderr);
  std::thread stopper([&] {
    char sig = 0;
    while (::read(g_stop_pipe[0], &sig, 1) < 0 && errno == EINTR) {
    }
    if (sig != 0)
      std::fprintf(stderr, "stopping (%s): requests in flight end with an error\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM");
    engine.stop();  // every waiting handler wakes up and answers
    server.stop();
  });
  server.run();
  const char none = 0;  // the server ended by itself: let the stopper finish too
  (void)!::write(g_stop_pipe[1], &none, 1);
  stopper.join();
  return 0;
}

const VerbRegistrar reg({"serve", "serve a model with an OpenAI-compatible HTTP API",
                         run_serve});

}  // namespace
}  // namespace elutq::cli
