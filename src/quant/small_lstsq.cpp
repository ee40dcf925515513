// Small dense least-squares helpers (see small_lstsq.h).
#include "quant/small_lstsq.h"

#include <lapacke.h>

#include <cmath>
#include <vector>

#include "core/error.h"

namespace elutq {

namespace {

// Solves F x = b in place (x holds b on entry) for a symmetric positive definite F (n, n),
// row-major, by Cholesky F = L L^T; false if a pivot is not positive. Our own loop, not LAPACKE:
// the fits call this for 2..6 unknowns hundreds of millions of times, and LAPACKE's row-major
// wrapper allocates and OpenBLAS's tiny factorisations take a lock per call.
// kN > 0: the size known at compile time (the fits' 2..5 unknowns), so the loops unroll; the same
// operations in the same order as the run-time size (kN = 0, n given), so the same results.
template <int kN>
bool cholesky_solve(double* F, int n_runtime, double* x) {
  const int n = kN > 0 ? kN : n_runtime;
  for (int j = 0; j < n; ++j) {  // L in the lower triangle of F
    double d = F[j * n + j];
    for (int k = 0; k < j; ++k) d -= F[j * n + k] * F[j * n + k];
    if (!(d > 0)) return false;
    d = std::sqrt(d);
    F[j * n + j] = d;
    for (int i = j + 1; i < n; ++i) {
      double v = F[i * n + j];
      for (int k = 0; k < j; ++k) v -= F[i * n + k] * F[j * n + k];
      F[i * n + j] = v / d;
    }
  }
  for (int i = 0; i < n; ++i) {  // L y = b
    double v = x[i];
    for (int k = 0; k < i; ++k) v -= F[i * n + k] * x[k];
    x[i] = v / F[i * n + i];
  }
  for (int i = n - 1; i >= 0; --i) {  // L^T x = y
    double v = x[i];
    for (int k = i + 1; k < n; ++k) v -= F[k * n + i] * x[k];
    x[i] = v / F[i * n + i];
  }
  return true;
}

}  // namespace

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
    bool solved;
    switch (n) {
      case 2: solved = cholesky_solve<2>(F, n, x); break;
      case 3: solved = cholesky_solve<3>(F, n, x); break;
      case 4: solved = cholesky_solve<4>(F, n, x); break;
      case 5: solved = cholesky_solve<5>(F, n, x); break;
      default: solved = cholesky_solve<0>(F, n, x); break;
    }
    if (solved) {
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
