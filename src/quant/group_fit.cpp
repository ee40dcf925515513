// Shared per-group fitting helpers (see group_fit.h).
#include "quant/group_fit.h"

#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"

namespace elutq {

namespace {

// R rows of H at once, M columns of V: R * M independent sums, each in j order.
template <int M, int R>
void block_rows(const float* H, int n, const double* V, int i0, double* out) {
  double acc[R][M] = {};
  for (int j = 0; j < n; ++j) {
    const double* v = V + int64_t(j) * M;
    for (int r = 0; r < R; ++r) {
      const double h = H[int64_t(i0 + r) * n + j];
      for (int c = 0; c < M; ++c) acc[r][c] += h * v[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < M; ++c) out[int64_t(i0 + r) * M + c] = acc[r][c];
}

template <int M>
void product(const float* H, int n, const double* V, double* out) {
  constexpr int R = M == 1 ? 4 : 2;  // about 4-8 sums in flight, all in registers
  int i = 0;
  for (; i + R <= n; i += R) block_rows<M, R>(H, n, V, i, out);
  for (; i < n; ++i) block_rows<M, 1>(H, n, V, i, out);
}

}  // namespace

void full_block_product(const float* H, int n, const double* V, int m, double* out) {
  switch (m) {
    case 1: return product<1>(H, n, V, out);
    case 2: return product<2>(H, n, V, out);
    case 3: return product<3>(H, n, V, out);
    case 4: return product<4>(H, n, V, out);
    case 5: return product<5>(H, n, V, out);
    case 6: return product<6>(H, n, V, out);
    default: require(false, "full_block_product: m must be 1..6, got ", m);
  }
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

double weighted_error(const float* w, const float* q, int n, const GroupWeights& h) {
  double e = 0;
  if (h.full) {
    std::vector<double> r(static_cast<size_t>(n)), Hr(r.size());  // (n) each
    for (int i = 0; i < n; ++i) r[size_t(i)] = double(w[i]) - q[i];
    full_block_product(h.full, n, r.data(), 1, Hr.data());
    for (int i = 0; i < n; ++i) e += r[size_t(i)] * Hr[size_t(i)];
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
