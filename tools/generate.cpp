// `elutq generate`: continues a prompt (or answers it as a chat turn through the model's chat
// template), printing text as it is generated, then timing figures on stderr.
#include <chrono>
#include <cstdio>

#include "cli.h"
#include "core/error.h"
#include "generate/chat_template.h"
#include "generate/sampler.h"
#include "generate/text_stream.h"
#include "kernel_options.h"
#include "model/model.h"
#include "runtime/open_model.h"
#include "tensor/model_source.h"
#include "tokenizer/tokenizer.h"

namespace elutq::cli {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int run_generate(int argc, char** argv) {
  CLI::App app("Generate text with a model: continue a prompt, or answer it as a chat.", argv[0]);
  std::string model, prompt, system, chat_template, tok_path;
  int n_predict = 128, threads = 0, top_k = 40;
  float temp = 0.8f, top_p = 0.95f, min_p = 0.05f, repeat_penalty = 1.0f;
  uint64_t seed = 42;
  bool chat = false, print_prompt = false;
  app.add_option("-m,--model", model, "model: GGUF file, Hugging Face folder or llama2.c .bin")
      ->required();
  app.add_option("-p,--prompt", prompt, "the text to continue (with --chat: the user's message)");
  app.add_option("-n,--max-tokens", n_predict, "stop after this many new tokens (default 128)");
  app.add_option("--temp", temp, "sampling temperature; 0 = greedy, always the likeliest token "
                 "(default 0.8)");
  app.add_option("--top-k", top_k, "sample only among the K likeliest tokens; 0 = no limit "
                 "(default 40)");
  app.add_option("--top-p", top_p, "sample only among the likeliest tokens whose probabilities "
                 "add up to P; 1 = off (default 0.95)");
  app.add_option("--min-p", min_p, "drop tokens less likely than P times the likeliest; 0 = off "
                 "(default 0.05)");
  app.add_option("--repeat-penalty", repeat_penalty, "make tokens seen in the last 64 less "
                 "likely; 1 = off (default 1)");
  app.add_option("--seed", seed, "random seed; the same seed gives the same text (default 42)");
  app.add_flag("--chat", chat, "treat the prompt as a chat message, formatted with the model's "
               "chat template");
  app.add_option("--system", system, "with --chat: a system message");
  app.add_option("--chat-template", chat_template, "with --chat: use a built-in format instead "
                 "of the model's template: chatml, llama2, llama3 or zephyr");
  app.add_flag("--print-prompt", print_prompt, "print the formatted prompt and its token ids to "
               "stderr before generating");
  app.add_option("-t,--threads", threads, "threads (default: all cores)");
  KernelOptions kernel_opts;
  kernel_opts.add_to(app);
  app.add_option("--tokenizer", tok_path, "llama2.c tokenizer.bin (default: found beside the model)");
  int code = 0;
  if (!parse(app, argc, argv, &code)) return code;
  require(n_predict >= 0, "--max-tokens must be >= 0, got ", n_predict);
  require(top_k >= 0, "--top-k must be >= 0, got ", top_k);
  require(top_p > 0 && top_p <= 1, "--top-p must be in (0, 1], got ", top_p);
  require(min_p >= 0 && min_p < 1, "--min-p must be in [0, 1), got ", min_p);
  require(temp >= 0, "--temp must be >= 0, got ", temp);

  auto src = open_model(model, tok_path);
  const Tokenizer tok(src->tokenizer());
  require(tok.vocab_size() > 0, "'", model, "' carries no tokenizer; pass --tokenizer");
  const auto& spec = tok.spec();

  std::vector<int> ids;
  bool at_text_start = false;
  if (chat) {
    require(!prompt.empty(), "--chat needs a message: pass -p TEXT");
    const ChatTemplate t = chat_template_for(spec, chat_template);
    std::vector<ChatMessage> msgs;
    if (!system.empty()) msgs.push_back({"system", system});
    msgs.push_back({"user", prompt});
    const ChatPrompt chat = render_chat_prompt(t, msgs, /*add_generation_prompt=*/true);
    const std::string& text = chat.text;
    ids = chat_prompt_ids(tok, chat);  // message text never becomes control tokens
    if (print_prompt) std::fprintf(stderr, "%s", text.c_str());
  } else {
    require(system.empty() && chat_template.empty(), "--system and --chat-template need --chat");
    if (prompt.empty()) {
      require(spec.bos_id >= 0 && spec.add_bos,
              "empty prompt: this model does not start text with a BOS token, so there is "
              "nothing to continue; pass -p TEXT");
      ids = {spec.bos_id};
      at_text_start = true;
    } else {
      ids = tok.encode(prompt, /*add_special=*/true);
    }
  }
  if (print_prompt) {
    std::fprintf(stderr, "\n[%zu prompt tokens:", ids.size());
    for (int id : ids) std::fprintf(stderr, " %d", id);
    std::fprintf(stderr, "]\n");
  }
  require(!ids.empty(), "the prompt gives no tokens");

  ModelOptions opt;
  opt.n_threads = threads;
  opt.linear_factory = kernel_opts.factory_for(*src);
  Model m(*src, opt);
  require(int(ids.size()) < m.max_ctx(), "the prompt has ", ids.size(),
          " tokens; the context holds only ", m.max_ctx());

  SamplerOptions so;
  so.temperature = temp;
  so.top_k = top_k;
  so.top_p = top_p;
  so.min_p = min_p;
  so.repeat_penalty = repeat_penalty;
  so.seed = seed;
  Sampler sampler(so);
  for (int id : ids) sampler.accept(id);

  if (!chat && !prompt.empty()) {
    std::fputs(prompt.c_str(), stdout);
    std::fflush(stdout);
  }
  const int vocab = m.config().vocab_size;
  const auto t0 = Clock::now();
  const float* logits = m.prefill_logits(ids.data(), int(ids.size()), 0);
  const double prefill_s = seconds_since(t0);

  TextStream stream(tok, at_text_start);
  int pos = int(ids.size()), generated = 0;
  const char* stop_reason = "max tokens";
  const auto t1 = Clock::now();
  while (generated < n_predict) {
    const int next = sampler.sample(logits, vocab);
    ++generated;
    if (tok.is_stop(next)) {
      stop_reason = "end of text";
      break;
    }
    const std::string piece = stream.push(next);
    if (!piece.empty()) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    if (pos >= m.max_ctx()) {
      stop_reason = "context full";
      break;
    }
    if (generated == n_predict) break;
    logits = m.decode_logits(next, pos++);
  }
  const double decode_s = seconds_since(t1);
  const std::string tail = stream.finish();
  std::fwrite(tail.data(), 1, tail.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  std::fprintf(stderr,
               "prompt: %zu tokens, prefill %.1f tok/s | generated: %d tokens (%s), decode %.1f "
               "tok/s | %d threads\n",
               ids.size(), double(ids.size()) / prefill_s, generated, stop_reason,
               generated > 1 ? double(generated - 1) / decode_s : 0.0, m.pool().size());
  return 0;
}

const VerbRegistrar reg({"generate", "generate text from a prompt, or answer a chat message",
                         run_generate});

}  // namespace
}  // namespace elutq::cli
