// Perplexity: the token stream cut into non-overlapping windows of ctx tokens (the remainder
// dropped, or one shorter window if the stream is shorter than ctx), each window run from
// position 0; by default every token after the first of each window is scored (see
// PerplexityProtocol for llama.cpp's variant).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"

namespace elutq {

struct PerplexityResult {
  double nll_sum = 0.0;    // sum of -log p(token) in nats
  int64_t n_scored = 0;    // tokens scored
  int windows = 0;         // windows run
  double seconds = 0.0;    // wall time of the forward passes
  double ppl() const;      // exp(nll_sum / n_scored)
};

// Called after each window with the windows done so far and the running result.
using PerplexityCallback = std::function<void(int windows_done, int windows_total,
                                              const PerplexityResult& running)>;

// How windows are scored. The default is ours; llama() is llama.cpp's llama-perplexity: the
// same windows, the first token of each replaced by BOS (for models that start texts with one),
// and only the second half of each window scored, so every scored token sees at least ctx / 2
// tokens of context. Its figures are lower than ours and are what llama.cpp users quote.
struct PerplexityProtocol {
  bool second_half_only = false;
  int window_first_token = -1;  // >= 0: this id replaces each window's first token
  static PerplexityProtocol llama(int bos_id) { return {true, bos_id}; }
};

// Scores tokens with the model. ctx must fit the model's max_ctx(); max_windows 0 = all.
// Throws Error if fewer than 2 tokens are given.
PerplexityResult perplexity(Model& model, const std::vector<int>& tokens, int ctx, int max_windows,
                            const PerplexityCallback& on_window = {},
                            const PerplexityProtocol& protocol = {});

// -log softmax(logits)[target] in nats, computed in double (vocab entries).
double token_nll(const float* logits, int vocab, int target);

// The documents of a text file: a .jsonl file (or jsonl = true) gives the "text" field of each
// line, anything else is one document. Throws Error on unreadable files or bad JSON lines.
std::vector<std::string> read_documents(const std::string& path, bool jsonl);

}  // namespace elutq
