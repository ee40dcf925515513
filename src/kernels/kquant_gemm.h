// Integer matmuls on GGML's K-quant rows as a GGUF file stores them (Q4_K, Q5_K, Q6_K: super-blocks
// of 256 weights with 6- or 8-bit sub-block scales; IQ4_XS, the same shape with IQ4_NL's
// non-uniform 4-bit levels), against activations rounded to int8 per 256
// columns: a standard GGUF model then runs at its stored size (4.5-6.6 bits a weight) instead of a
// widened fp32 copy (32 bits a weight, read again for every token).
//
// Activations (quantize_activations_q8k): per 256 columns of a token, d = max|x| / 127 and
// q = round(x / d) in [-127, 127]; bsum holds the sum of each 16 consecutive q's (the types'
// offsets and minimums meet the activations only through those sums).
//
// Arithmetic, the same in every version (each SIMD kernel equals the scalar reference bit for bit):
// per row and token, y starts at 0 and takes, for each super-block in order, with its exact int32
// sums and the activations' d = dx,
//   Q4_K, Q5_K (w = d sc q - dmin m, 8 sub-blocks of 32):
//     S = sum_j sc_j sum_l q x,  M = sum_j m_j sum_l x
//     y = fma(dx * d, float(S), y);  y = fma(-(dx * dmin), float(M), y)
//   Q6_K (w = d sc (q - 32), 16 sub-blocks of 16):
//     S = sum_g sc_g (sum_l q x - 32 sum_l x)
//     y = fma(dx * d, float(S), y)
//   IQ4_XS (w = d (ls - 32) kIq4nlLevels[q], 8 sub-blocks of 32 with 6-bit ls):
//     S = sum_j (ls_j - 32) sum_l level(q) x
//     y = fma(dx * d, float(S), y)
// The only rounding beyond fp32 accumulation is the activations' (at most dx / 2 per column).
#pragma once

#include <cstdint>

namespace elutq {

constexpr int64_t kQK = 256;  // weights per K-quant super-block (and per activation scale)

// Bytes per super-block of each type (GGML's block_q4_K, block_q5_K, block_q6_K).
constexpr int64_t kQ4KBlockBytes = 144;
constexpr int64_t kQ5KBlockBytes = 176;
constexpr int64_t kQ6KBlockBytes = 210;
constexpr int64_t kIq4XsBlockBytes = 136;  // block_iq4_xs: d, scales_h, scales_l[4], qs[128]

// `tokens` tokens' activations quantized by quantize_activations_q8k, back to back.
struct Q8KActivations {
  const int8_t* q = nullptr;      // (tokens, n)
  const float* d = nullptr;       // (tokens, n / 256)
  const int16_t* bsum = nullptr;  // (tokens, n / 16)
  int64_t n = 0;                  // a multiple of 256
  int tokens = 0;
};

// One token's x[0..n) (n % 256 == 0) -> q[0..n), d[0..n/256), bsum[0..n/16) as above. A block of
// zeros gets d = 0, q = 0; a block holding Inf or NaN gets d = NaN (the outputs then turn NaN, as
// the fp32 product would).
// Runs on the active ISA's kernel; every version gives the same bytes.
void quantize_activations_q8k(const float* x, int64_t n, int8_t* q, float* d, int16_t* bsum);

namespace kern {

using QuantizeQ8KFn = void (*)(const float* x, int64_t n, int8_t* q, float* d, int16_t* bsum);
void quantize_activations_q8k_scalar(const float* x, int64_t n, int8_t* q, float* d, int16_t* bsum);
#if defined(ELUTQ_X86)
void quantize_activations_q8k_avx2(const float* x, int64_t n, int8_t* q, float* d, int16_t* bsum);
#endif

// y[t * y_stride + r] = row r of the (rows, x.n) matrix W times token t, for rows [r0, r1) and
// every token of x.
using KQuantGemmFn = void (*)(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                              float* y, int64_t y_stride);

void gemm_rows_q4_k_scalar(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride);
void gemm_rows_q5_k_scalar(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride);
void gemm_rows_q6_k_scalar(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride);
void gemm_rows_iq4_xs_scalar(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                             float* y, int64_t y_stride);
#if defined(ELUTQ_X86)
// Four rows and up to seven tokens, or one row and eight, at a time; super-blocks decoded in
// registers.
void gemm_rows_q4_k_avx2(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride);
void gemm_rows_q5_k_avx2(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride);
void gemm_rows_q6_k_avx2(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride);
void gemm_rows_iq4_xs_avx2(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride);
#endif
#if defined(ELUTQ_ARM)
// One row and up to four tokens at a time on SDOT (CPUs with the dot-product extension).
void gemm_rows_q4_k_neon(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride);
void gemm_rows_q5_k_neon(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride);
void gemm_rows_q6_k_neon(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride);
void gemm_rows_iq4_xs_neon(const uint8_t* W, const Q8KActivations& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride);
#endif

}  // namespace kern
}  // namespace elutq
