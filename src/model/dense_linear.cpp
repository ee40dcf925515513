// fp32 dense Linear: threaded GEMV for up to 8 tokens, sliced OpenBLAS sgemm for more.
#include "model/dense_linear.h"

#include <cblas.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "format/dequant.h"
#include "kernels/gemv.h"
#include "tensor/model_source.h"
#include "tensor/tensor_info.h"

extern "C" void openblas_set_num_threads(int);

namespace elutq {

namespace {
// Up to this many tokens go row block by row block through the one-token GEMV; more through sgemm.
constexpr int64_t kRowDotTokens = 8;

// ELUTQ_BLAS_THREADS=1 hands the whole sgemm to OpenBLAS's own threads instead of slicing it over
// our pool (kept to compare the two in scripts/bench_fp32.sh). Read once.
bool blas_threads() {
  static const bool on = [] {
    const char* e = std::getenv("ELUTQ_BLAS_THREADS");
    const bool r = e && std::string(e) == "1";
    // Our pool does the threading; OpenBLAS runs single-threaded inside each slice.
    if (!r) openblas_set_num_threads(1);
    return r;
  }();
  return on;
}
}  // namespace

DenseLinear::DenseLinear(std::shared_ptr<const std::vector<float>> weight, int64_t out, int64_t in)
    : w_(std::move(weight)), out_(out), in_(in) {
  require(w_ && int64_t(w_->size()) >= out * in, "DenseLinear: weight buffer holds fewer than ",
          out, "x", in, " floats");
  blas_threads();
}

std::string DenseLinear::describe() const {
  return "f32 dense " + std::to_string(out_) + "x" + std::to_string(in_);
}

void DenseLinear::forward(const float* x, int64_t n, float* y, ThreadPool& pool) const {
  const float* W = w_->data();
  const int64_t in = in_, out = out_;
  if (n == 1) {
    pool.run(out, [&](int, int64_t r0, int64_t r1) { gemv_rows_f32(W, x, in, r0, r1, y); });
    return;
  }
  if (n <= kRowDotTokens) {
    // A few tokens (sequences decoded side by side, short prompts): each token's output is the
    // one-token GEMV's, bit for bit, so a sequence does not depend on what runs beside it; a
    // block of rows stays in L1 while every token passes over it, so the weights are read once.
    const int64_t block = std::max<int64_t>(1, 16384 / (in * 4));  // rows per 16 KiB
    pool.run((out + block - 1) / block, [&](int, int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r0 = b * block, r1 = std::min(out, r0 + block);
        int64_t t = 0;
        for (; t + 2 <= n; t += 2)
          gemv2_rows_f32(W, x + t * in, x + (t + 1) * in, in, r0, r1, y + t * out,
                         y + (t + 1) * out);
        if (t < n) gemv_rows_f32(W, x + t * in, in, r0, r1, y + t * out);
      }
    });
    return;
  }
  if (blas_threads()) {
    openblas_set_num_threads(pool.size());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(out), int(in), 1.0f, x, int(in),
                W, int(in), 0.0f, y, int(out));
    return;
  }
  // y[:, r0:r1] = x (n, in) * W[r0:r1, :]^T (leading dimension out), one sgemm per slice of
  // kSliceRows rows. The slices do not depend on the thread count (threads take whole slices),
  // so neither do the results: OpenBLAS may sum in another order for another slice width (seen on
  // AMD Zen 3, where 64- and 128-row calls of the same rows differed in the last bits).
  constexpr int64_t kSliceRows = 64;
  const int64_t slices = (out + kSliceRows - 1) / kSliceRows;
  pool.run(slices, [&](int, int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t r0 = s * kSliceRows, r1 = std::min(out, r0 + kSliceRows);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(r1 - r0), int(in), 1.0f, x,
                  int(in), W + r0 * in, int(in), 0.0f, y + r0, int(out));
    }
  });
}

void load_tensor_f32(const TensorInfo& t, float* dst) {
  if (t.dtype == DType::F32) {
    require(t.nbytes >= uint64_t(t.numel()) * 4, "tensor '", t.name, "' is truncated");
    std::memcpy(dst, t.data, size_t(t.numel()) * 4);
  } else {
    tensor_to_f32(t, dst);
  }
}

std::unique_ptr<Linear> make_dense_linear(const ModelSource&, const TensorInfo& weight) {
  require(weight.shape.size() == 2, "tensor '", weight.name, "' is not a matrix");
  auto w = std::make_shared<std::vector<float>>(size_t(weight.numel()));
  load_tensor_f32(weight, w->data());
  return std::make_unique<DenseLinear>(std::move(w), weight.shape[0], weight.shape[1]);
}

}  // namespace elutq
