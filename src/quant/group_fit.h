// What every per-group fitter shares: the importance weights of a group's weights (none, a diagonal,
// or a full symmetric block of the layer Hessian), the weighted error, and a driver that runs a
// group fitter over every (row, group) of a matrix on the thread pool.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "tensor/qformat.h"

namespace elutq {

class ThreadPool;

// Importance of the n weights of one group. With neither set, every weight counts 1.
// diag: (n) non-negative; full: (n, n) symmetric positive semi-definite, row-major.
struct GroupWeights {
  const float* diag = nullptr;
  const float* full = nullptr;
};

// err = r^T H r with r = w - q (H = identity, diag(h) or the full block).
double weighted_error(const float* w, const float* q, int n, const GroupWeights& h);

// out (n, m) = H V for a full block H (n, n) of floats and V (n, m) of doubles, both row-major,
// m = 1..6, sums in double on the active ISA's kernel (kernels/gemv.h): H 1 and H w of a group
// (its codes' products follow the codes instead: CodeColumnProducts below). Each column's sums
// do not depend on the other columns, so H 1 and H w made once (FullBlockProducts) equal those of
// a product with more columns bit for bit.
void full_block_product(const float* H, int n, const double* V, int m, double* out);

// With a full block H, H 1 and H w depend only on the group's weights, not on its codes: the fits
// make them once per group and reuse them in every refit. Empty without a full block.
struct FullBlockProducts {
  std::vector<double> H1, Hw;  // (n) each
  FullBlockProducts(const float* w, int n, const GroupWeights& h);
  // With H 1 given (block_times_ones of the same block: every row's group under one block shares
  // it), only H w is made; the constructor above makes H 1 itself.
  FullBlockProducts(const float* w, int n, const GroupWeights& h, std::vector<double> h1);
};

// H 1 of a full block H (n, n), as FullBlockProducts makes it.
std::vector<double> block_times_ones(const float* H, int n);

// H a_k for the columns a_k of a group's codes under a full block H: the bit planes of HLQ codes
// (a_ik = bit k of code i, one column per plane) or the code values themselves (uniform codes, one
// column). A fit's rounds change few codes, so the products follow the codes instead of being
// made anew: H is symmetric, so a change d in a_ik adds d times row i of H to column k, n additions
// per changed entry against n^2 multiply-adds per column for a whole product (kept only for the
// first codes, or when most of them changed).
class CodeColumnProducts {
 public:
  enum class Columns { BitPlanes, CodeValue };
  static constexpr int kMaxPlanes = 4;
  // columns: the planes (1..kMaxPlanes) for BitPlanes, 1 for CodeValue.
  CodeColumnProducts(const float* H, int n, int columns, Columns kind);
  // Makes the products those of `codes` (n).
  void update(const uint8_t* codes);
  int columns() const { return columns_; }
  Columns kind() const { return kind_; }
  double entry(uint8_t code, int k) const {  // a_ik for a weight with this code
    return kind_ == Columns::BitPlanes ? double(code >> k & 1) : double(code);
  }
  const double* column(int k) const { return HA_.data() + size_t(k) * size_t(n_); }  // (n) H a_k

 private:
  const float* H_;
  int n_, columns_;
  Columns kind_;
  bool valid_ = false;
  std::vector<uint8_t> codes_;  // (n) the codes the products are of
  std::vector<double> HA_;      // (columns, n)
};

// r^T H r for r = w - q, q_i = z + sum_k coef_k a_ik (in double), from the group's products H w
// and H 1 and its code columns' products (already updated to `codes`): O(n) per evaluation.
double error_from_products(const float* w, int n, const uint8_t* codes, const FullBlockProducts& fb,
                           const CodeColumnProducts& cp, const double* coef, double z);

// A group fitter: fits params (spec.params_per_group() floats, fp16-representable) and codes (n)
// for the n weights w of group `group` of row `row`.
using GroupFitter = std::function<void(int64_t row, int64_t group, const float* w, int n,
                                       float* params, uint8_t* codes)>;

// Runs fit over every (row, group) of W (rows, cols) row-major and collects a QuantizedMatrix.
// Rows are spread over the pool (nullptr = this thread); fit must be thread-safe.
QuantizedMatrix quantize_groupwise(const float* W, int64_t rows, int64_t cols,
                                   const QuantSpec& spec, const GroupFitter& fit,
                                   ThreadPool* pool);

}  // namespace elutq
