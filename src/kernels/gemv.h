// fp32 and stored-type dot products and GEMV rows on the active ISA's kernels (dispatch.h); the
// kern::*_scalar functions in gemv_kernels.h are the reference every ISA is tested against.
#pragma once

#include <cstdint>

#include "tensor/dtype.h"

namespace elutq {

// y[r] = dot(W[r, :], x) for rows [r0, r1) of a (rows, n) fp32 matrix.
void gemv_rows_f32(const float* W, const float* x, int64_t n, int64_t r0, int64_t r1, float* y);
// Two tokens over the same rows, each bit-identical to gemv_rows_f32 of that token alone.
void gemv2_rows_f32(const float* W, const float* x0, const float* x1, int64_t n, int64_t r0,
                    int64_t r1, float* y0, float* y1);
// Dot product of two length-n vectors.
float dot_f32(const float* a, const float* b, int64_t n);
// y[r] = sum_k w[r, k] * x[k] for rows [r0, r1) of a stored (rows, n) matrix of type t (Q8_0
// with n % 32 == 0, F16 or BF16); throws Error for other types.
void gemv_rows_stored(DType t, const uint8_t* W, const float* x, int64_t n, int64_t r0, int64_t r1,
                      float* y);

}  // namespace elutq
