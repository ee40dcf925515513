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
  // sample() drew from, as (id, p) sorted by descending p; for tests and diagnostics. (A draw
  // sorts only the head of the vocabulary it needs; this sorts the rest on demand.)
  const std::vector<std::pair<int, float>>& last_candidates();

  const SamplerOptions& options() const { return opt_; }

 private:
  SamplerOptions opt_;
  std::mt19937_64 rng_;
  std::vector<int> history_;                 // recent tokens, oldest first
  std::vector<std::pair<int, float>> cand_;  // (id, logit then probability), reused
  std::vector<uint64_t> keys_, scratch_;              // sort scratch, reused
  std::vector<float> logits_;                         // after the penalty, by id (reused)
  std::vector<float> weights_;                        // exp((logit - max) / T), by id (reused)
  double weight_sum_ = 0;                             // sum_of_weights(weights_)
  bool head_only_ = false;  // cand_ holds only the sorted head of the candidates (none cut)

  int draw_from_vocabulary(int vocab);  // temperature sampling without a top-k limit
  // cand_ = every token (descending logit, then ascending id) with probabilities
  // weights_ / weight_sum_.
  void sort_vocabulary();
  // cand_ = the tokens of weight >= min_weight, sorted, with probabilities; false (cand_ unusable)
  // if they are more than an eighth of the vocabulary.
  bool sorted_head_above(float min_weight);
  // How many of n sorted candidates top-p and min-p keep, read from the first `head` of them in
  // cand_ (probabilities); 0 if the head does not decide it.
  size_t kept_after_cuts(size_t head, size_t n) const;
  void renormalize(size_t keep);  // cand_[0, keep) divided by its sum
  int draw(double u) const;  // the candidate where cand_'s cumulative mass passes u; -1 if none
  double uniform01();        // the one random number a draw uses, in [0, 1)
};

// The softmax denominator of a whole-vocabulary draw: w[i] added into eight partial sums by
// i mod 8 (so the additions overlap), which are then added in order.
double sum_of_weights(const std::vector<float>& w);

// Index of the largest logit (lowest index on ties).
int argmax(const float* logits, int vocab);

}  // namespace elutq
