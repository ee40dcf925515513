// StoredLinear: threaded GEMV on the stored rows for one token, converted slabs + sgemm for
// several.
#include "model/stored_linear.h"

#include <cblas.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <vector>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/fp16.h"
#include "format/dequant.h"
#include "kernels/gemv_kernels.h"

namespace elutq {

namespace {
constexpr int64_t kQ8Block = 34;    // fp16 d + 32 int8
constexpr int64_t kSlabRows = 256;  // rows converted per sgemm: 256 x 576 fp32 = 576 KiB
constexpr int64_t kGemvTokens = 64;  // up to this many tokens: a GEMV per token (see forward)

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

using GemvFn = void (*)(const uint8_t*, const float*, int64_t, int64_t, int64_t, float*);
struct StoredKernels {
  GemvFn q8_0 = kern::gemv_rows_q8_0_scalar;
  GemvFn f16 = kern::gemv_rows_f16_scalar;
  GemvFn bf16 = kern::gemv_rows_bf16_scalar;
};
const StoredKernels& stored_kernels() {
  static const StoredKernels k = [] {
    StoredKernels r;
#if defined(ELUTQ_X86)
    // The LUT kernels' ISA choice (ELUTQ_ISA can force one) picks these too.
    if (active_isa() == Isa::Avx512) {
      r.q8_0 = kern::gemv_rows_q8_0_avx512;
      r.f16 = kern::gemv_rows_f16_avx512;
      r.bf16 = kern::gemv_rows_bf16_avx512;
    } else if (active_isa() != Isa::Scalar && isa_available(Isa::Avx2)) {
      r.q8_0 = kern::gemv_rows_q8_0_avx2;
      r.f16 = kern::gemv_rows_f16_avx2;
      r.bf16 = kern::gemv_rows_bf16_avx2;
    }
#endif
    return r;
  }();
  return k;
}
}  // namespace

namespace kern {
void gemv_rows_q8_0_scalar(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                           float* y) {
  const int64_t nb = n / 32;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = W + r * nb * kQ8Block;
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = row + b * kQ8Block;
      const float d = fp16_to_f32(load_u16(blk));
      const int8_t* q = reinterpret_cast<const int8_t*>(blk + 2);
      for (int j = 0; j < 32; ++j) s += (d * float(q[j])) * x[b * 32 + j];
    }
    y[r] = s;
  }
}
void gemv_rows_f16_scalar(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                          float* y) {
  for (int64_t r = r0; r < r1; ++r) y[r] = half_row_dot<false>(W + r * n * 2, x, 0, n, 0.0f);
}
void gemv_rows_bf16_scalar(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                           float* y) {
  for (int64_t r = r0; r < r1; ++r) y[r] = half_row_dot<true>(W + r * n * 2, x, 0, n, 0.0f);
}
}  // namespace kern

void gemv_rows_stored(DType t, const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                      float* y) {
  const StoredKernels& k = stored_kernels();
  switch (t) {
    case DType::Q8_0: return k.q8_0(W, x, n, r0, r1, y);
    case DType::F16: return k.f16(W, x, n, r0, r1, y);
    case DType::BF16: return k.bf16(W, x, n, r0, r1, y);
    default: fail("no stored-type GEMV for ", dtype_name(t));
  }
}

bool StoredLinear::supports(const TensorInfo& w) {
  if (w.shape.size() != 2 || w.shape[0] <= 0 || w.shape[1] <= 0) return false;
  return (w.dtype == DType::Q8_0 && w.shape[1] % 32 == 0) || w.dtype == DType::F16 ||
         w.dtype == DType::BF16;
}

StoredLinear::StoredLinear(const TensorInfo& w)
    : w_(w), out_(w.shape.size() == 2 ? w.shape[0] : 0), in_(w.shape.size() == 2 ? w.shape[1] : 0) {
  require(supports(w), "tensor '", w.name, "' (", dtype_name(w.dtype),
          ") cannot run as a stored-type layer: expected a Q8_0 (rows a multiple of 32), F16 or "
          "BF16 matrix");
  row_bytes_ = dtype_row_bytes(w.dtype, in_);
  require(w.data != nullptr && w.nbytes >= row_bytes_ * uint64_t(out_), "tensor '", w.name,
          "' holds ", w.nbytes, " bytes, less than its ", out_, "x", in_, " ", dtype_name(w.dtype),
          " shape needs (truncated or corrupt file?)");
  stored_kernels();
}

std::string StoredLinear::describe() const {
  std::string t = dtype_name(w_.dtype);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return t + " " + std::to_string(out_) + "x" + std::to_string(in_);
}

void StoredLinear::forward(const float* x, int64_t n, float* y, ThreadPool& pool) const {
  const int64_t in = in_, out = out_;
  // Up to kGemvTokens tokens: one GEMV each. Measured on SmolLM2's 49152x576 Q8_0 head, 2 threads
  // (best of 7): GEMV 1.12-1.15 ms per token at 1-4 tokens; slabs + sgemm 27 ms at 5 tokens (the
  // conversion alone is ~25 ms), 1.33 ms per token at 64, 1.14 at 128, 1.04 at 512.
  if (n <= kGemvTokens) {
    pool.run(out, [&](int, int64_t r0, int64_t r1) {
      for (int64_t t = 0; t < n; ++t) {
        // Rows r0..r1 of token t's output, written at y + t * out.
        gemv_rows_stored(w_.dtype, w_.data, x + t * in, in, r0, r1, y + t * out);
      }
    });
    return;
  }
  // Each thread: y[:, r0:r1] = x (n, in) * W[r0:r1, :]^T, a slab of rows at a time (leading
  // dimension out), like DenseLinear but with the slab converted to fp32 first.
  const int64_t units = (out + 15) / 16;
  pool.run(units, [&](int, int64_t u0, int64_t u1) {
    thread_local std::vector<float> slab;  // grows once per thread, then reused
    slab.resize(size_t(kSlabRows * in));
    for (int64_t r0 = u0 * 16, end = std::min(out, u1 * 16); r0 < end; r0 += kSlabRows) {
      const int64_t r1 = std::min(end, r0 + kSlabRows);
      tensor_rows_to_f32(w_, r0, r1, slab.data());
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(r1 - r0), int(in), 1.0f, x,
                  int(in), slab.data(), int(in), 0.0f, y + r0, int(out));
    }
  });
}

}  // namespace elutq
