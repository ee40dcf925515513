// `elutq logits`: raw logits of a token-id sequence, for parity checks against other
// implementations. Output: little-endian fp32 [n_tokens x vocab], row i = logits after token i.
#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "cli.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "kernel_options.h"
#include "model/model.h"
#include "runtime/open_model.h"
#include "tensor/model_source.h"

namespace elutq::cli {
namespace {

std::vector<int> parse_ids(const std::string& s) {
  std::vector<int> ids;
  std::istringstream in(s);
  std::string tok;
  while (in >> tok) {
    size_t used = 0;
    long v = 0;
    try {
      v = std::stol(tok, &used);
    } catch (...) {
      used = 0;
    }
    require(used == tok.size() && v >= 0 && v <= INT32_MAX, "--ids: '", tok,
            "' is not a token id (expected non-negative integers separated by spaces)");
    ids.push_back(int(v));
  }
  require(!ids.empty(), "--ids is empty; give token ids like --ids \"1 2 3\"");
  return ids;
}

int run_logits(int argc, char** argv) {
  CLI::App app("Compute the logits of a token-id sequence and write them as raw fp32.", argv[0]);
  std::string model, ids_text, out_path, tok_path;
  bool decode = false, bench = false;
  int threads = 0;
  app.add_option("-m,--model", model, "model: GGUF file, Hugging Face folder or llama2.c .bin")
      ->required();
  app.add_option("--ids", ids_text, "token ids separated by spaces, e.g. \"1 2 3\"")->required();
  app.add_flag("--decode", decode,
               "feed the tokens one at a time through the KV cache (default: one batched prefill)");
  app.add_option("-o,--output", out_path,
                 "write little-endian fp32 [n_tokens x vocab] here (default: print a summary)");
  app.add_option("-t,--threads", threads, "threads (default: all cores)");
  KernelOptions kernel_opts;
  kernel_opts.add_to(app);
  app.add_option("--tokenizer", tok_path, "llama2.c tokenizer.bin (default: found beside the model)");
  app.add_flag("--bench", bench, "print the time and tokens/s of the forward pass on stderr");
  int code = 0;
  if (!parse(app, argc, argv, &code)) return code;

  const std::vector<int> ids = parse_ids(ids_text);
  auto src = open_model(model, tok_path);
  const int n = int(ids.size());
  ModelOptions opt;
  opt.n_threads = threads;
  opt.linear_factory = kernel_opts.factory_for(*src);
  opt.max_ctx = std::max(n, 16);
  Model m(*src, opt);
  const int vocab = m.config().vocab_size;
  std::vector<float> logits(size_t(n) * vocab);  // (n, vocab)

  // --bench times what generation does: prefill = forward over all tokens + logits of the last
  // one; decode = one token at a time with its logits. The full logits matrix of prefill is
  // computed after the timed part.
  std::vector<float> hidden;
  const auto t0 = std::chrono::steady_clock::now();
  if (decode) {
    for (int i = 0; i < n; ++i) {
      const float* l = m.decode_logits(ids[i], i);
      std::copy(l, l + vocab, logits.begin() + int64_t(i) * vocab);
    }
  } else {
    hidden.resize(size_t(n) * m.config().dim);  // (n, dim)
    m.forward(ids.data(), n, 0, hidden.data());
    m.logits(hidden.data() + int64_t(n - 1) * m.config().dim, 1,
             logits.data() + int64_t(n - 1) * vocab);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!decode) m.logits(hidden.data(), n, logits.data());
  if (bench)
    std::fprintf(stderr, "%s: %d tokens in %.3f s = %.2f tok/s (%d threads)\n",
                 decode ? "decode" : "prefill", n, secs, n / secs, m.pool().size());

  if (!out_path.empty()) {
    AtomicFile f(out_path);
    f.write(logits.data(), logits.size() * sizeof(float));
    f.commit();
  } else {
    for (int i = 0; i < n; ++i) {
      const float* row = logits.data() + int64_t(i) * vocab;
      const int best = int(std::max_element(row, row + vocab) - row);
      std::printf("token %d (id %d): argmax %d logit %.4f\n", i, ids[i], best, row[best]);
    }
  }
  return 0;
}

const VerbRegistrar reg({"logits", "write the raw logits of a token-id sequence (parity checks)",
                         run_logits});

}  // namespace
}  // namespace elutq::cli
