// Windowed perplexity and the text readers it needs; see perplexity.h.
#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/input_file.h"

namespace elutq {

double PerplexityResult::ppl() const { return n_scored > 0 ? std::exp(nll_sum / n_scored) : NAN; }

double token_nll(const float* logits, int vocab, int target) {
  double mx = logits[0];
  for (int i = 1; i < vocab; ++i) mx = std::max(mx, double(logits[i]));
  double sum = 0.0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - mx);
  return std::log(sum) + mx - double(logits[target]);
}

PerplexityResult perplexity(Model& model, const std::vector<int>& tokens, int ctx, int max_windows,
                            const PerplexityCallback& on_window,
                            const PerplexityProtocol& protocol) {
  const int64_t n = int64_t(tokens.size());
  require(n >= 2, "the text gives ", n, " token(s); perplexity needs at least 2");
  require(ctx >= 2, "--ctx must be at least 2, got ", ctx);
  require(ctx <= model.max_ctx(), "--ctx ", ctx, " exceeds the model's context buffer of ",
          model.max_ctx(), " tokens");
  const int win_len = int(std::min<int64_t>(ctx, n));
  int windows = int(n / win_len);
  if (max_windows > 0) windows = std::min(windows, max_windows);
  const int dim = model.config().dim, vocab = model.config().vocab_size;
  // Logits are computed a few rows at a time so (ctx, vocab) is never held at once.
  const int chunk = 32;
  std::vector<float> hidden(size_t(win_len) * dim);   // (win_len, dim)
  std::vector<float> logits(size_t(chunk) * vocab);   // (chunk, vocab)

  PerplexityResult r;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int> window(size_t(win_len), 0);
  // Row i predicts token i + 1; the last row predicts nothing inside the window.
  const int first_row = protocol.second_half_only ? win_len / 2 : 0;
  for (int w = 0; w < windows; ++w) {
    std::copy_n(tokens.data() + int64_t(w) * win_len, win_len, window.data());
    if (protocol.window_first_token >= 0) window[0] = protocol.window_first_token;
    const int* win = window.data();
    model.forward(win, win_len, 0, hidden.data());
    for (int r0 = first_row; r0 < win_len - 1; r0 += chunk) {
      const int m = std::min(chunk, win_len - 1 - r0);
      model.logits(hidden.data() + int64_t(r0) * dim, m, logits.data());
      for (int i = 0; i < m; ++i) {
        const double nll = token_nll(logits.data() + int64_t(i) * vocab, vocab, win[r0 + i + 1]);
        // NaN or Inf weights (a corrupt or badly quantized file) end here: say so, instead of
        // reporting "ppl nan" with exit status 0.
        require(std::isfinite(nll), "the model's logits are not finite (NaN or Inf) at token ",
                int64_t(w) * win_len + r0 + i, " of the text: its weights are damaged or out of "
                "range (look for non-finite values with 'elutq tensor -m MODEL NAME')");
        r.nll_sum += nll;
      }
      r.n_scored += m;
    }
    r.windows = w + 1;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (on_window) on_window(w + 1, windows, r);
  }
  return r;
}

std::vector<std::string> read_documents(const std::string& path, bool jsonl) {
  std::string text = read_input_file(path, "text file");
  if (!jsonl && !(path.size() > 6 && path.substr(path.size() - 6) == ".jsonl")) return {text};
  std::istringstream f(std::move(text));
  std::vector<std::string> docs;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(f, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
      fail(path, ":", line_no, ": not valid JSON (", e.what(), ")");
    }
    require(j.is_object() && j.contains("text") && j["text"].is_string(), path, ":", line_no,
            ": expected a JSON object with a string field \"text\"");
    docs.push_back(j["text"].get<std::string>());
  }
  return docs;
}

}  // namespace elutq
