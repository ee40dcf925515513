// Shared per-group fitting helpers (see group_fit.h).
#include "quant/group_fit.h"

#include "core/error.h"
#include "core/thread_pool.h"

namespace elutq {

double weighted_error(const float* w, const float* q, int n, const GroupWeights& h) {
  double e = 0;
  if (h.full) {
    for (int i = 0; i < n; ++i) {
      double ri = double(w[i]) - q[i];
      double acc = 0;
      const float* Hi = h.full + int64_t(i) * n;  // row i of (n, n)
      for (int j = 0; j < n; ++j) acc += double(Hi[j]) * (double(w[j]) - q[j]);
      e += ri * acc;
    }
    return e;
  }
  for (int i = 0; i < n; ++i) {
    double r = double(w[i]) - q[i];
    e += (h.diag ? double(h.diag[i]) : 1.0) * r * r;
  }
  return e;
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
