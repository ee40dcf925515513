// Picks the next token from a model's logits: greedy, or temperature sampling restricted by
// top-k, top-p (nucleus) and min-p, with an optional repetition penalty. The random generator is
// seeded explicitly so a run is reproducible given its seed.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace elutq {

struct SamplerOptions {
  float temperature = 0.8f;  // <= 0: greedy (argmax)
  int top_k = 40;            // <= 0: no limit
  float top_p = 0.95f;       // >= 1: no limit
  float min_p = 0.05f;       // <= 0: off; keep tokens with p >= min_p * p_max
  float repeat_penalty = 1.0f;  // 1: off; > 1 makes tokens in the recent window less likely
  int repeat_last_n = 64;       // how many recent tokens the penalty looks at
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& options);

  // Chooses a token from logits (vocab). Does not modify logits. Remembers the token for the
  // repetition penalty.
  int sample(const float* logits, int vocab);

  // Records tokens (the prompt) so the repetition penalty sees them.
  void accept(int token);

  // Advances the random stream past the draws of `tokens` samples, so that several samplers, one
  // per sequence sampled side by side, draw exactly what one sampler would draw for the
  // sequences one after another. (Greedy sampling draws nothing.)
  void skip_draws(uint64_t tokens);
  void reset_history() { history_.clear(); }

  // The probabilities (after penalty, temperature and truncation) of the candidates the last
  // sample() drew from, as (id, p) sorted by descending p; for tests and diagnostics.
  const std::vector<std::pair<int, float>>& last_candidates() const { return cand_; }

  const SamplerOptions& options() const { return opt_; }

 private:
  SamplerOptions opt_;
  std::mt19937_64 rng_;
  std::vector<int> history_;                 // recent tokens, oldest first
  std::vector<std::pair<int, float>> cand_;  // (id, logit then probability), reused
  std::vector<uint64_t> keys_, scratch_;              // sort scratch, reused
  std::vector<std::pair<int, float>> unsorted_;       // sort scratch, reused

  void sort_by_logit();  // cand_ (token i at i) by descending logit, then ascending id
};

// Index of the largest logit (lowest index on ties).
int argmax(const float* logits, int vocab);

}  // namespace elutq
