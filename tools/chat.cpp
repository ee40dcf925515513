// `elutq chat`: an interactive conversation with a chat model. Each turn re-renders the whole
// conversation with the chat template, and only the tokens after the part already in the KV cache
// are run through the model, so earlier turns are not recomputed. /reset starts over, /quit ends.
#include <chrono>
#include <cstdio>
#include <iostream>

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

int run_chat(int argc, char** argv) {
  CLI::App app("Chat with a model interactively (type /reset to start over, /quit to leave).",
               argv[0]);
  std::string model, system, chat_template;
  int n_predict = 512, threads = 0, top_k = 40;
  float temp = 0.7f, top_p = 0.95f, min_p = 0.05f;
  uint64_t seed = 42;
  app.add_option("-m,--model", model, "chat model: GGUF file or Hugging Face folder")->required();
  app.add_option("--system", system, "a system message that opens the conversation");
  app.add_option("--chat-template", chat_template, "use a built-in format instead of the model's "
                 "template: chatml, llama2, llama3 or zephyr");
  app.add_option("-n,--max-tokens", n_predict, "longest answer in tokens (default 512)");
  app.add_option("--temp", temp, "sampling temperature; 0 = greedy (default 0.7)");
  app.add_option("--top-k", top_k, "sample among the K likeliest tokens; 0 = no limit (default 40)");
  app.add_option("--top-p", top_p, "nucleus sampling mass; 1 = off (default 0.95)");
  app.add_option("--min-p", min_p, "drop tokens below P times the likeliest; 0 = off (default 0.05)");
  app.add_option("--seed", seed, "random seed (default 42)");
  app.add_option("-t,--threads", threads, "threads (default: all cores)");
  KernelOptions kernel_opts;
  kernel_opts.add_to(app);
  int code = 0;
  if (!parse(app, argc, argv, &code)) return code;
  require(n_predict > 0, "--max-tokens must be > 0, got ", n_predict);

  auto src = open_model(model);
  const Tokenizer tok(src->tokenizer());
  const ChatTemplate tmpl = chat_template_for(tok.spec(), chat_template);
  ModelOptions opt;
  opt.n_threads = threads;
  opt.linear_factory = kernel_opts.factory_for(*src);
  Model m(*src, opt);
  Sampler sampler({.temperature = temp, .top_k = top_k, .top_p = top_p, .min_p = min_p,
                   .seed = seed});

  std::vector<ChatMessage> msgs;
  if (!system.empty()) msgs.push_back({"system", system});
  std::vector<int> cached;  // tokens whose keys/values are in the KV cache, positions 0..size-1
  std::fprintf(stderr, "chat with %s (%s format); /reset starts over, /quit or Ctrl-D ends\n",
               model.c_str(), chat_format_name(tmpl.format));
  std::string line;
  while (true) {
    std::fputs("> ", stdout);
    std::fflush(stdout);
    if (!std::getline(std::cin, line) || line == "/quit") break;
    if (line == "/reset") {
      msgs.resize(system.empty() ? 0 : 1);
      cached.clear();
      std::fputs("(conversation cleared)\n", stdout);
      continue;
    }
    if (line.empty()) continue;
    msgs.push_back({"user", line});
    // What the user types stays text: "<|im_end|>" in a message cannot end the turn.
    std::vector<int> ids = chat_prompt_ids(tok, render_chat_prompt(tmpl, msgs, true));
    if (int(ids.size()) + 1 >= m.max_ctx()) {
      std::fputs("(the conversation fills the context; /reset to start over)\n", stdout);
      msgs.pop_back();
      continue;
    }
    // Reuse the cached prefix; run only the new tokens (at least one, for fresh logits).
    size_t common = 0;
    while (common < cached.size() && common < ids.size() && cached[common] == ids[common]) ++common;
    if (common == ids.size()) --common;
    const float* logits = m.prefill_logits(ids.data() + common, int(ids.size() - common),
                                           int(common));
    cached = ids;
    TextStream stream(tok, false);
    std::vector<int> answer;
    for (int i = 0; i < n_predict && int(cached.size()) < m.max_ctx(); ++i) {
      const int next = sampler.sample(logits, m.config().vocab_size);
      if (tok.is_stop(next)) break;
      answer.push_back(next);
      const std::string piece = stream.push(next);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      logits = m.decode_logits(next, int(cached.size()));
      cached.push_back(next);
    }
    std::fputs((stream.finish() + "\n").c_str(), stdout);
    msgs.push_back({"assistant", tok.decode(answer)});
  }
  std::fputc('\n', stdout);
  return 0;
}

const VerbRegistrar reg({"chat", "chat with a model interactively", run_chat});

}  // namespace
}  // namespace elutq::cli
