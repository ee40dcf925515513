// Bit-serial lookup-table matrix products on a PackedMatrix, with no dequantization.
//
// Every weight is written in the symmetric form w = z' + sum_b (s_b / 2) * sigma_b, sigma_b = +-1
// (z' = z + sum_b s_b / 2). For each run of 4 activations a table of the 16 signed sums
// +-x0 +-x1 +-x2 +-x3 is built once per call, rounded to int8 with one scale per weight group; each
// bit-plane's 4-bit pattern then looks up its partial dot product. Per group and row:
//   y += (scale_g / 2) * sum_b s_b * isum_b + z' * sum(x over the group)
// where isum_b is the exact int32 sum of the looked-up int8 entries. The only approximation is the
// int8 rounding of the tables (bounded in tests/unit/test_lut_kernels.cpp and docs/RESULTS.md).
#pragma once

#include <cstdint>

#include "core/cpu_features.h"
#include "kernels/packed_matrix.h"

namespace elutq {

class ThreadPool;

// y (rows) = W (rows, cols) x (cols). pool may be null (single-threaded).
void lut_gemv(const PackedMatrix& w, const float* x, float* y, ThreadPool* pool);
// Y (n, rows) = X (n, cols) W^T: every weight tile is loaded once and used for all n tokens.
void lut_gemm(const PackedMatrix& w, const float* X, int64_t n, float* Y, ThreadPool* pool);

// The same with an explicit instruction set (tests and benchmarks); throws Error if this build or
// CPU lacks it. The plain calls use active_isa().
void lut_gemm_isa(Isa isa, const PackedMatrix& w, const float* X, int64_t n, float* Y,
                  ThreadPool* pool);

}  // namespace elutq
