// The trainable quantized projection; see quantized_linear_param.h.
#include "train/quantized_linear_param.h"

#include <algorithm>

#include "core/error.h"

namespace elutq {

namespace {

bool hlqc(const QuantSpec& spec) { return spec.kind == QuantKind::HLQC; }

// Group g's QuantizedMatrix::params from its trained ones: HLQC's (B + 1) expanded from (s_0, m)
// with the group's ratio codes, the other formats' as they are.
void expand_group(const QuantizedMatrix& q, const float* trained, int64_t g, float* params) {
  const int B = q.spec.bits;
  if (hlqc(q.spec))
    hlqc_expand(B, trained[0], trained[1], q.ratio_codes.data() + g * (B - 1),
                q.ratio_codebook.data(), params);
  else
    std::copy_n(trained, q.spec.params_per_group(), params);
}

// d(value)/d(trained param k) of every code of a group (np x 2^B, parameter-major; only HLQC's
// depend on the group):
//   HLQ (s_0..s_{B-1}, z): bit_k(code) for k < B, 1 for z;  uniform (scale, zero): code, 1;
//   HLQC (s_0, m): sum_b ratio_b (bit_b(code) - 1/2) with ratio_0 = 1 (s_b = s_0 ratio_b), 1.
void code_derivatives(const QuantizedMatrix& q, int64_t g, float* out) {
  const QuantSpec& spec = q.spec;
  const int B = spec.bits, nc = 1 << B, np = trainable_params_per_group(spec);
  for (int c = 0; c < nc; ++c) {
    if (spec.kind == QuantKind::Uniform) {
      out[c] = float(c);
    } else if (hlqc(spec)) {
      const uint8_t* k = q.ratio_codes.data() + g * (B - 1);
      float d = (c & 1) ? 0.5f : -0.5f;
      for (int b = 1; b < B; ++b) {
        const float ratio = q.ratio_codebook[size_t((b - 1) * kHlqcRatios + k[b - 1])];
        d += (c >> b & 1) ? 0.5f * ratio : -0.5f * ratio;
      }
      out[c] = d;
    } else {
      for (int k = 0; k < B; ++k) out[k * nc + c] = float(c >> k & 1);
    }
    out[(np - 1) * nc + c] = 1.0f;  // the zero / midpoint
  }
}

}  // namespace

bool trainable_format(const QuantSpec& spec) {
  return spec.kind == QuantKind::HLQ || spec.kind == QuantKind::HLQC ||
         spec.kind == QuantKind::Uniform;
}

int trainable_params_per_group(const QuantSpec& spec) {
  return hlqc(spec) ? 2 : spec.params_per_group();
}

std::vector<float> trainable_params(const QuantizedMatrix& q) {
  if (!hlqc(q.spec)) return q.params;
  const int B = q.spec.bits;
  const int64_t groups = int64_t(q.params.size()) / (B + 1);
  std::vector<float> t(size_t(2 * groups));
  for (int64_t g = 0; g < groups; ++g) {
    t[size_t(2 * g)] = q.params[size_t(g * (B + 1))];
    t[size_t(2 * g + 1)] = q.params[size_t(g * (B + 1) + B)];
  }
  return t;
}

void expand_trainable_params(const std::vector<float>& trained, QuantizedMatrix& q) {
  const int nt = trainable_params_per_group(q.spec), np = q.spec.params_per_group();
  const int64_t groups = int64_t(trained.size()) / nt;
  q.params.resize(size_t(groups * np));
  for (int64_t g = 0; g < groups; ++g)
    expand_group(q, trained.data() + g * nt, g, q.params.data() + g * np);
}

QuantizedLinearParam::QuantizedLinearParam(QuantizedMatrix fitted, bool with_latent,
                                           ThreadPool* pool)
    : q_(std::move(fitted)) {
  require(trainable_format(q_.spec),
          "finetuning trains HLQ, HLQC or uniform parameters, not ", q_.spec.name(),
          " (quantize with --method hlq-gptq, or gptq)");
  require(q_.codes.size() == size_t(q_.rows * q_.cols), "quantized matrix holds ", q_.codes.size(),
          " codes for ", q_.rows, " x ", q_.cols);
  require(q_.params.size() ==
              size_t(q_.rows * q_.spec.groups_per_row(q_.cols) * q_.spec.params_per_group()),
          "quantized matrix holds ", q_.params.size(), " parameters for ", q_.rows, " x ",
          q_.cols, " in ", q_.spec.name());
  if (hlqc(q_.spec)) {  // (check_hlqc would also want fp16 s_0 and m, which training leaves)
    const int B = q_.spec.bits;
    require(q_.ratio_codes.size() == size_t(q_.rows * q_.spec.groups_per_row(q_.cols) * (B - 1)) &&
                q_.ratio_codebook.size() == size_t((B - 1) * kHlqcRatios),
            "HLQC matrix without its ratio codes or codebook");
    for (uint8_t k : q_.ratio_codes) require(k < kHlqcRatios, "HLQC ratio code ", int(k), " >= 16");
  }
  trained_ = trainable_params(q_);
  eff_.resize(q_.codes.size());
  update_effective(/*reassign_codes=*/false, pool);
  if (with_latent) latent_ = eff_;
  grad_params_.assign(trained_.size(), 0.0f);
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
        const int64_t group = r * ng + gi;
        float* p = q_.params.data() + group * q_.spec.params_per_group();
        expand_group(q_, trained_.data() + group * trainable_params_per_group(q_.spec), group, p);
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
  const int np = trainable_params_per_group(q_.spec), nc = 1 << q_.spec.bits;
  require(!with_latent || latent_.size() == eff_.size(),
          "internal: latent gradients asked of a projection without latent weights");
  if (with_latent && grad_latent_.size() != latent_.size()) grad_latent_.assign(latent_.size(), 0.0f);
  const bool per_group = hlqc(q_.spec);
  pool.run(q_.rows, [&](int, int64_t r0, int64_t r1) {
    float deriv[9 * 256];  // per trained parameter (<= B + 1 <= 9) and code (B <= 8)
    if (!per_group) code_derivatives(q_, 0, deriv);
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t gi = 0; gi < ng; ++gi) {
        const int64_t c0 = gi * g, n = std::min(g, cols - c0), at = r * cols + c0;
        if (per_group) code_derivatives(q_, r * ng + gi, deriv);
        double acc[9] = {};  // per parameter of the group, summed in double
        for (int64_t i = 0; i < n; ++i) {
          const float d = d_eff[at + i];
          const uint8_t code = q_.codes[size_t(at + i)];
          for (int k = 0; k < np; ++k) acc[k] += double(d) * deriv[k * nc + code];
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
  std::vector<float> trained = trained_;
  round_params_to_fp16(trained);  // HLQC: s_0 and m; its s_b are s_0 times codebook ratios
  expand_trainable_params(trained, out);
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
