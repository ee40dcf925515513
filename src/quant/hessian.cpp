// Hessian accumulation and preparation for GPTQ / GANQ (see hessian.h).
#include "quant/hessian.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/error.h"

extern "C" int openblas_get_num_threads();
extern "C" void openblas_set_num_threads(int);

namespace elutq {

namespace {
constexpr int64_t kTile = 64;
// Hessians at least this wide are factorised in float first (prepare_hessian).
constexpr int64_t kFloatFactorMinDim = 4096;  // square tiles for the strided copies below: both sides stay cached

// OpenBLAS on n threads for one whole-matrix call made while the caller's pool waits (the pipeline
// keeps OpenBLAS single-threaded otherwise, because the pool splits the rest); restored after.
class BlasThreads {
 public:
  explicit BlasThreads(int n) : before_(openblas_get_num_threads()) {
    openblas_set_num_threads(std::max(1, n));
  }
  ~BlasThreads() { openblas_set_num_threads(before_); }
  BlasThreads(const BlasThreads&) = delete;
  BlasThreads& operator=(const BlasThreads&) = delete;

 private:
  int before_;
};
}  // namespace

void mirror_upper(float* M, int64_t dim) {
  for (int64_t i0 = 0; i0 < dim; i0 += kTile)
    for (int64_t j0 = i0; j0 < dim; j0 += kTile)
      for (int64_t i = i0; i < std::min(i0 + kTile, dim); ++i)
        for (int64_t j = std::max(j0, i + 1); j < std::min(j0 + kTile, dim); ++j)
          M[j * dim + i] = M[i * dim + j];
}

HessianAccumulator::HessianAccumulator(int64_t dim, int threads)
    : dim_(dim), threads_(std::max(1, threads)) {
  require(dim > 0, "Hessian: dimension must be positive");
  cap_rows_ = std::clamp<int64_t>((int64_t(64) << 20) / (dim * int64_t(sizeof(float))), 256, 4096);
  sum_.assign(size_t(dim * dim), 0.0);
  tmp_.assign(size_t(dim * dim), 0.0f);
}

void HessianAccumulator::add(const float* X, int64_t n) {
  if (n > 0 && pending_.capacity() == 0) pending_.reserve(size_t(cap_rows_ * dim_));
  while (n > 0) {
    const int64_t have = int64_t(pending_.size()) / dim_;
    const int64_t take = std::min(n, cap_rows_ - have);
    pending_.insert(pending_.end(), X, X + take * dim_);
    X += take * dim_;
    n -= take;
    if (have + take == cap_rows_) flush();
  }
}

void HessianAccumulator::flush() {
  const int64_t n = int64_t(pending_.size()) / dim_;
  if (n == 0) return;
  // tmp = X^T X (upper triangle), X is (n, dim) row-major.
  {
    const BlasThreads blas(threads_);
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, int(dim_), int(n), 1.0f, pending_.data(),
                int(dim_), 0.0f, tmp_.data(), int(dim_));
  }
  for (int64_t i = 0; i < dim_; ++i)
    for (int64_t j = i; j < dim_; ++j) sum_[i * dim_ + j] += tmp_[i * dim_ + j];
  n_ += n;
  pending_.clear();
}

std::vector<float> HessianAccumulator::hessian() {
  flush();
  require(n_ > 0, "Hessian: no calibration inputs were added");
  std::vector<float> H(size_t(dim_ * dim_));
  const double s = 2.0 / double(n_);
  for (int64_t i = 0; i < dim_; ++i)
    for (int64_t j = i; j < dim_; ++j) H[i * dim_ + j] = float(s * sum_[i * dim_ + j]);
  mirror_upper(H.data(), dim_);
  return H;
}

namespace {

// potrf then trtri of the lower triangle of A (n, n, column-major), in A's precision.
bool cholesky_then_inverse(std::vector<double>& A, int n) {
  return LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', n, A.data(), n) == 0 &&
         LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, 'L', 'N', n, A.data(), n) == 0;
}
bool cholesky_then_inverse(std::vector<float>& A, int n) {
  return LAPACKE_spotrf_work(LAPACK_COL_MAJOR, 'L', n, A.data(), n) == 0 &&
         LAPACKE_strtri_work(LAPACK_COL_MAJOR, 'L', 'N', n, A.data(), n) == 0;
}

// The upper factor U of (H + damp I)^{-1} = U^T U by one Cholesky factorisation and one triangular
// inverse, in reversed index order: with J the reversal permutation, J (H + damp I) J = L L^T gives
// H + damp I = (J L J)(J L J)^T with J L J upper, so U = (J L J)^{-1} = J L^{-1} J. Half the work
// of inverting H and factorising the inverse (potrf, potri, potrf), in Real (float or double), on A
// (dim, dim) used column-major. Returns false where the factorisation fails (H not positive
// definite, or a non-finite factor).
template <class Real>
bool upper_factor_of_inverse(const std::vector<float>& H, int64_t dim, double damp, int threads,
                             std::vector<Real>& A, std::vector<float>& U) {
  const int n = int(dim);
  A.resize(size_t(dim * dim));
  // Column c of J H J, lower half (what potrf 'L' reads): (J H J)[r][c] = H[dim-1-r][dim-1-c],
  // read as H[dim-1-c][dim-1-r] (H is symmetric) so that a column is a row of H read backwards.
  // The damping is added in double, then rounded to Real once.
  for (int64_t c = 0; c < dim; ++c) {
    const float* h = H.data() + (dim - 1 - c) * dim + (dim - 1);
    Real* a = A.data() + c * dim;
    for (int64_t r = c; r < dim; ++r) a[r] = Real(*(h - r));
    a[c] = Real(double(*(h - c)) + damp);
  }
  bool ok;
  {
    const BlasThreads blas(threads);
    ok = cholesky_then_inverse(A, n);
  }
  if (!ok) return false;
  U.assign(size_t(dim * dim), 0.0f);
  // U[i][j] = Linv[dim-1-i][dim-1-j] for j >= i; Linv (lower) is column-major in A, so a row of U
  // is a column of A read backwards: copied in tiles, so that neither side strides through memory.
  bool finite = true;
  for (int64_t i0 = 0; i0 < dim; i0 += kTile)
    for (int64_t j0 = i0; j0 < dim; j0 += kTile)
      for (int64_t j = j0; j < std::min(j0 + kTile, dim); ++j) {
        const Real* col = A.data() + (dim - 1 - j) * dim + (dim - 1);  // column dim-1-j of Linv
        for (int64_t i = i0; i < std::min(i0 + kTile, j + 1); ++i) {
          const Real v = *(col - i);
          finite = finite && std::isfinite(v);
          U[size_t(i * dim + j)] = float(v);
        }
      }
  return finite;
}

}  // namespace

PreparedHessian prepare_hessian(const std::vector<float>& Hin, int64_t dim, double percdamp,
                                int threads) {
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
  // Working copies (dim, dim), column-major. Wide Hessians are factorised in single precision, as
  // GPTQ's reference does: at 8960 inputs the double factorisation took 13 % of a quantization and
  // its 640 MB copy was the largest allocation; double is the fallback where float fails.
  std::vector<float> Af;
  std::vector<double> Ad;
  const bool try_float = dim >= kFloatFactorMinDim;
  for (int attempt = 0; attempt < 9; ++attempt) {
    const bool ok = (try_float && upper_factor_of_inverse(p.H, dim, damp, threads, Af, p.U)) ||
                    upper_factor_of_inverse(p.H, dim, damp, threads, Ad, p.U);
    if (ok) {
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
