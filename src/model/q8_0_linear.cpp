// Q8_0 Linear: threaded GEMV on the blocks for one token, dequantized slabs + sgemm for several.
#include "model/q8_0_linear.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/fp16.h"
#include "model/gemv_kernels.h"

namespace elutq {

namespace {
constexpr int64_t kBlockBytes = 34;  // fp16 d + 32 int8
constexpr int64_t kSlabRows = 256;   // rows dequantized per sgemm: 256 x 576 fp32 = 576 KiB

float block_scale(const uint8_t* blk) {
  uint16_t d;
  std::memcpy(&d, blk, 2);
  return fp16_to_f32(d);
}
}  // namespace

namespace kern {
void gemv_rows_q8_0_scalar(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                           float* y) {
  const int64_t nb = n / 32;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = W + r * nb * kBlockBytes;
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = row + b * kBlockBytes;
      const float d = block_scale(blk);
      const int8_t* q = reinterpret_cast<const int8_t*>(blk + 2);
      for (int j = 0; j < 32; ++j) s += (d * float(q[j])) * x[b * 32 + j];
    }
    y[r] = s;
  }
}
}  // namespace kern

void gemv_rows_q8_0(const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1, float* y) {
#if defined(ELUTQ_X86)
  static const bool avx2 = active_isa() != Isa::Scalar && isa_available(Isa::Avx2);
  if (avx2) return kern::gemv_rows_q8_0_avx2(W, x, n, r0, r1, y);
#endif
  kern::gemv_rows_q8_0_scalar(W, x, n, r0, r1, y);
}

void dequantize_rows_q8_0(const uint8_t* W, int64_t n, int64_t r0, int64_t r1, float* dst) {
  const int64_t nb = n / 32;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = W + r * nb * kBlockBytes;
    float* out = dst + (r - r0) * n;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = row + b * kBlockBytes;
      const float d = block_scale(blk);
      const int8_t* q = reinterpret_cast<const int8_t*>(blk + 2);
      for (int j = 0; j < 32; ++j) out[b * 32 + j] = d * float(q[j]);
    }
  }
}

Q8_0Linear::Q8_0Linear(const uint8_t* blocks, uint64_t nbytes, int64_t out, int64_t in)
    : blocks_(blocks), out_(out), in_(in) {
  require(out > 0 && in > 0 && in % 32 == 0, "Q8_0 matrix ", out, "x", in,
          ": the row length must be a positive multiple of 32");
  require(blocks != nullptr && nbytes == uint64_t(out) * uint64_t(in / 32) * kBlockBytes,
          "Q8_0 matrix ", out, "x", in, " has ", nbytes, " bytes, expected ",
          uint64_t(out) * uint64_t(in / 32) * kBlockBytes, " (truncated or corrupt file?)");
}

std::string Q8_0Linear::describe() const {
  return "q8_0 " + std::to_string(out_) + "x" + std::to_string(in_);
}

void Q8_0Linear::forward(const float* x, int64_t n, float* y, ThreadPool& pool) const {
  const int64_t in = in_, out = out_;
  if (n == 1) {
    pool.run(out, [&](int, int64_t r0, int64_t r1) { gemv_rows_q8_0(blocks_, x, in, r0, r1, y); });
    return;
  }
  // Each thread: y[:, r0:r1] = x (n, in) * W[r0:r1, :]^T, a slab of rows at a time (leading
  // dimension out), like DenseLinear but with the slab dequantized first.
  const int64_t units = (out + 15) / 16;
  pool.run(units, [&](int, int64_t u0, int64_t u1) {
    thread_local std::vector<float> slab;  // grows once per thread, then reused
    slab.resize(size_t(kSlabRows * in));
    for (int64_t r0 = u0 * 16, end = std::min(out, u1 * 16); r0 < end; r0 += kSlabRows) {
      const int64_t r1 = std::min(end, r0 + kSlabRows);
      dequantize_rows_q8_0(blocks_, in, r0, r1, slab.data());
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(r1 - r0), int(in), 1.0f, x,
                  int(in), slab.data(), int(in), 0.0f, y + r0, int(out));
    }
  });
}

}  // namespace elutq
