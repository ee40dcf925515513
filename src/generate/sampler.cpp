// Token sampling: penalty -> temperature -> top-k -> softmax -> top-p -> min-p -> draw.
#include "generate/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

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

// The same order as sorting (id, logit) by descending logit, then ascending id, as one stable radix
// sort of keys with the descending logit in the high half and the id in the low half (the ids go
// in ascending, so equal logits stay in id order): a sort of a whole vocabulary per token is most
// of a draw from the untruncated distribution (data-free calibration, the server's default).
void Sampler::sort_by_logit() {
  keys_.resize(cand_.size());
  for (size_t i = 0; i < cand_.size(); ++i)
    keys_[i] = uint64_t(~ordered_bits(cand_[i].second)) << 32 | uint32_t(cand_[i].first);
  radix_sort_high32(keys_, scratch_);
  unsorted_.assign(cand_.begin(), cand_.end());  // cand_[i] is token i's (id, logit) here
  for (size_t i = 0; i < keys_.size(); ++i) cand_[i] = unsorted_[uint32_t(keys_[i])];
}

int Sampler::sample(const float* logits, int vocab) {
  require(vocab > 0, "sampler got an empty logit vector");
  cand_.resize(size_t(vocab));
  bool finite = true;
  for (int i = 0; i < vocab; ++i) {
    cand_[size_t(i)] = {i, logits[i]};
    finite &= !std::isnan(logits[i]) && logits[i] != INFINITY;  // -inf: a banned token
  }
  // NaN or Inf weights would otherwise turn into endless token 0 ("####...") and exit status 0.
  require(finite, "the model's logits are NaN or +Inf: its weights are damaged or out of range "
          "(look for non-finite values with 'elutq tensor -m MODEL NAME')");

  // Repetition penalty (CTRL paper): divide positive logits, multiply negative ones.
  if (opt_.repeat_penalty != 1.0f && !history_.empty()) {
    const size_t n = std::min(history_.size(), size_t(opt_.repeat_last_n));
    std::vector<bool> seen(size_t(vocab), false);
    for (size_t i = history_.size() - n; i < history_.size(); ++i) {
      const int t = history_[i];
      if (t < 0 || t >= vocab || seen[size_t(t)]) continue;
      seen[size_t(t)] = true;
      float& l = cand_[size_t(t)].second;
      l = l > 0 ? l / opt_.repeat_penalty : l * opt_.repeat_penalty;
    }
  }

  int chosen;
  if (opt_.temperature <= 0.0f) {
    chosen = 0;
    for (int i = 1; i < vocab; ++i)
      if (cand_[size_t(i)].second > cand_[size_t(chosen)].second) chosen = i;
    cand_.assign(1, {chosen, 1.0f});
  } else {
    auto by_logit = [](const auto& a, const auto& b) {
      return a.second > b.second || (a.second == b.second && a.first < b.first);
    };
    size_t k = cand_.size();
    if (opt_.top_k > 0 && size_t(opt_.top_k) < k) {
      k = size_t(opt_.top_k);
      std::partial_sort(cand_.begin(), cand_.begin() + long(k), cand_.end(), by_logit);
      cand_.resize(k);
    } else {
      sort_by_logit();
    }
    // Softmax of logit / T, stably from the maximum.
    const float mx = cand_[0].second;
    double sum = 0;
    for (auto& c : cand_) {
      c.second = std::exp((c.second - mx) / opt_.temperature);
      sum += c.second;
    }
    for (auto& c : cand_) c.second = float(c.second / sum);
    // Top-p: the smallest prefix whose mass reaches top_p.
    if (opt_.top_p < 1.0f) {
      double mass = 0;
      size_t keep = cand_.size();
      for (size_t i = 0; i < cand_.size(); ++i) {
        mass += cand_[i].second;
        if (mass >= opt_.top_p) {
          keep = i + 1;
          break;
        }
      }
      cand_.resize(keep);
    }
    // Min-p: drop tokens far less likely than the best one.
    if (opt_.min_p > 0.0f) {
      const float floor = opt_.min_p * cand_[0].second;
      size_t keep = 1;
      while (keep < cand_.size() && cand_[keep].second >= floor) ++keep;
      cand_.resize(keep);
    }
    double total = 0;
    for (const auto& c : cand_) total += c.second;
    for (auto& c : cand_) c.second = float(c.second / total);
    // Draw: uniform in [0,1) against the cumulative mass (our own, so results do not depend on
    // the standard library's distribution implementations).
    const double u = double(rng_() >> 11) * 0x1.0p-53;
    double acc = 0;
    chosen = cand_.back().first;
    for (const auto& c : cand_) {
      acc += c.second;
      if (u < acc) {
        chosen = c.first;
        break;
      }
    }
  }
  accept(chosen);
  return chosen;
}

}  // namespace elutq
