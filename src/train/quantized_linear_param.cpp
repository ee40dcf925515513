// The trainable quantized projection; see quantized_linear_param.h.
#include "train/quantized_linear_param.h"

#include <algorithm>

#include "core/error.h"

namespace elutq {

namespace {

// d(value)/d(param k) of a code: HLQ (s_0..s_{B-1}, z): bit_k(code) for k < B, 1 for z;
// uniform (scale, zero): code, 1.
inline float param_derivative(const QuantSpec& spec, int k, uint8_t code) {
  if (spec.kind == QuantKind::Uniform) return k == 0 ? float(code) : 1.0f;
  return k < spec.bits ? float(code >> k & 1) : 1.0f;
}

}  // namespace

QuantizedLinearParam::QuantizedLinearParam(QuantizedMatrix fitted, bool with_latent,
                                           ThreadPool* pool)
    : q_(std::move(fitted)) {
  require(q_.spec.kind == QuantKind::HLQ || q_.spec.kind == QuantKind::Uniform,
          "finetuning trains HLQ or uniform parameters, not ", q_.spec.name(),
          " (quantize with --method hlq-gptq without --hlq-compact)");
  require(q_.codes.size() == size_t(q_.rows * q_.cols), "quantized matrix holds ", q_.codes.size(),
          " codes for ", q_.rows, " x ", q_.cols);
  require(q_.params.size() ==
              size_t(q_.rows * q_.spec.groups_per_row(q_.cols) * q_.spec.params_per_group()),
          "quantized matrix holds ", q_.params.size(), " parameters for ", q_.rows, " x ",
          q_.cols, " in ", q_.spec.name());
  eff_.resize(q_.codes.size());
  update_effective(/*reassign_codes=*/false, pool);
  if (with_latent) latent_ = eff_;
  grad_params_.assign(q_.params.size(), 0.0f);
}

void QuantizedLinearParam::update_effective(bool reassign_codes, ThreadPool& pool) {
  update_effective(reassign_codes, &pool);
}

void QuantizedLinearParam::update_effective(bool reassign_codes, ThreadPool* pool) {
  require(!reassign_codes || latent_.size() == eff_.size(),
          "internal: codes follow latent weights this projection does not hold");
  const int64_t cols = q_.cols, g = q_.spec.group_len(cols), ng = q_.spec.groups_per_row(cols);
  const auto rows = [&](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t gi = 0; gi < ng; ++gi) {
        const int64_t c0 = gi * g, n = std::min(g, cols - c0), at = r * cols + c0;
        const float* p = q_.group_params(r, gi);
        if (reassign_codes)
          assign_nearest(q_.spec, p, latent_.data() + at, int(n), q_.codes.data() + at);
        float vals[256];  // the group's representable values, by code (B <= 8)
        for (int c = 0; c < (1 << q_.spec.bits); ++c) vals[c] = dequant_code(q_.spec, p, uint8_t(c));
        for (int64_t i = 0; i < n; ++i) eff_[size_t(at + i)] = vals[q_.codes[size_t(at + i)]];
      }
  };
  if (pool)
    pool->run(q_.rows, rows);
  else
    rows(0, 0, q_.rows);
}

void QuantizedLinearParam::accumulate_grads(const float* d_eff, bool with_latent,
                                            ThreadPool& pool) {
  const int64_t cols = q_.cols, g = q_.spec.group_len(cols), ng = q_.spec.groups_per_row(cols);
  const int np = q_.spec.params_per_group();
  require(!with_latent || latent_.size() == eff_.size(),
          "internal: latent gradients asked of a projection without latent weights");
  if (with_latent && grad_latent_.size() != latent_.size()) grad_latent_.assign(latent_.size(), 0.0f);
  pool.run(q_.rows, [&](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t gi = 0; gi < ng; ++gi) {
        const int64_t c0 = gi * g, n = std::min(g, cols - c0), at = r * cols + c0;
        double acc[9] = {};  // per parameter of the group (B + 1 <= 9), summed in double
        for (int64_t i = 0; i < n; ++i) {
          const float d = d_eff[at + i];
          const uint8_t code = q_.codes[size_t(at + i)];
          for (int k = 0; k < np; ++k) acc[k] += double(d) * param_derivative(q_.spec, k, code);
        }
        float* gp = grad_params_.data() + (r * ng + gi) * np;
        for (int k = 0; k < np; ++k) gp[k] += float(acc[k]);
        if (with_latent)
          for (int64_t i = 0; i < n; ++i) grad_latent_[size_t(at + i)] += d_eff[at + i];
      }
  });
}

void QuantizedLinearParam::zero_grads() {
  std::fill(grad_params_.begin(), grad_params_.end(), 0.0f);
  std::fill(grad_latent_.begin(), grad_latent_.end(), 0.0f);
}

QuantizedMatrix QuantizedLinearParam::finish(bool reassign_codes, ThreadPool& pool) const {
  QuantizedMatrix out = q_;
  round_params_to_fp16(out.params);
  if (!reassign_codes) return out;
  require(latent_.size() == eff_.size(), "internal: no latent weights to assign codes to");
  const int64_t cols = out.cols, g = out.spec.group_len(cols), ng = out.spec.groups_per_row(cols);
  pool.run(out.rows, [&](int, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t gi = 0; gi < ng; ++gi) {
        const int64_t c0 = gi * g, at = r * cols + c0;
        assign_nearest(out.spec, out.group_params(r, gi), latent_.data() + at,
                       int(std::min(g, cols - c0)), out.codes.data() + at);
      }
  });
  return out;
}

}  // namespace elutq
