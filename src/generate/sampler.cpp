// Token sampling: penalty -> temperature -> top-k -> softmax -> top-p -> min-p -> draw.
#include "generate/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/vec_math.h"

namespace elutq {

int argmax(const float* logits, int vocab) {
  int best = 0;
  for (int i = 1; i < vocab; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

Sampler::Sampler(const SamplerOptions& options) : opt_(options), rng_(options.seed) {
  require(std::isfinite(opt_.temperature), "temperature must be a finite number");
  require(opt_.top_p > 0.0f, "top-p must be > 0 (1 turns it off), got ", opt_.top_p);
  require(opt_.min_p < 1.0f, "min-p must be < 1 (0 turns it off), got ", opt_.min_p);
  require(opt_.repeat_penalty > 0.0f, "repeat penalty must be > 0 (1 turns it off), got ",
          opt_.repeat_penalty);
  require(opt_.repeat_last_n >= 0, "repeat-last-n must be >= 0, got ", opt_.repeat_last_n);
}

void Sampler::accept(int token) {
  if (opt_.repeat_last_n <= 0) return;
  history_.push_back(token);
  // Keep the window bounded without reallocating every step.
  if (history_.size() > size_t(opt_.repeat_last_n) * 2)
    history_.erase(history_.begin(), history_.end() - opt_.repeat_last_n);
}

void Sampler::skip_draws(uint64_t tokens) {
  if (opt_.temperature > 0.0f) rng_.discard(tokens);  // sample() draws once per token
}

namespace {
// A float's bits mapped so that unsigned order is the floats' order (-0 taken as +0, as the
// comparison does).
uint32_t ordered_bits(float f) {
  if (f == 0.0f) f = 0.0f;
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u & 0x80000000u ? ~u : u | 0x80000000u;
}

// Sorts keys ascending on their high 32 bits, stably (keys with equal high halves keep their
// order): one counting pass per 11-bit digit, least significant first, none for a digit that all
// keys share. Three passes over a vocabulary instead of the six of byte digits over the whole key.
void radix_sort_high32(std::vector<uint64_t>& keys, std::vector<uint64_t>& tmp) {
  constexpr int kDigitBits = 11;
  tmp.resize(keys.size());
  std::vector<uint32_t> count(size_t(1 << kDigitBits) + 1);
  for (int shift = 32; shift < 64; shift += kDigitBits) {
    const uint64_t mask = (uint64_t(1) << std::min(kDigitBits, 64 - shift)) - 1;
    std::fill(count.begin(), count.end(), 0u);
    for (uint64_t k : keys) ++count[((k >> shift) & mask) + 1];
    if (std::find(count.begin() + 1, count.end(), uint32_t(keys.size())) != count.end()) continue;
    for (size_t d = 1; d < count.size(); ++d) count[d] += count[d - 1];
    for (uint64_t k : keys) tmp[count[(k >> shift) & mask]++] = k;
    keys.swap(tmp);
  }
}
}  // namespace

// cand_ = every token by descending logit, then ascending id, with probabilities weights_ /
// weight_sum_. One stable radix sort of keys with the descending logit in the high half and the id
// in the low half (the ids go in ascending, so equal logits stay in id order): the fallback of a
// whole-vocabulary draw whose steps run past the head it sorted first.
void Sampler::sort_vocabulary() {
  keys_.resize(logits_.size());
  for (size_t i = 0; i < logits_.size(); ++i)
    keys_[i] = uint64_t(~ordered_bits(logits_[i])) << 32 | uint32_t(i);
  radix_sort_high32(keys_, scratch_);
  cand_.resize(keys_.size());
  for (size_t i = 0; i < keys_.size(); ++i) {
    const uint32_t id = uint32_t(keys_[i]);
    cand_[i] = {int(id), float(weights_[id] / weight_sum_)};
  }
}

namespace {
// Descending logit, then ascending id: a strict total order, so every sort of the same logits
// yields the same sequence and a head sorted alone equals the head of the whole sorted list.
struct ByLogit {  // a type, not a function pointer, so the sorts inline it
  bool operator()(const std::pair<int, float>& a, const std::pair<int, float>& b) const {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  }
};
constexpr ByLogit by_logit;

// No NaN and no +Inf among the logits (-Inf bans a token), tested on the bits so the loop
// vectorizes.
bool usable_logits(const float* l, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, l + i, 4);
    bad |= uint32_t((u & 0x7fffffffu) > 0x7f800000u) | uint32_t(u == 0x7f800000u);
  }
  return bad == 0;
}

float max_of(const float* l, size_t n) {
  float m[8];
  std::fill(m, m + 8, -INFINITY);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) m[j] = l[i + size_t(j)] > m[j] ? l[i + size_t(j)] : m[j];
  for (; i < n; ++i) m[0] = l[i] > m[0] ? l[i] : m[0];
  return *std::max_element(m, m + 8);
}
}  // namespace

int Sampler::sample(const float* logits, int vocab) {
  require(vocab > 0, "sampler got an empty logit vector");
  logits_.assign(logits, logits + vocab);
  // NaN or Inf weights would otherwise turn into endless token 0 ("####...") and exit status 0.
  require(usable_logits(logits, size_t(vocab)),
          "the model's logits are NaN or +Inf: its weights are damaged or out of range "
          "(look for non-finite values with 'elutq tensor -m MODEL NAME')");
  head_only_ = false;

  // Repetition penalty (CTRL paper): divide positive logits, multiply negative ones.
  if (opt_.repeat_penalty != 1.0f && !history_.empty()) {
    const size_t n = std::min(history_.size(), size_t(opt_.repeat_last_n));
    std::vector<bool> seen(size_t(vocab), false);
    for (size_t i = history_.size() - n; i < history_.size(); ++i) {
      const int t = history_[i];
      if (t < 0 || t >= vocab || seen[size_t(t)]) continue;
      seen[size_t(t)] = true;
      float& l = logits_[size_t(t)];
      l = l > 0 ? l / opt_.repeat_penalty : l * opt_.repeat_penalty;
    }
  }

  int chosen;
  if (opt_.temperature <= 0.0f) {
    chosen = argmax(logits_.data(), vocab);
    cand_.assign(1, {chosen, 1.0f});
  } else if (opt_.top_k <= 0 || opt_.top_k >= vocab) {
    chosen = draw_from_vocabulary(vocab);
  } else {
    const size_t k = size_t(opt_.top_k);
    cand_.resize(size_t(vocab));
    for (int i = 0; i < vocab; ++i) cand_[size_t(i)] = {i, logits_[size_t(i)]};
    std::partial_sort(cand_.begin(), cand_.begin() + long(k), cand_.end(), by_logit);
    cand_.resize(k);
    // Softmax of logit / T, stably from the maximum.
    const float mx = cand_[0].second;
    double sum = 0;
    for (auto& c : cand_) {
      c.second = std::exp((c.second - mx) / opt_.temperature);
      sum += c.second;
    }
    for (auto& c : cand_) c.second = float(c.second / sum);
    const size_t keep = kept_after_cuts(k, k);
    cand_.resize(keep);
    renormalize(keep);
    const int at = draw(uniform01());
    chosen = at >= 0 ? cand_[size_t(at)].first : cand_.back().first;
  }
  accept(chosen);
  return chosen;
}

// Temperature sampling over the whole vocabulary, truncated by top-p and min-p only. Defined as:
// sort every token by descending logit (ties: ascending id), p = exp((logit - max) / T) (by
// exp_nonpositive_inplace) / sum_of_weights, cut top-p's smallest prefix reaching top_p and
// min-p's floor, renormalise if anything was cut, and take the token where the cumulative mass
// passes a uniform u. Each of those steps reads only a prefix of the sorted list, and at a
// sampling temperature the tokens within a factor 2^14 of the most likely one nearly always hold
// what is needed; so this sorts only those (a weight threshold selects an exact prefix of the
// order, as the weight grows with the logit) and sorts the whole vocabulary only when a step runs
// off their end: the same token as the full sort, at a fraction of its cost (a full sort of 49152
// logits was most of a draw).
int Sampler::draw_from_vocabulary(int vocab) {
  const float mx = max_of(logits_.data(), logits_.size());
  const float inv_t = 1.0f / opt_.temperature;
  weights_.resize(size_t(vocab));
  for (size_t i = 0; i < weights_.size(); ++i) weights_[i] = (logits_[i] - mx) * inv_t;
  exp_nonpositive_inplace(weights_.data(), int64_t(weights_.size()));
  weight_sum_ = sum_of_weights(weights_);
  const double u = uniform01();
  const size_t n = size_t(vocab);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (attempt == 1 || !sorted_head_above(0x1.0p-14f)) sort_vocabulary();
    const size_t head = cand_.size();
    const size_t keep = kept_after_cuts(head, n);
    if (keep == 0) continue;            // a cut lies past the head
    if (keep < n) renormalize(keep);    // what is left after a cut
    cand_.resize(std::min(keep, head));
    const int at = draw(u);
    if (at < 0 && keep > head) continue;  // u lies past the head's mass
    head_only_ = keep > head;
    return at >= 0 ? cand_[size_t(at)].first : cand_.back().first;
  }
  fail("sampler: internal error, the whole vocabulary did not decide the draw");
}

bool Sampler::sorted_head_above(float min_weight) {
  const size_t n = logits_.size();
  cand_.clear();
  for (size_t i = 0; i < n; ++i)
    if (weights_[i] >= min_weight) cand_.push_back({int(i), logits_[i]});
  if (cand_.size() > n / 8) return false;  // not a head: the radix sort of everything is cheaper
  std::sort(cand_.begin(), cand_.end(), by_logit);
  for (auto& c : cand_) c.second = float(weights_[size_t(c.first)] / weight_sum_);
  return true;
}

size_t Sampler::kept_after_cuts(size_t head, size_t n) const {
  size_t keep = n;  // n: nothing cut (so far as the head tells)
  if (opt_.top_p < 1.0f) {  // the smallest prefix whose mass reaches top_p
    double mass = 0;
    for (size_t i = 0; i < head && keep == n; ++i)
      if ((mass += cand_[i].second) >= opt_.top_p) keep = i + 1;
    if (keep == n && head < n) return 0;  // that prefix is longer than the head
  }
  if (opt_.min_p > 0.0f) {  // drop tokens far less likely than the best one
    const float floor = opt_.min_p * cand_[0].second;
    size_t k = 1;
    while (k < std::min(keep, head) && cand_[k].second >= floor) ++k;
    if (k == head && head < keep) return 0;  // the floor lies past the head
    keep = k;
  }
  return keep;
}

void Sampler::renormalize(size_t keep) {
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += cand_[i].second;
  for (size_t i = 0; i < keep; ++i) cand_[i].second = float(cand_[i].second / total);
}

double sum_of_weights(const std::vector<float>& w) {
  double part[8] = {};
  size_t i = 0;
  for (; i + 8 <= w.size(); i += 8)
    for (int j = 0; j < 8; ++j) part[j] += w[i + size_t(j)];
  for (; i < w.size(); ++i) part[i % 8] += w[i];
  double sum = 0;
  for (double p : part) sum += p;
  return sum;
}

int Sampler::draw(double u) const {
  // Our own inverse-CDF draw, so results do not depend on the standard library's distributions.
  double acc = 0;
  for (size_t i = 0; i < cand_.size(); ++i)
    if (u < (acc += cand_[i].second)) return int(i);
  return -1;
}

double Sampler::uniform01() { return double(rng_() >> 11) * 0x1.0p-53; }

const std::vector<std::pair<int, float>>& Sampler::last_candidates() {
  if (head_only_) {  // nothing was cut, so the candidates are the whole sorted vocabulary
    sort_vocabulary();
    head_only_ = false;
  }
  return cand_;
}

}  // namespace elutq
