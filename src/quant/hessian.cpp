// Hessian accumulation and preparation for GPTQ / GANQ (see hessian.h).
#include "quant/hessian.h"

#include <cblas.h>
#include <lapacke.h>

#include <cmath>
#include <sstream>

#include "core/error.h"

namespace elutq {

HessianAccumulator::HessianAccumulator(int64_t dim) : dim_(dim) {
  require(dim > 0, "Hessian: dimension must be positive");
  sum_.assign(size_t(dim * dim), 0.0);
  tmp_.assign(size_t(dim * dim), 0.0f);
}

void HessianAccumulator::add(const float* X, int64_t n) {
  if (n <= 0) return;
  // tmp = X^T X (upper triangle), X is (n, dim) row-major.
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, int(dim_), int(n), 1.0f, X, int(dim_), 0.0f,
              tmp_.data(), int(dim_));
  for (int64_t i = 0; i < dim_; ++i)
    for (int64_t j = i; j < dim_; ++j) sum_[i * dim_ + j] += tmp_[i * dim_ + j];
  n_ += n;
}

std::vector<float> HessianAccumulator::hessian() const {
  require(n_ > 0, "Hessian: no calibration inputs were added");
  std::vector<float> H(size_t(dim_ * dim_));
  const double s = 2.0 / double(n_);
  for (int64_t i = 0; i < dim_; ++i)
    for (int64_t j = i; j < dim_; ++j) H[i * dim_ + j] = H[j * dim_ + i] = float(s * sum_[i * dim_ + j]);
  return H;
}

PreparedHessian prepare_hessian(const std::vector<float>& Hin, int64_t dim, double percdamp) {
  require(int64_t(Hin.size()) == dim * dim, "Hessian: expected ", dim, " x ", dim, " values");
  PreparedHessian p;
  p.H = Hin;
  p.dead.assign(size_t(dim), 0);
  double mean_diag = 0;
  for (int64_t i = 0; i < dim; ++i) {
    float& d = p.H[i * dim + i];
    require(std::isfinite(d), "Hessian: non-finite diagonal at ", i, " (calibration inputs overflow?)");
    if (d == 0) {  // an input that is always zero: its weights do not matter, quantize them to 0
      p.dead[i] = 1;
      d = 1;
    }
    mean_diag += d;
  }
  mean_diag /= double(dim);
  std::ostringstream log;
  double damp = percdamp * mean_diag;
  std::vector<double> A(size_t(dim * dim));  // (dim, dim) working copy
  for (int attempt = 0; attempt < 9; ++attempt) {
    for (int64_t i = 0; i < dim * dim; ++i) A[i] = p.H[i];
    for (int64_t i = 0; i < dim; ++i) A[i * dim + i] += damp;
    // H = R^T R, H^{-1} from R, then the upper factor of H^{-1}.
    bool ok = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', int(dim), A.data(), int(dim)) == 0 &&
              LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'U', int(dim), A.data(), int(dim)) == 0 &&
              LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', int(dim), A.data(), int(dim)) == 0;
    if (ok) {
      for (int64_t i = 0; i < dim * dim; ++i) ok = ok && std::isfinite(A[i]);
    }
    if (ok) {
      p.U.assign(size_t(dim * dim), 0.0f);
      for (int64_t i = 0; i < dim; ++i)
        for (int64_t j = i; j < dim; ++j) p.U[i * dim + j] = float(A[i * dim + j]);
      for (int64_t i = 0; i < dim; ++i) p.H[i * dim + i] += float(damp);
      p.damp = damp;
      p.log = log.str();
      return p;
    }
    double next = damp > 0 ? damp * 10 : 1e-6 * mean_diag;
    log << "Cholesky of the Hessian failed with damping " << damp << " ("
        << (mean_diag > 0 ? damp / mean_diag : 0) << " of mean diag); retrying with " << next
        << ". ";
    damp = next;
  }
  fail("Hessian is not positive definite even with damping ", damp,
       "; the calibration inputs may be degenerate (try more samples)");
}

}  // namespace elutq
