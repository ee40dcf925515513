// The layer Hessian of GPTQ-style methods, H = 2 X^T X / n over calibration inputs X (n, in),
// accumulated batch by batch, and its preparation: dead inputs, damping (with automatic retry at
// 10x damping when a Cholesky factorisation fails) and the upper Cholesky factor of H^{-1}.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace elutq {

class HessianAccumulator {
 public:
  // threads: OpenBLAS threads for the X^T X products (add() is called while the caller's pool
  // waits, so they may take its cores).
  explicit HessianAccumulator(int64_t dim, int threads = 1);
  // Adds the n rows of X (n, dim), row-major. Rows wait in a buffer (up to about 64 MiB) and go
  // into the sums together: each flush adds a (dim, dim) product to the double sums, so few large
  // flushes cost less than one per forward chunk.
  void add(const float* X, int64_t n);
  int64_t dim() const { return dim_; }
  int64_t samples() const { return n_ + int64_t(pending_.size()) / dim_; }
  // H = 2 X^T X / n, (dim, dim) row-major, symmetric. Throws if nothing was added.
  std::vector<float> hessian();

 private:
  void flush();

  int64_t dim_;
  int threads_;
  int64_t n_ = 0;
  int64_t cap_rows_;           // rows the buffer holds
  std::vector<float> pending_; // (rows waiting, dim)
  std::vector<double> sum_;  // (dim, dim) upper triangle of X^T X, in double to keep small terms
  std::vector<float> tmp_;   // (dim, dim) per-flush ssyrk output
};

// Copies the upper triangle of M (dim, dim), row-major, onto the lower one.
void mirror_upper(float* M, int64_t dim);

struct PreparedHessian {
  std::vector<float> H;      // (dim, dim) damped Hessian (dead diagonals set to 1)
  std::vector<float> U;      // (dim, dim) upper Cholesky factor of H^{-1}: H^{-1} = U^T U
  std::vector<uint8_t> dead; // (dim) 1 where the input was always zero (weights there become 0)
  double damp = 0;           // damping finally added to the diagonal
  std::string log;           // what happened (retries), for the caller to show
};

// Damps H (dim, dim) with percdamp * mean(diag) and factorises; on failure multiplies the damping
// by 10 (up to 8 times, starting from 1e-6 * mean diag if percdamp is 0) and says so in log.
// Throws if H is not finite or never factorises. The factorisations run on `threads` OpenBLAS
// threads (the caller's pool is idle meanwhile).
PreparedHessian prepare_hessian(const std::vector<float>& H, int64_t dim, double percdamp,
                                int threads = 1);

}  // namespace elutq
