// GGML Q8_0 weights re-laid for integer dot products, and int16 activations to meet them: the
// output head of a server step (a few tokens against one Q8_0 matrix) on VNNI's vpdpwssd or AVX2's
// vpmaddwd (NEON: SMLAL) instead of widening every weight to fp32 and spending one FMA per weight
// per token. At four tokens the fp32 head is bound by arithmetic, not memory (SmolLM2's 49152 x 576
// head: 3.96 ms against 2.39 ms for one token on one core, docs/RESULTS.md "Serving"); this form
// reads the same bytes and does a sixteenth (VNNI) or an eighth (AVX2, 8 rows per vector) of the
// vector multiply-adds per token.
//
// Layout ("rows16"): rows in groups of 16 (the last padded with zero rows); per group, per 32-column
// block b, 544 bytes: the 16 rows' fp16 scales d (32 bytes), then for each column pair p < 16 the
// 16 rows' codes q[r][32b + 2p], q[r][32b + 2p + 1] side by side (32 bytes): widened to int16, a
// 512-bit vector whose 32-bit lane r holds row r's pair, so one vpdpwssd adds row r's two products
// in lane r for all 16 rows. Same size as the Q8_0 tensor.
//
// Arithmetic, identical in every version (the AVX-512 kernel equals the scalar reference bit for
// bit): each token's activations are quantized per 32-column block to int16, dx = max|x| / 32767,
// xq = round(x / dx) (quantize_activations_i16); for each block the integer sum
// s = sum_k q[r][k] xq[k] is exact in int32, and y[r] = fma(float(s), d[r] * dx, y[r]) over the
// blocks in order. The int16 step changes each product by at most |q d| dx / 2, a relative 1.5e-5
// of the block's largest activation: far below the int8 tables the LUT kernels use.
#pragma once

#include <cstdint>

namespace elutq {

constexpr int kRows16 = 16;
constexpr int64_t kRows16BlockBytes = 32 + 16 * 32;

// Bytes of the re-laid form of a (rows, n) Q8_0 matrix (n % 32 == 0).
int64_t q8_rows16_bytes(int64_t rows, int64_t n);
// q8_0: rows x (n / 32) blocks of 34 bytes (fp16 d, 32 int8 q); out: q8_rows16_bytes(rows, n).
void q8_rows16_pack(const uint8_t* q8_0, int64_t rows, int64_t n, uint8_t* out);
// One token's activations x[0..n) (n % 32 == 0) -> xq[0..n) and dx[0..n/32) as described above.
// A block of zeros gets dx = 0, xq = 0; a block holding Inf or NaN gets dx = NaN (its products
// then make the outputs NaN, as the fp32 product would).
void quantize_activations_i16(const float* x, int64_t n, int16_t* xq, float* dx);

namespace kern {
// y[t * y_stride + r] for tokens t < tokens and the rows r < rows of row groups [g0, g1); xq and dx
// hold `tokens` tokens' quantized activations back to back (n and n / 32 apart).
using Rows16Fn = void (*)(const uint8_t* W, int64_t rows, int64_t n, const int16_t* xq,
                          const float* dx, int tokens, int64_t g0, int64_t g1, float* y,
                          int64_t y_stride);
void q8_rows16_i16_scalar(const uint8_t* W, int64_t rows, int64_t n, const int16_t* xq,
                          const float* dx, int tokens, int64_t g0, int64_t g1, float* y,
                          int64_t y_stride);
void q8_rows16_i16_avx2(const uint8_t* W, int64_t rows, int64_t n, const int16_t* xq,
                        const float* dx, int tokens, int64_t g0, int64_t g1, float* y,
                        int64_t y_stride);
void q8_rows16_i16_neon(const uint8_t* W, int64_t rows, int64_t n, const int16_t* xq,
                        const float* dx, int tokens, int64_t g0, int64_t g1, float* y,
                        int64_t y_stride);
void q8_rows16_i16_avx512(const uint8_t* W, int64_t rows, int64_t n, const int16_t* xq,
                          const float* dx, int tokens, int64_t g0, int64_t g1, float* y,
                          int64_t y_stride);
}  // namespace kern

}  // namespace elutq
