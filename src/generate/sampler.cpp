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

// Sorts keys ascending on their low `bits` bits (the rest zero), least significant byte first:
// one counting pass per byte, none for a byte that all keys share.
void radix_sort(std::vector<uint64_t>& keys, std::vector<uint64_t>& tmp, int bits) {
  tmp.resize(keys.size());
  for (int shift = 0; shift < bits; shift += 8) {
    size_t count[257] = {};
    for (uint64_t k : keys) ++count[((k >> shift) & 0xff) + 1];
    if (std::find(count + 1, count + 257, keys.size()) != count + 257) continue;
    for (int d = 0; d < 256; ++d) count[d + 1] += count[d];
    for (uint64_t k : keys) tmp[count[(k >> shift) & 0xff]++] = k;
    keys.swap(tmp);
  }
}
}  // namespace

// The same order as sorting (id, logit) by descending logit, then ascending id, as one radix sort
// of keys with the descending logit above the id: a sort of a whole vocabulary per token is most
// of a draw from the untruncated distribution (data-free calibration).
void Sampler::sort_by_logit() {
  int id_bits = 1;
  while ((size_t(1) << id_bits) < cand_.size()) ++id_bits;
  keys_.resize(cand_.size());
  for (size_t i = 0; i < cand_.size(); ++i)
    keys_[i] = uint64_t(~ordered_bits(cand_[i].second)) << id_bits | uint32_t(cand_[i].first);
  radix_sort(keys_, scratch_, 32 + id_bits);
  unsorted_.assign(cand_.begin(), cand_.end());  // cand_[i] is token i's (id, logit) here
  const uint64_t id_mask = (uint64_t(1) << id_bits) - 1;
  for (size_t i = 0; i < keys_.size(); ++i) cand_[i] = unsorted_[keys_[i] & id_mask];
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
