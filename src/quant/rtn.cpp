// Round-to-nearest uniform quantization (see rtn.h).
#include "quant/rtn.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"

namespace elutq {

namespace {

float to_fp16_value(float v) { return fp16_to_f32(f32_to_fp16(v)); }

// The weighted error of uniform parameters: with a full block from the code values' products,
// which follow the codes from one candidate range to the next (group_fit.h), else directly.
struct UniformObjective {
  const float* w;
  int n;
  const GroupWeights& h;
  std::optional<FullBlockProducts> own_fb;
  const FullBlockProducts* fb = nullptr;
  std::optional<CodeColumnProducts> cp;
  std::vector<float> q;  // (n) dequantized values, without a full block

  UniformObjective(const float* w_, int n_, const GroupWeights& h_, const FullBlockProducts* fb_)
      : w(w_), n(n_), h(h_), fb(fb_) {
    if (!h.full) {
      q.resize(size_t(n));
      return;
    }
    if (!fb) fb = &own_fb.emplace(w, n, h);
    cp.emplace(h.full, n, 1, CodeColumnProducts::Columns::CodeValue);
  }
  double error(const float* params, const uint8_t* codes) {
    if (cp) {
      cp->update(codes);
      const double scale = params[0];
      return error_from_products(w, n, codes, *fb, *cp, &scale, params[1]);
    }
    for (int i = 0; i < n; ++i) q[size_t(i)] = params[1] + params[0] * float(codes[i]);
    return weighted_error(w, q.data(), n, h);
  }
};

// Error of (scale, zero) after fp16 rounding and nearest assignment; fills params/codes.
double try_range(UniformObjective& obj, int bits, float lo, float hi, float* params,
                 uint8_t* codes) {
  const int levels = (1 << bits) - 1;
  params[0] = to_fp16_value((hi - lo) / float(levels));
  params[1] = to_fp16_value(lo);
  uniform_assign(obj.w, obj.n, bits, params, codes);
  return obj.error(params, codes);
}

}  // namespace

namespace {
// nearbyint(x) (ties to even) for |x| <= 2^22, by the float adder: x + 1.5 * 2^23 lies where the
// float spacing is 1, so the sum is rounded to an integer as nearbyint rounds. Outside that range
// the result keeps its sign and stays beyond 2^21 in magnitude, and NaN and infinities pass through:
// after uniform_assign's clamps every code is what nearbyint gives. Unlike the libm call (no
// SSE4.1 in the baseline build), the loop below vectorizes.
inline float round_half_even(float x) {
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23
  return (x + kShift) - kShift;
}
}  // namespace

void uniform_assign(const float* w, int n, int bits, const float* params, uint8_t* codes) {
  const float levels = float((1 << bits) - 1);
  const float scale = params[0], zero = params[1];
  if (!(scale > 0)) {
    std::fill(codes, codes + n, uint8_t(0));
    return;
  }
  for (int i = 0; i < n; ++i) {
    float c = round_half_even((w[i] - zero) / scale);
    c = c >= 0 ? c : 0.0f;  // also catches NaN
    c = c > levels ? levels : c;
    codes[i] = uint8_t(c);
  }
}

double rtn_fit_group(const float* w, int n, int bits, const GroupWeights& h,
                     const RtnOptions& opt, float* params, uint8_t* codes,
                     const FullBlockProducts* fb) {
  require(n > 0, "rtn: empty group");
  float lo = w[0], hi = w[0];
  for (int i = 1; i < n; ++i) {
    lo = std::min(lo, w[i]);
    hi = std::max(hi, w[i]);
  }
  require(std::isfinite(lo) && std::isfinite(hi), "rtn: group has non-finite weights");
  UniformObjective obj(w, n, h, fb);
  std::vector<uint8_t> cbuf(n);                     // (n) candidate codes
  double best = try_range(obj, bits, lo, hi, params, codes);
  if (!opt.clip_search || opt.clip_steps < 2) return best;
  float cand[2];
  for (int k = 1; k < opt.clip_steps; ++k) {
    float p = 1.0f - (1.0f - opt.clip_min) * float(k) / float(opt.clip_steps - 1);
    // Shrink the range about its middle (zero is a free float here, so 0 need not stay inside).
    float mid = 0.5f * (lo + hi), half = 0.5f * (hi - lo) * p;
    double e = try_range(obj, bits, mid - half, mid + half, cand, cbuf.data());
    if (e < best) {
      best = e;
      params[0] = cand[0];
      params[1] = cand[1];
      std::copy(cbuf.begin(), cbuf.end(), codes);
    }
  }
  return best;
}

QuantizedMatrix quantize_rtn(const float* W, int64_t rows, int64_t cols, const QuantSpec& spec,
                             const RtnOptions& opt, ThreadPool* pool) {
  require(spec.kind == QuantKind::Uniform, "quantize_rtn: needs a uniform format, got ",
          spec.name());
  return quantize_groupwise(
      W, rows, cols, spec,
      [&](int64_t, int64_t, const float* w, int n, float* params, uint8_t* codes) {
        rtn_fit_group(w, n, spec.bits, GroupWeights{}, opt, params, codes);
      },
      pool);
}

}  // namespace elutq
