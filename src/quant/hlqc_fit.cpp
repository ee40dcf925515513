// HLQC fitting: ratio codebooks by Lloyd's algorithm, projection of free HLQ groups (hlqc_fit.h).
#include "quant/hlqc_fit.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "core/error.h"
#include "core/thread_pool.h"
#include "core/fp16.h"
#include "quant/small_lstsq.h"

namespace elutq {

namespace {

constexpr int kMaxBits = 4;

// Lloyd's algorithm in one dimension: `levels` centres for the samples v (sorted on return),
// started at the sample quantiles. Fewer distinct samples than levels leave duplicate centres,
// which is harmless (a code then simply goes unused).
std::vector<double> lloyd_1d(std::vector<double> v, int levels) {
  std::sort(v.begin(), v.end());
  std::vector<double> c(levels);
  for (int i = 0; i < levels; ++i)
    c[i] = v[std::min(v.size() - 1, size_t((i + 0.5) / levels * double(v.size())))];
  std::vector<double> sum(levels);
  std::vector<int64_t> cnt(levels);
  for (int it = 0; it < 30; ++it) {
    std::fill(sum.begin(), sum.end(), 0.0);
    std::fill(cnt.begin(), cnt.end(), 0);
    // v and c are sorted: sweep both, moving to the next centre when it is closer.
    int j = 0;
    for (double x : v) {
      while (j + 1 < levels && std::fabs(c[j + 1] - x) <= std::fabs(c[j] - x)) ++j;
      sum[j] += x;
      ++cnt[j];
    }
    bool moved = false;
    for (int i = 0; i < levels; ++i)
      if (cnt[i] > 0) {
        const double m = sum[i] / double(cnt[i]);
        moved = moved || m != c[i];
        c[i] = m;
      }
    std::sort(c.begin(), c.end());
    if (!moved) break;
  }
  return c;
}

// Index of the codebook entry of plane b nearest to ratio in log terms; a ratio that is not
// positive and finite takes the entry nearest the uniform ratio 2^b.
int nearest_ratio(const float* codebook, int b, double ratio) {
  if (!(ratio > 0) || !std::isfinite(ratio)) ratio = double(1 << b);
  const double lr = std::log2(ratio);
  const float* cb = codebook + (b - 1) * kHlqcRatios;
  int best = 0;
  double bd = std::numeric_limits<double>::infinity();
  for (int i = 0; i < kHlqcRatios; ++i) {
    const double d = std::fabs(std::log2(double(cb[i])) - lr);
    if (d < bd) {
      bd = d;
      best = i;
    }
  }
  return best;
}

// Weighted least squares for (s_0, m) with the level shape fixed: w_i ~ m + s_0 * u(c_i),
// u(c) = sum_b ratio_b * (bit_b(c) - 1/2), ratio_0 = 1. prev (2) is kept along undetermined
// directions.
void refit_scale_mid(const float* w, int n, int bits, const uint8_t* codes, const GroupWeights& h,
                     const FullBlockProducts& fb, CodeColumnProducts* cp, const float* ratio,
                     const double* prev, double* out) {
  double u_of[1 << kMaxBits];
  for (int c = 0; c < (1 << bits); ++c) {
    double u = 0;
    for (int b = 0; b < bits; ++b)
      u += (c >> b & 1) ? 0.5 * ratio[b] : -0.5 * ratio[b];
    u_of[c] = u;
  }
  double M[4] = {}, rhs[2] = {};
  if (h.full) {
    // H u = sum_b ratio_b (H bit_b - H 1 / 2), from the bit planes' products.
    cp->update(codes);
    for (int i = 0; i < n; ++i) {
      const double u = u_of[codes[i]];
      double hu = 0;
      for (int b = 0; b < bits; ++b) hu += double(ratio[b]) * (cp->column(b)[i] - 0.5 * fb.H1[size_t(i)]);
      M[0] += u * hu;
      M[1] += u * fb.H1[size_t(i)];
      M[3] += fb.H1[size_t(i)];
      rhs[0] += u * fb.Hw[size_t(i)];
      rhs[1] += fb.Hw[size_t(i)];
    }
  } else {
    for (int i = 0; i < n; ++i) {
      const double hi = h.diag ? double(h.diag[i]) : 1.0, u = u_of[codes[i]];
      M[0] += hi * u * u;
      M[1] += hi * u;
      M[3] += hi;
      rhs[0] += hi * u * w[i];
      rhs[1] += hi * w[i];
    }
  }
  M[2] = M[1];
  solve_proximal_spd(M, rhs, prev, 2, 1e-9, out);
}

// HLQC parameters (s_0 .. s_{B-1}, m): nearest codes and their weighted error (with a full block
// from the bit planes' products in cp, else from the values, q (n) scratch).
double assign_and_error(const float* w, int n, int bits, const GroupWeights& h,
                        const FullBlockProducts& fb, CodeColumnProducts* cp, const float* p,
                        uint8_t* codes, std::vector<float>& q) {
  const QuantSpec spec{QuantKind::HLQC, bits, 0};
  assign_nearest(spec, p, w, n, codes);
  if (cp) {  // values m + sum_b s_b (bit_b - 1/2) = z + sum_b s_b bit_b, z = m - sum_b s_b / 2
    cp->update(codes);
    double coef[kMaxBits], z = p[bits];
    for (int b = 0; b < bits; ++b) {
      coef[b] = p[b];
      z -= 0.5 * double(p[b]);
    }
    return error_from_products(w, n, codes, fb, *cp, coef, z);
  }
  for (int i = 0; i < n; ++i) q[i] = dequant_code(spec, p, codes[i]);
  return weighted_error(w, q.data(), n, h);
}

// The HLQ zero of HLQC parameters: m - sum_b s_b / 2.
float zero_of(const float* p, int bits) {
  float z = p[bits];
  for (int b = 0; b < bits; ++b) z -= 0.5f * p[b];
  return z;
}

}  // namespace

std::vector<float> hlqc_codebook_from_params(int bits, const float* params, int64_t n_groups) {
  require(bits >= 1 && bits <= kMaxBits, "HLQC codebook: bits must be 1..4, got ", bits);
  std::vector<float> cb(size_t((bits - 1) * kHlqcRatios));
  for (int b = 1; b < bits; ++b) {
    std::vector<double> lr;  // log2 of the ratios s_b / s_0
    lr.reserve(size_t(n_groups));
    for (int64_t g = 0; g < n_groups; ++g) {
      const float* p = params + g * (bits + 1);
      const double r = double(p[b]) / double(p[0]);
      if (p[0] > 0 && r > 0 && std::isfinite(r)) lr.push_back(std::log2(r));
    }
    // Without samples (or too few to say anything), a band around the uniform ratio.
    if (lr.size() < size_t(kHlqcRatios))
      for (int i = 0; i < kHlqcRatios; ++i) lr.push_back(b + 0.03 * (i - kHlqcRatios / 2));
    const std::vector<double> c = lloyd_1d(std::move(lr), kHlqcRatios);
    for (int i = 0; i < kHlqcRatios; ++i) cb[size_t((b - 1) * kHlqcRatios + i)] = float(std::exp2(c[i]));
  }
  return cb;
}

std::vector<float> hlqc_fit_codebook(const float* W, int64_t rows, int64_t cols,
                                     const QuantSpec& spec, const HlqFitOptions& opt,
                                     ThreadPool* pool, int64_t sample_rows) {
  require(spec.kind == QuantKind::HLQC, "HLQC codebook: needs an HLQC format, got ", spec.name());
  const int64_t n = std::max<int64_t>(1, std::min(rows, sample_rows));
  std::vector<float> sample(size_t(n * cols));  // (n, cols) rows spread evenly over the matrix
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i * rows / n;
    std::copy(W + r * cols, W + (r + 1) * cols, sample.begin() + i * cols);
  }
  QuantSpec free = spec;
  free.kind = QuantKind::HLQ;
  const QuantizedMatrix f = quantize_hlq(sample.data(), n, cols, free, opt, pool);
  return hlqc_codebook_from_params(spec.bits, f.params.data(),
                                   n * free.groups_per_row(cols));
}

double hlqc_project_group(const float* w, int n, int bits, const GroupWeights& h,
                          const float* codebook, const float* p_free, uint8_t* codes,
                          float* params, uint8_t* k, const FullBlockProducts* given_fb) {
  const int np = bits + 1;
  std::vector<float> q(n);
  std::vector<uint8_t> cur(codes, codes + n), best_codes(codes, codes + n);
  float p[kMaxBits + 1], best_p[kMaxBits + 1];
  uint8_t best_k[kMaxBits] = {};
  double best_e = std::numeric_limits<double>::infinity();
  std::optional<FullBlockProducts> own_fb;
  const FullBlockProducts& fb = given_fb ? *given_fb : own_fb.emplace(w, n, h);
  std::optional<CodeColumnProducts> own_cp;  // the bit planes' products, with a full block
  if (h.full) own_cp.emplace(h.full, n, bits, CodeColumnProducts::Columns::BitPlanes);
  CodeColumnProducts* cp = own_cp ? &*own_cp : nullptr;
  // Two starts: the ratios of the free fit, and the uniform shape (ratios nearest 2^b).
  for (int start = 0; start < 2; ++start) {
    uint8_t kk[kMaxBits] = {};
    for (int b = 1; b < bits; ++b)
      kk[b - 1] = uint8_t(nearest_ratio(codebook, b, start == 0 ? double(p_free[b]) / p_free[0]
                                                                : double(1 << b)));
    std::copy(codes, codes + n, cur.begin());
    double mid_free = p_free[bits];
    for (int b = 0; b < bits; ++b) mid_free += 0.5 * p_free[b];
    double sz[2] = {p_free[0], mid_free};
    for (int round = 0; round < 4; ++round) {
      float ratio[kMaxBits] = {1.0f};
      for (int b = 1; b < bits; ++b) ratio[b] = codebook[(b - 1) * kHlqcRatios + kk[b - 1]];
      double out[2];
      refit_scale_mid(w, n, bits, cur.data(), h, fb, cp, ratio, sz, out);
      const float s0 = fp16_to_f32(f32_to_fp16(float(out[0])));
      const float mid = fp16_to_f32(f32_to_fp16(float(out[1])));
      if (!std::isfinite(s0) || !std::isfinite(mid)) break;  // beyond fp16: keep what we have
      sz[0] = s0;
      sz[1] = mid;
      hlqc_expand(bits, s0, mid, kk, codebook, p);
      const double e = assign_and_error(w, n, bits, h, fb, cp, p, cur.data(), q);
      if (e < best_e) {
        best_e = e;
        std::copy(p, p + np, best_p);
        std::copy(kk, kk + bits - 1, best_k);
        best_codes = cur;
      }
      if (start == 1 || bits == 1) continue;  // the uniform start keeps its shape
      // Let the ratio codes follow the free least-squares optimum of the current codes.
      float pf[kMaxBits + 1], pz[kMaxBits + 1];  // free refit, from p in HLQ (zero) form
      std::copy(p, p + np, pz);
      pz[bits] = zero_of(p, bits);
      hlq_refit_params(w, n, bits, cur.data(), h, pz, pf, &fb, cp);
      for (int b = 1; b < bits; ++b) kk[b - 1] = uint8_t(nearest_ratio(codebook, b, double(pf[b]) / pf[0]));
    }
  }
  require(std::isfinite(best_e), "HLQC fit: parameters do not fit in fp16 (weights too large?)");
  std::copy(best_p, best_p + np, params);
  std::copy(best_k, best_k + bits - 1, k);
  std::copy(best_codes.begin(), best_codes.end(), codes);
  return best_e;
}

QuantizedMatrix quantize_hlqc(const float* W, int64_t rows, int64_t cols, const QuantSpec& spec,
                              const HlqFitOptions& opt, ThreadPool* pool) {
  require(spec.kind == QuantKind::HLQC, "quantize_hlqc: needs an HLQC format, got ", spec.name());
  QuantSpec free = spec;
  free.kind = QuantKind::HLQ;
  QuantizedMatrix f = quantize_hlq(W, rows, cols, free, opt, pool);
  const int B = spec.bits;
  const int64_t gpr = spec.groups_per_row(cols), g = spec.group_len(cols);
  QuantizedMatrix q;
  q.spec = spec;
  q.rows = rows;
  q.cols = cols;
  q.ratio_codebook = hlqc_codebook_from_params(B, f.params.data(), rows * gpr);
  q.codes = std::move(f.codes);
  q.params.assign(f.params.size(), 0.0f);
  q.ratio_codes.assign(size_t(rows * gpr * (B - 1)), 0);
  auto do_row = [&](int64_t r) {
    for (int64_t gi = 0; gi < gpr; ++gi) {
      const int64_t idx = r * gpr + gi, c0 = gi * g;
      hlqc_project_group(W + r * cols + c0, int(std::min(g, cols - c0)), B, GroupWeights{},
                         q.ratio_codebook.data(), f.params.data() + idx * (B + 1),
                         q.codes.data() + r * cols + c0, q.params.data() + idx * (B + 1),
                         q.ratio_codes.data() + idx * (B - 1));
    }
  };
  if (pool) pool->parallel_for(rows, do_row);
  else
    for (int64_t r = 0; r < rows; ++r) do_row(r);
  return q;
}

}  // namespace elutq
