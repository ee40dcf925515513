// Shared per-group fitting helpers (see group_fit.h).
#include "quant/group_fit.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/gemv.h"

namespace elutq {

void full_block_product(const float* H, int n, const double* V, int m, double* out) {
  require(m >= 1 && m <= 6, "full_block_product: m must be 1..6, got ", m);
  block_product_f32_f64(H, n, V, m, out);
}

FullBlockProducts::FullBlockProducts(const float* w, int n, const GroupWeights& h)
    : FullBlockProducts(w, n, h, h.full ? block_times_ones(h.full, n) : std::vector<double>{}) {}

FullBlockProducts::FullBlockProducts(const float* w, int n, const GroupWeights& h,
                                     std::vector<double> h1) {
  if (!h.full) return;
  require(int(h1.size()) == n, "full-block products: H 1 of ", h1.size(), " weights for ", n);
  H1 = std::move(h1);
  std::vector<double> V(w, w + n);
  Hw.resize(size_t(n));
  full_block_product(h.full, n, V.data(), 1, Hw.data());
}

std::vector<double> block_times_ones(const float* H, int n) {
  std::vector<double> ones(size_t(n), 1.0), out(static_cast<size_t>(n));
  full_block_product(H, n, ones.data(), 1, out.data());
  return out;
}

// The sums run in four lanes (terms i mod 4), added at the end: one running sum made every term
// wait for the one before (a double add's latency per weight), and the fits evaluate this error
// dozens of times per group.
namespace {
constexpr int kLanes = 4;
double lanes_total(const double (&e)[kLanes]) { return (e[0] + e[1]) + (e[2] + e[3]); }

// e[i mod 4] += (h_i r_i) r_i, or r_i r_i without weights (the same value: 1.0 r is r), each lane
// in order. The lanes are named once per pass of four, not indexed by i % 4, so they stay in
// registers (as e[i % 4] they went through memory, each add waiting on a store).
template <bool kDiag>
void add_in_lanes(const float* w, const float* q, const float* diag, int n, double (&e)[kLanes]) {
  auto term = [&](int i) {
    const double r = double(w[i]) - q[i];
    if constexpr (kDiag) return double(diag[i]) * r * r;
    else return r * r;
  };
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) e[l] += term(i + l);
  for (int l = 0; i < n; ++i, ++l) e[l] += term(i);
}
}  // namespace

double weighted_error(const float* w, const float* q, int n, const GroupWeights& h) {
  double e[kLanes] = {};
  if (h.full) {
    std::vector<double> r(static_cast<size_t>(n)), Hr(r.size());  // (n) each
    for (int i = 0; i < n; ++i) r[size_t(i)] = double(w[i]) - q[i];
    full_block_product(h.full, n, r.data(), 1, Hr.data());
    for (int i = 0; i < n; ++i) e[i % kLanes] += r[size_t(i)] * Hr[size_t(i)];
    return lanes_total(e);
  }
  if (h.diag) add_in_lanes<true>(w, q, h.diag, n, e);
  else add_in_lanes<false>(w, q, nullptr, n, e);
  return lanes_total(e);
}

CodeColumnProducts::CodeColumnProducts(const float* H, int n, int columns, Columns kind)
    : H_(H), n_(n), columns_(columns), kind_(kind), codes_(size_t(n)),
      HA_(size_t(columns) * size_t(n)) {
  require(H && n > 0, "code-column products: need a full block of at least one weight");
  require(kind == Columns::CodeValue ? columns == 1 : columns >= 1 && columns <= kMaxPlanes,
          "code-column products: ", columns, " columns (code values: 1; bit planes: 1..",
          kMaxPlanes, ")");
}

void CodeColumnProducts::update(const uint8_t* codes) {
  int changed = 0;
  if (valid_)
    for (int i = 0; i < n_; ++i) changed += codes[i] != codes_[size_t(i)];
  if (valid_ && changed == 0) return;
  // Sums started afresh when most codes moved: as cheap as the updates, and no drift builds up.
  const bool afresh = !valid_ || 2 * changed > n_;
  if (afresh) std::fill(HA_.begin(), HA_.end(), 0.0);
  for (int i = 0; i < n_; ++i) {
    if (!afresh && codes[i] == codes_[size_t(i)]) continue;
    for (int k = 0; k < columns_; ++k) {
      const double d = entry(codes[i], k) - (afresh ? 0.0 : entry(codes_[size_t(i)], k));
      if (d != 0) add_scaled_f32_f64(HA_.data() + size_t(k) * size_t(n_), H_ + size_t(i) * size_t(n_), d, n_);
    }
  }
  std::copy(codes, codes + n_, codes_.begin());
  valid_ = true;
}

namespace {
// error_from_products for M columns; q_of(code) gives z + sum_k coef_k a_k of a code.
template <int M, typename QOf>
double error_with_columns(const float* w, int n, const uint8_t* codes, const FullBlockProducts& fb,
                          const double* const* col, const double* coef, double z, QOf q_of) {
  double e[kLanes] = {};
  for (int i = 0; i < n; ++i) {
    double hr = fb.Hw[size_t(i)] - z * fb.H1[size_t(i)];
    for (int k = 0; k < M; ++k) hr -= coef[k] * col[k][i];
    e[i % kLanes] += (double(w[i]) - q_of(codes[i])) * hr;
  }
  return lanes_total(e);
}
}  // namespace

double error_from_products(const float* w, int n, const uint8_t* codes, const FullBlockProducts& fb,
                           const CodeColumnProducts& cp, const double* coef, double z) {
  const int m = cp.columns();
  const double* col[CodeColumnProducts::kMaxPlanes];
  for (int k = 0; k < m; ++k) col[k] = cp.column(k);
  if (cp.kind() == CodeColumnProducts::Columns::CodeValue)
    return error_with_columns<1>(w, n, codes, fb, col, coef, z,
                                 [&](uint8_t c) { return z + coef[0] * double(c); });
  double vals[1 << CodeColumnProducts::kMaxPlanes];  // the values of the 2^m codes
  for (int c = 0; c < (1 << m); ++c) {
    double q = z;
    for (int k = 0; k < m; ++k)
      if (c >> k & 1) q += coef[k];
    vals[c] = q;
  }
  auto q_of = [&](uint8_t c) { return vals[c]; };
  switch (m) {
    case 1: return error_with_columns<1>(w, n, codes, fb, col, coef, z, q_of);
    case 2: return error_with_columns<2>(w, n, codes, fb, col, coef, z, q_of);
    case 3: return error_with_columns<3>(w, n, codes, fb, col, coef, z, q_of);
    default: return error_with_columns<4>(w, n, codes, fb, col, coef, z, q_of);
  }
}

QuantizedMatrix quantize_groupwise(const float* W, int64_t rows, int64_t cols,
                                   const QuantSpec& spec, const GroupFitter& fit,
                                   ThreadPool* pool) {
  validate_quant_spec(spec);
  require(rows > 0 && cols > 0, "quantize: empty matrix (", rows, " x ", cols, ")");
  QuantizedMatrix q;
  q.spec = spec;
  q.rows = rows;
  q.cols = cols;
  const int64_t g = spec.group_len(cols), gpr = spec.groups_per_row(cols);
  const int ppg = spec.params_per_group();
  q.codes.assign(size_t(rows * cols), 0);
  q.params.assign(size_t(rows * gpr * ppg), 0.0f);
  auto do_row = [&](int64_t r) {
    for (int64_t gi = 0; gi < gpr; ++gi) {
      int64_t c0 = gi * g;
      int n = int(std::min(g, cols - c0));
      fit(r, gi, W + r * cols + c0, n, q.params.data() + (r * gpr + gi) * ppg,
          q.codes.data() + r * cols + c0);
    }
  };
  if (pool) pool->parallel_for(rows, do_row);
  else
    for (int64_t r = 0; r < rows; ++r) do_row(r);
  return q;
}

}  // namespace elutq
