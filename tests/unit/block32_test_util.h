// Test helper: random rows of GGML's 32-weight block types and int16 activations per 32 columns.
#pragma once

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernels/block32_gemm.h"
#include "kernels/dispatch.h"
#include "kernels/q8_rows16.h"
#include "tensor/dtype.h"

namespace elutq::test {

inline constexpr DType kBlock32Types[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                                          DType::IQ4_NL};

inline int64_t block32_bytes(DType t) {
  return t == DType::Q4_0   ? kQ4_0BlockBytes
         : t == DType::Q4_1 ? kQ4_1BlockBytes
         : t == DType::Q5_0 ? kQ5_0BlockBytes
         : t == DType::Q5_1 ? kQ5_1BlockBytes
                            : kIq4nlBlockBytes;
}

// Every byte random except the fp16 d (and m for the _1 types): finite, mixed magnitude and sign.
inline std::vector<uint8_t> random_block32_rows(DType t, int64_t rows, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(1e-4f, 2e-2f), sign(-1.0f, 1.0f);
  const int64_t bb = block32_bytes(t);
  std::vector<uint8_t> w(size_t(rows * n / 32 * bb));
  for (auto& v : w) v = uint8_t(byte(rng));
  const bool has_min = t == DType::Q4_1 || t == DType::Q5_1;
  for (size_t off = 0; off < w.size(); off += size_t(bb)) {
    const uint16_t d = f32_to_fp16(scale(rng)), m = f32_to_fp16(sign(rng) * scale(rng) * 8);
    std::memcpy(&w[off], &d, 2);
    if (has_min) std::memcpy(&w[off + 2], &m, 2);
  }
  return w;
}

// Activations with 32-blocks of very different magnitude and one zero block.
inline std::vector<float> random_x32(int tokens, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(size_t(tokens * n));
  for (size_t i = 0; i < x.size(); ++i) x[i] = nd(rng) * (i % 96 < 32 ? 20.0f : 0.03f);
  if (n >= 64)
    for (int k = 32; k < 64; ++k) x[size_t(k)] = 0.0f;  // token 0, block 1
  return x;
}

struct B32Acts {
  std::vector<int16_t> q;
  std::vector<float> d;
  std::vector<int32_t> s;
  BlockActivations16 view(int64_t n, int tokens) const {
    return {q.data(), d.data(), s.data(), n, tokens};
  }
};

inline B32Acts quantize32(const std::vector<float>& x, int tokens, int64_t n) {
  B32Acts a{std::vector<int16_t>(x.size()), std::vector<float>(x.size() / 32),
            std::vector<int32_t>(x.size() / 32)};
  for (int t = 0; t < tokens; ++t) {
    quantize_activations_i16(x.data() + t * n, n, a.q.data() + t * n, a.d.data() + t * n / 32);
    block_sums_i16(a.q.data() + t * n, n, a.s.data() + t * n / 32);
  }
  return a;
}

}  // namespace elutq::test
