// Perplexity by the standard protocol: the token stream cut into non-overlapping windows of ctx
// tokens (the remainder dropped, or one shorter window if the stream is shorter than ctx), each
// window run from position 0, every token after the first of each window scored.
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

// Scores tokens with the model. ctx must fit the model's max_ctx(); max_windows 0 = all.
// Throws Error if fewer than 2 tokens are given.
PerplexityResult perplexity(Model& model, const std::vector<int>& tokens, int ctx, int max_windows,
                            const PerplexityCallback& on_window = {});

// -log softmax(logits)[target] in nats, computed in double (vocab entries).
double token_nll(const float* logits, int vocab, int target);

// The documents of a text file: a .jsonl file (or jsonl = true) gives the "text" field of each
// line, anything else is one document. Throws Error on unreadable files or bad JSON lines.
std::vector<std::string> read_documents(const std::string& path, bool jsonl);

}  // namespace elutq
