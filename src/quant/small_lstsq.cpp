// Small dense least-squares helpers (see small_lstsq.h).
#include "quant/small_lstsq.h"

#include <lapacke.h>

#include <cmath>
#include <vector>

#include "core/error.h"

namespace elutq {

bool solve_proximal_spd(const double* M, const double* rhs, const double* p_prev, int n,
                        double ridge, double* p) {
  require(n > 0 && n <= 64, "solve_proximal_spd: size ", n, " out of range");
  double tr = 0;
  for (int i = 0; i < n; ++i) tr += M[i * n + i];
  double lambda = ridge * (tr / n + 1e-30);
  double A[64 * 64], b[64];  // (n, n), (n)
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) A[i * n + j] = M[i * n + j];
    A[i * n + i] += lambda;
    b[i] = rhs[i] + lambda * p_prev[i];
  }
  // Retry with a stronger ridge before giving up: round-off can make M slightly indefinite.
  for (int attempt = 0; attempt < 3; ++attempt) {
    double F[64 * 64], x[64];
    for (int i = 0; i < n * n; ++i) F[i] = A[i];
    for (int i = 0; i < n; ++i) x[i] = b[i];
    if (LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', n, 1, F, n, x, 1) == 0) {
      bool finite = true;
      for (int i = 0; i < n; ++i) finite = finite && std::isfinite(x[i]);
      if (finite) {
        for (int i = 0; i < n; ++i) p[i] = x[i];
        return true;
      }
    }
    double extra = lambda * 1000 + 1e-12 * (std::fabs(tr) / n + 1e-30);
    for (int i = 0; i < n; ++i) {
      A[i * n + i] += extra;
      b[i] += extra * p_prev[i];
    }
    lambda += extra;
  }
  for (int i = 0; i < n; ++i) p[i] = p_prev[i];
  return false;
}

void solve_pinv_sym(const double* M, const double* rhs, int n, double rcond, double* x) {
  std::vector<double> A(M, M + size_t(n) * n), b(rhs, rhs + n), s(n);
  lapack_int rank = 0;
  lapack_int info = LAPACKE_dgelsd(LAPACK_ROW_MAJOR, n, n, 1, A.data(), n, b.data(), 1, s.data(),
                                   rcond, &rank);
  require(info == 0, "least-squares solve failed (LAPACKE_dgelsd info ", info, ")");
  for (int i = 0; i < n; ++i) x[i] = b[i];
}

}  // namespace elutq
