// GANQ codebook quantization (see ganq.h).
#include "quant/ganq.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/hessian.h"
#include "quant/small_lstsq.h"

namespace elutq {

void ganq_codebook_update(const float* wH, const float* H, int n, const uint8_t* codes, int bits,
                          float* T) {
  const int K = 1 << bits;
  // S^T (n, K) one-hot; HS = H S^T (n, K) by one GEMM; then S H S^T (K, K) and w H S^T (K) by
  // summing rows of HS and entries of wH by code.
  std::vector<float> St(size_t(n) * K, 0.0f), HS(size_t(n) * K);
  for (int i = 0; i < n; ++i) St[size_t(i) * K + codes[i]] = 1.0f;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, K, n, 1.0f, H, n, St.data(), K, 0.0f,
              HS.data(), K);
  std::vector<double> M(size_t(K) * K, 0.0), b(K, 0.0);  // S H S^T, w H S^T
  for (int i = 0; i < n; ++i) {
    for (int l = 0; l < K; ++l) M[size_t(codes[i]) * K + l] += HS[size_t(i) * K + l];
    b[codes[i]] += wH[i];
  }
  // Solve on the codes that occur; the others keep their entries.
  std::vector<int> count(K, 0), used;
  for (int i = 0; i < n; ++i) ++count[codes[i]];
  for (int k = 0; k < K; ++k)
    if (count[k] > 0) used.push_back(k);
  const int m = int(used.size());
  if (m == 0) return;
  std::vector<double> Mu(size_t(m) * m), bu(m), x(m);
  for (int a = 0; a < m; ++a) {
    bu[a] = b[used[a]];
    for (int c = 0; c < m; ++c) Mu[size_t(a) * m + c] = M[size_t(used[a]) * K + used[c]];
  }
  solve_pinv_sym(Mu.data(), bu.data(), m, 1e-10, x.data());
  for (int a = 0; a < m; ++a)
    if (std::isfinite(x[a])) T[used[a]] = float(x[a]);
}

double ganq_assign(const float* w, const float* L, int n, const float* T, int bits,
                   uint8_t* codes) {
  const int K = 1 << bits;
  std::vector<float> acc(n, 0.0f);  // (n) acc_j = sum_{i > j} (w_i - q_i) L_ij
  double loss = 0;
  for (int j = n - 1; j >= 0; --j) {
    const double ljj = L[int64_t(j) * n + j];
    const double target = w[j] + acc[j] / ljj;
    int best = 0;
    double bd = std::fabs(target - T[0]);
    for (int k = 1; k < K; ++k) {
      double d = std::fabs(target - T[k]);
      if (d < bd) {
        bd = d;
        best = k;
      }
    }
    codes[j] = uint8_t(best);
    loss += (bd * ljj) * (bd * ljj);
    const float e = w[j] - T[best];
    const float* Lj = L + int64_t(j) * n;  // row j: L_jk for k < j
    for (int k = 0; k < j; ++k) acc[k] += e * Lj[k];
  }
  return loss;
}

GanqResult ganq_quantize(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H,
                         int bits, const GanqOptions& opt, ThreadPool* pool) {
  QuantSpec spec{QuantKind::Codebook, bits, 0};
  validate_quant_spec(spec);
  require(rows > 0 && cols > 0, "GANQ: empty matrix");
  require(int64_t(H.size()) == cols * cols, "GANQ: Hessian must be ", cols, " x ", cols);
  const int K = 1 << bits;
  const int n = int(cols);
  GanqResult res;
  PreparedHessian ph = prepare_hessian(H, cols, opt.percdamp, pool ? pool->size() : 1);
  res.log = ph.log;
  std::vector<float> L = ph.H;  // (cols, cols) -> lower Cholesky factor of the damped H
  require(LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'L', n, L.data(), n) == 0,
          "GANQ: Cholesky of the damped Hessian failed (increase damping)");
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j) L[int64_t(i) * n + j] = 0.0f;
  std::vector<float> Wz(W, W + rows * cols);  // (rows, cols), dead inputs zeroed
  for (int64_t r = 0; r < rows; ++r)
    for (int i = 0; i < n; ++i)
      if (ph.dead[i]) Wz[r * cols + i] = 0.0f;
  std::vector<float> WH(size_t(rows * cols));  // (rows, cols) = Wz H
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), n, n, 1.0f, Wz.data(), n,
              ph.H.data(), n, 0.0f, WH.data(), n);

  QuantizedMatrix& q = res.q;
  q.spec = spec;
  q.rows = rows;
  q.cols = cols;
  q.codes.assign(size_t(rows * cols), 0);
  q.params.assign(size_t(rows * K), 0.0f);
  std::vector<double> row_loss(size_t(rows), 0.0);
  auto do_rows = [&](int, int64_t r0, int64_t r1) {
    std::vector<float> T(K), Tbest(K);
    std::vector<uint8_t> codes(n);
    for (int64_t r = r0; r < r1; ++r) {
      const float* w = Wz.data() + r * cols;
      float lo = *std::min_element(w, w + n), hi = *std::max_element(w, w + n);
      require(std::isfinite(lo) && std::isfinite(hi), "GANQ: row ", r, " has non-finite weights");
      for (int k = 0; k < K; ++k) T[k] = lo + (hi - lo) * float(k) / float(K - 1);
      double best = ganq_assign(w, L.data(), n, T.data(), bits, codes.data());
      Tbest = T;
      for (int it = 0; it < opt.iterations; ++it) {
        ganq_codebook_update(WH.data() + r * cols, ph.H.data(), n, codes.data(), bits, T.data());
        double l = ganq_assign(w, L.data(), n, T.data(), bits, codes.data());
        if (l < best) {
          best = l;
          Tbest = T;
        }
      }
      round_params_to_fp16(Tbest);
      for (float& t : Tbest)
        require(std::isfinite(t), "GANQ: codebook value does not fit in fp16 (row ", r, ")");
      row_loss[r] = ganq_assign(w, L.data(), n, Tbest.data(), bits, q.codes.data() + r * cols);
      std::copy(Tbest.begin(), Tbest.end(), q.params.begin() + r * K);
    }
  };
  if (pool) pool->run(rows, do_rows);
  else do_rows(0, 0, rows);
  res.loss = std::accumulate(row_loss.begin(), row_loss.end(), 0.0);
  return res;
}

}  // namespace elutq
