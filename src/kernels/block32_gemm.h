// Integer matmuls on GGML's 32-weight block types as a GGUF file stores them (Q4_0, Q4_1, Q5_0,
// Q5_1: one fp16 scale, for _1 an fp16 minimum, and 4- or 5-bit codes per 32 weights; IQ4_NL: one
// fp16 scale and 4-bit indices into 16 fixed non-uniform levels) against
// activations rounded to int16 per 32 columns: the companion of kquant_gemm.h for the older types,
// whose rows need only be a multiple of 32 long (SmolLM2's 576, for one). int16, not llama.cpp's
// int8: SmolLM2's hidden states hold single values hundreds of times their neighbours, and int8
// steps per 32 columns moved its greedy chat answer (docs/notes/2026-12-07-kquant-native.md); an
// int16 product costs the same two multiply instructions per 32 weights here.
//
// Activations: quantize_activations_i16 (q8_rows16.h: per 32 columns dx = max|x| / 32767,
// q = round(x / dx)) and block_sums_i16 (s = the sum of the 32 q's).
//
// Arithmetic, the same in every version (the SIMD kernels equal the scalar reference bit for bit):
// per row and token, y starts at 0 and takes, for each block in order, with S = sum of code x q
// (exact int32, codes unsigned) and the activations' dx and s:
//   Q4_0 (w = d (c - 8)):   y = fma(dx * d, float(S - 8 s), y)
//   Q5_0 (w = d (c - 16)):  y = fma(dx * d, float(S - 16 s), y)
//   Q4_1, Q5_1 (w = d c + m): y = fma(dx * d, float(S), y);  y = fma(dx * m, float(s), y)
//   IQ4_NL (w = d L[c], S over the levels L[c]): y = fma(dx * d, float(S), y)
#pragma once

#include <cstdint>

namespace elutq {

constexpr int64_t kQ4_0BlockBytes = 18;   // fp16 d, 16 bytes of nibbles
constexpr int64_t kQ4_1BlockBytes = 20;   // fp16 d, fp16 m, 16 bytes of nibbles
constexpr int64_t kQ5_0BlockBytes = 22;   // fp16 d, 32 fifth bits, 16 bytes of nibbles
constexpr int64_t kQ5_1BlockBytes = 24;   // fp16 d, fp16 m, 32 fifth bits, 16 bytes of nibbles
constexpr int64_t kIq4nlBlockBytes = 18;  // fp16 d, 16 bytes of nibbles (level indices)

// IQ4_NL's 16 levels (the GGUF specification's; format/gguf_iq_tables.h holds the same for
// dequantization, and the kernel tests hold the two against each other).
inline constexpr int8_t kIq4nlLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

// `tokens` tokens' activations, back to back.
struct BlockActivations16 {
  const int16_t* q = nullptr;  // (tokens, n): quantize_activations_i16
  const float* d = nullptr;    // (tokens, n / 32)
  const int32_t* s = nullptr;  // (tokens, n / 32): block_sums_i16
  int64_t n = 0;               // a multiple of 32
  int tokens = 0;
};

// s[b] = q[32 b] + ... + q[32 b + 31] for b < n / 32.
void block_sums_i16(const int16_t* q, int64_t n, int32_t* s);

namespace kern {

// y[t * y_stride + r] = row r of the (rows, x.n) matrix W times token t, rows [r0, r1).
using Block32GemmFn = void (*)(const uint8_t* W, const BlockActivations16& x, int64_t r0,
                               int64_t r1, float* y, int64_t y_stride);

void gemm_rows_q4_0_scalar(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride);
void gemm_rows_q4_1_scalar(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride);
void gemm_rows_q5_0_scalar(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride);
void gemm_rows_q5_1_scalar(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride);
void gemm_rows_iq4_nl_scalar(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                             float* y, int64_t y_stride);
#if defined(ELUTQ_X86)
// Four rows and up to four tokens at a time, each block decoded once for the tokens.
void gemm_rows_q4_0_avx2(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride);
void gemm_rows_q4_1_avx2(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride);
void gemm_rows_q5_0_avx2(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride);
void gemm_rows_q5_1_avx2(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride);
void gemm_rows_iq4_nl_avx2(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride);
#endif
#if defined(ELUTQ_ARM)
// One row and up to four tokens at a time (SMLAL on int16).
void gemm_rows_q4_0_neon(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride);
void gemm_rows_q4_1_neon(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride);
void gemm_rows_q5_0_neon(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride);
void gemm_rows_q5_1_neon(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                         float* y, int64_t y_stride);
void gemm_rows_iq4_nl_neon(const uint8_t* W, const BlockActivations16& x, int64_t r0, int64_t r1,
                           float* y, int64_t y_stride);
#endif

}  // namespace kern
}  // namespace elutq
