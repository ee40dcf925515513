// `elutq perplexity`: perplexity of a model on a text file (plain text or JSONL), by the standard
// protocol of src/eval/perplexity.h, with a progress bar showing the running perplexity.
#include <cstdio>

#include "cli.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/perplexity.h"
#include "kernel_options.h"
#include "model/model.h"
#include "runtime/open_model.h"
#include "tensor/model_source.h"
#include "tokenizer/tokenizer.h"

namespace elutq::cli {
namespace {

int run_perplexity(int argc, char** argv) {
  CLI::App app("Measure a model's perplexity on a text file.", argv[0]);
  std::string model, text_path, tok_path;
  int ctx = 2048, max_windows = 0, threads = 0;
  bool jsonl = false, lines = false, quiet = false;
  app.add_option("-m,--model", model, "model: GGUF file, Hugging Face folder or llama2.c .bin")
      ->required();
  app.add_option("-f,--file", text_path,
                 "text to score: plain text, or JSONL with a \"text\" field per line (.jsonl)")
      ->required();
  app.add_flag("--jsonl", jsonl, "read the file as JSONL whatever its name");
  std::string protocol = "elutq";
  app.add_option("--protocol", protocol,
                 "elutq: every token of each window after its first is scored (default); llama: "
                 "llama.cpp's llama-perplexity (each window starts with BOS if the model uses "
                 "one, only its second half is scored), to compare with figures llama.cpp users "
                 "quote (give the raw file, without --lines, as llama-perplexity reads it)")
      ->check(CLI::IsMember({"elutq", "llama"}));
  app.add_flag("--lines", lines,
               "each non-empty line is a document (e.g. WikiText-2 rows), joined with a blank line");
  app.add_option("-c,--ctx", ctx, "window length in tokens (default 2048; shorter if the model's is)");
  app.add_option("--max-windows", max_windows, "score at most this many windows (0 = all)");
  app.add_option("-t,--threads", threads, "threads (default: all cores)");
  KernelOptions kernel_opts;
  kernel_opts.add_to(app);
  app.add_option("--tokenizer", tok_path, "llama2.c tokenizer.bin (default: found beside the model)");
  app.add_flag("-q,--quiet", quiet, "no progress bar");
  int code = 0;
  if (!parse(app, argc, argv, &code)) return code;
  require(ctx >= 2, "--ctx must be at least 2, got ", ctx);
  require(max_windows >= 0, "--max-windows must be >= 0, got ", max_windows);

  auto src = open_model(model, tok_path);
  const Tokenizer tok(src->tokenizer());
  std::vector<std::string> docs = read_documents(text_path, jsonl);
  if (lines) {
    std::vector<std::string> rows;
    for (const std::string& d : docs)
      for (size_t p = 0; p <= d.size();) {
        size_t q = d.find('\n', p);
        if (q == std::string::npos) q = d.size();
        if (q > p) rows.push_back(d.substr(p, q - p));
        p = q + 1;
      }
    docs = std::move(rows);
  }
  std::string text;
  for (size_t i = 0; i < docs.size(); ++i) text += (i ? "\n\n" : "") + docs[i];
  require(!text.empty(), "'", text_path, "' holds no text to score");
  std::vector<int> ids;
  if (tok.spec().add_bos && tok.bos_id() >= 0) ids.push_back(tok.bos_id());
  const std::vector<int> body = tok.encode(text, /*add_special=*/false);
  ids.insert(ids.end(), body.begin(), body.end());
  require(ids.size() >= 2, "'", text_path, "' gives only ", ids.size(),
          " token(s); perplexity needs at least 2");

  if (ctx > src->config().max_seq_len) {
    if (app.count("--ctx") > 0)  // the default shrinks silently to what the model has
      std::fprintf(stderr, "note: --ctx %d exceeds the model's trained context %d; using %d\n",
                   ctx, src->config().max_seq_len, src->config().max_seq_len);
    ctx = src->config().max_seq_len;
  }
  const int win = int(std::min<size_t>(size_t(ctx), ids.size()));
  ModelOptions opt;
  opt.n_threads = threads;
  opt.linear_factory = kernel_opts.factory_for(*src);
  opt.max_ctx = win;
  Model m(*src, opt);
  int total = int(ids.size() / size_t(win));
  if (max_windows > 0) total = std::min(total, max_windows);
  std::fprintf(stderr, "%zu tokens, %d window(s) of %d tokens, %d threads\n", ids.size(), total,
               win, m.pool().size());

  Progress bar("perplexity", total, quiet);
  char status[64];
  const PerplexityProtocol how =
      protocol == "llama"
          ? PerplexityProtocol::llama(tok.spec().add_bos ? tok.bos_id() : -1)
          : PerplexityProtocol{};
  const auto on_window = [&](int done, int, const PerplexityResult& run) {
    std::snprintf(status, sizeof status, "ppl %.4f", run.ppl());
    bar.update(done, status);
  };
  const PerplexityResult r = perplexity(m, ids, win, max_windows, on_window, how);
  bar.finish(status);
  std::printf("ppl %.4f  tokens scored %lld  windows %d  ctx %d  %.1f tok/s%s\n", r.ppl(),
              static_cast<long long>(r.n_scored), r.windows, win,
              double(r.windows) * win / r.seconds,
              protocol == "llama" ? "  (llama.cpp protocol)" : "");
  return 0;
}

const VerbRegistrar reg({"perplexity", "measure perplexity on a text or JSONL file",
                         run_perplexity});

}  // namespace
}  // namespace elutq::cli
