// The HTTP endpoints; see http_server.h.
#include "server/http_server.h"

#include <httplib.h>

#include <atomic>
#include <ctime>
#include <random>

#include "core/error.h"
#include "server/openai_protocol.h"

namespace elutq {

struct OpenAiServer::Impl {
  BatchEngine& engine;
  const Tokenizer& tok;
  ChatTemplate chat;
  ServerOptions opt;
  httplib::Server http;
  std::atomic<uint64_t> ids{0};
  std::atomic<int64_t> errors{0};
  std::mutex rng_mu;
  std::mt19937_64 rng{std::random_device{}()};

  Impl(BatchEngine& e, const Tokenizer& t, const ChatTemplate& c, const ServerOptions& o)
      : engine(e), tok(t), chat(c), opt(o) {}

  void reply_error(httplib::Response& res, const ApiError& e) {
    ++errors;
    res.status = e.status;
    res.set_content(error_json(e), "application/json");
  }

  void check_key(const httplib::Request& req) const {
    if (opt.api_key.empty()) return;
    if (req.get_header_value("Authorization") != "Bearer " + opt.api_key)
      throw ApiError(401, "authentication_error",
                     req.has_header("Authorization") ? "the API key is not valid"
                                                     : "an API key is required (Authorization: "
                                                       "Bearer KEY)",
                     "");
  }

  std::vector<int> prompt_ids(const CompletionRequest& r) const {
    if (r.chat) return chat_prompt_ids(tok, render_chat_prompt(chat, r.messages, true));
    std::vector<int> ids = tok.encode(r.prompt, /*add_special=*/false);
    const TokenizerSpec& spec = tok.spec();
    if (spec.add_bos && spec.bos_id >= 0) ids.insert(ids.begin(), spec.bos_id);
    return ids;
  }

  void completions(const httplib::Request& req, httplib::Response& res, bool chat_api) {
    CompletionRequest r;
    std::shared_ptr<GenerationJob> job;
    try {
      check_key(req);
      r = parse_completion_request(req.body, chat_api);
      if (r.model.empty()) r.model = opt.model_id;
      job = std::make_shared<GenerationJob>();
      try {
        job->prompt = prompt_ids(r);
      } catch (const Error& e) {
        throw ApiError(400, "invalid_request_error", e.what(), chat_api ? "messages" : "prompt");
      }
      const int ctx = engine.options().slot_ctx;
      if (job->prompt.empty())
        throw ApiError(400, "invalid_request_error", "the prompt is empty", "");
      if (int(job->prompt.size()) >= ctx)
        throw ApiError(400, "invalid_request_error",
                       "the prompt has " + std::to_string(job->prompt.size()) +
                           " tokens; the context holds " + std::to_string(ctx) +
                           " (prompt and completion together)",
                       chat_api ? "messages" : "prompt");
      job->sampling = r.sampling;
      {
        std::lock_guard<std::mutex> lock(rng_mu);
        job->sampling.seed = r.seed ? *r.seed : rng();
      }
      job->max_tokens = r.max_tokens.value_or(0);
      job->stop = r.stop;
      try {
        engine.submit(job);
      } catch (const Error& e) {
        res.set_header("Retry-After", "1");
        throw ApiError(429, "rate_limit_error", e.what(), "");
      }
    } catch (const ApiError& e) {
      reply_error(res, e);
      return;
    }
    const std::string id = (chat_api ? "chatcmpl-" : "cmpl-") + std::to_string(++ids);
    const int64_t created = int64_t(std::time(nullptr));
    if (!r.stream) {
      CompletionResult out;
      std::string piece;
      while (job->next(&piece)) out.text += piece;
      std::lock_guard<std::mutex> lock(job->mu);
      if (job->finish_reason == "error") {
        reply_error(res, ApiError(503, "server_error", job->error, ""));
        return;
      }
      out.finish_reason = job->finish_reason;
      out.usage = {job->prompt_tokens, job->completion_tokens};
      res.set_content(completion_json(r, id, created, out), "application/json");
      return;
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream", [this, r, job, id, created](size_t, httplib::DataSink& sink) {
          const auto send = [&](const std::string& data) {
            const std::string event = "data: " + data + "\n\n";
            return sink.write(event.data(), event.size());
          };
          bool first = true;
          std::string piece;
          // A role chunk first (chat), as OpenAI sends it, so clients see the stream open.
          if (r.chat && !send(chunk_json(r, id, created, "", true, "", nullptr))) {
            job->cancelled = true;
            return false;
          }
          first = !r.chat;
          while (job->next(&piece)) {
            if (piece.empty()) continue;
            if (!send(chunk_json(r, id, created, piece, first, "", nullptr))) {
              job->cancelled = true;  // the client went away: free its slot
              return false;
            }
            first = false;
          }
          std::string finish, error;
          Usage usage;
          {
            std::lock_guard<std::mutex> lock(job->mu);
            finish = job->finish_reason;
            error = job->error;
            usage = {job->prompt_tokens, job->completion_tokens};
          }
          if (finish == "error") {
            ++errors;
            send(error_json(ApiError(503, "server_error", error, "")));
          } else {
            send(chunk_json(r, id, created, "", false, finish, nullptr));
            if (r.include_usage) send(chunk_json(r, id, created, "", false, "", &usage));
          }
          send("[DONE]");
          sink.done();
          return true;
        });
  }

  std::string metrics() const {
    const EngineStats s = engine.stats();
    std::string m;
    const auto add = [&](const char* name, const char* type, const char* help, double v) {
      m += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + std::to_string(v) + "\n";
    };
    add("elutq_requests_total", "counter", "Generation requests accepted.", double(s.requests));
    add("elutq_request_errors_total", "counter", "Requests answered with an error.",
        double(errors.load()));
    add("elutq_prompt_tokens_total", "counter", "Prompt tokens read.", double(s.prompt_tokens));
    add("elutq_completion_tokens_total", "counter", "Tokens generated.",
        double(s.completion_tokens));
    add("elutq_queue_depth", "gauge", "Requests waiting for a slot.", double(s.queue_depth));
    add("elutq_active_slots", "gauge", "Slots generating.", double(s.active));
    add("elutq_steps_total", "counter", "Batches run through the model.", double(s.steps));
    add("elutq_forward_seconds_total", "counter", "Time in the model's forward passes.",
        s.forward_seconds);
    add("elutq_sampling_seconds_total", "counter", "Time drawing tokens from the logits.",
        s.sampling_seconds);
    add("elutq_decode_tokens_per_second", "gauge",
        "Tokens decoded per second of decoding steps, over the server's life.",
        s.decode_seconds > 0 ? double(s.decode_tokens) / s.decode_seconds : 0.0);
    return m;
  }

  void routes() {
    http.set_payload_max_length(opt.max_body_bytes);
    const int threads = opt.http_threads > 0
                            ? opt.http_threads
                            : engine.options().parallel + engine.options().max_queue + 4;
    http.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
    http.Post("/v1/chat/completions", [this](const httplib::Request& q, httplib::Response& s) {
      completions(q, s, true);
    });
    http.Post("/v1/completions", [this](const httplib::Request& q, httplib::Response& s) {
      completions(q, s, false);
    });
    http.Get("/v1/models", [this](const httplib::Request& q, httplib::Response& s) {
      try {
        check_key(q);
      } catch (const ApiError& e) {
        reply_error(s, e);
        return;
      }
      s.set_content(models_json(opt.model_id, int64_t(std::time(nullptr))), "application/json");
    });
    http.Get("/health", [](const httplib::Request&, httplib::Response& s) {
      s.set_content("{\"status\":\"ok\"}", "application/json");
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& s) {
      s.set_content(metrics(), "text/plain; version=0.0.4");
    });
    http.set_error_handler([this](const httplib::Request& q, httplib::Response& s) {
      if (!s.body.empty()) return;
      const std::string what = s.status == 404 ? "no such endpoint: " + q.method + " " + q.path
                               : s.status == 413 ? "the request body is too large"
                                                 : "the request failed";
      s.set_content(error_json(ApiError(s.status, "invalid_request_error", what, "")),
                    "application/json");
    });
    http.set_exception_handler(
        [this](const httplib::Request&, httplib::Response& s, std::exception_ptr ep) {
          std::string what = "internal error";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          reply_error(s, ApiError(500, "server_error", what, ""));
        });
  }
};

OpenAiServer::OpenAiServer(BatchEngine& engine, const Tokenizer& tok, const ChatTemplate& chat,
                           const ServerOptions& opt)
    : impl_(std::make_unique<Impl>(engine, tok, chat, opt)) {
  impl_->routes();
}

OpenAiServer::~OpenAiServer() { stop(); }

int OpenAiServer::bind() {
  Impl& I = *impl_;
  if (I.opt.port == 0) {
    const int p = I.http.bind_to_any_port(I.opt.host);
    require(p > 0, "cannot listen on ", I.opt.host, ": no free port or a bad address");
    return p;
  }
  require(I.http.bind_to_port(I.opt.host, I.opt.port), "cannot listen on ", I.opt.host, ":",
          I.opt.port, " (in use, or not an address of this machine); pick another --port");
  return I.opt.port;
}

void OpenAiServer::run() { impl_->http.listen_after_bind(); }

void OpenAiServer::stop() {
  if (impl_->http.is_running()) impl_->http.stop();
}

}  // namespace elutq
