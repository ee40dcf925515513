// Shared per-group fitting helpers (see group_fit.h).
#include "quant/group_fit.h"

#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/gemv.h"

namespace elutq {

void full_block_product(const float* H, int n, const double* V, int m, double* out) {
  require(m >= 1 && m <= 6, "full_block_product: m must be 1..6, got ", m);
  block_product_f32_f64(H, n, V, m, out);
}

FullBlockProducts::FullBlockProducts(const float* w, int n, const GroupWeights& h) {
  if (!h.full) return;
  std::vector<double> V(size_t(n) * 2), HV(size_t(n) * 2);  // columns 1 and w
  for (int j = 0; j < n; ++j) {
    V[size_t(j) * 2] = 1.0;
    V[size_t(j) * 2 + 1] = w[j];
  }
  full_block_product(h.full, n, V.data(), 2, HV.data());
  H1.resize(size_t(n));
  Hw.resize(size_t(n));
  for (int i = 0; i < n; ++i) {
    H1[size_t(i)] = HV[size_t(i) * 2];
    Hw[size_t(i)] = HV[size_t(i) * 2 + 1];
  }
}

// The sums run in four lanes (terms i mod 4), added at the end: one running sum made every term
// wait for the one before (a double add's latency per weight), and the fits evaluate this error
// dozens of times per group.
namespace {
constexpr int kLanes = 4;
double lanes_total(const double (&e)[kLanes]) { return (e[0] + e[1]) + (e[2] + e[3]); }
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
  for (int i = 0; i < n; ++i) {
    const double r = double(w[i]) - q[i];
    e[i % kLanes] += (h.diag ? double(h.diag[i]) : 1.0) * r * r;
  }
  return lanes_total(e);
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
