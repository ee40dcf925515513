// Test helper: random K-quant rows and int8 activations for the K-quant kernel tests.
#pragma once

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernels/dispatch.h"
#include "kernels/kquant_gemm.h"
#include "tensor/dtype.h"

namespace elutq::test {

inline int64_t block_bytes(DType t) {
  switch (t) {
    case DType::Q4_K: return kQ4KBlockBytes;
    case DType::Q5_K: return kQ5KBlockBytes;
    case DType::IQ4_XS: return kIq4XsBlockBytes;
    default: return kQ6KBlockBytes;
  }
}

// Random super-blocks: every byte random except the fp16 d / dmin, finite and of mixed magnitude.
inline std::vector<uint8_t> random_rows(DType t, int64_t rows, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(1e-5f, 3e-3f);
  const int64_t bb = block_bytes(t);
  std::vector<uint8_t> w(size_t(rows * n / kQK * bb));
  for (auto& v : w) v = uint8_t(byte(rng));
  for (size_t off = 0; off < w.size(); off += size_t(bb)) {
    const uint16_t d = f32_to_fp16(scale(rng)), dmin = f32_to_fp16(scale(rng));
    if (t == DType::Q6_K) {
      std::memcpy(&w[off + 208], &d, 2);
    } else {
      std::memcpy(&w[off], &d, 2);
      std::memcpy(&w[off + 2], &dmin, 2);
    }
  }
  return w;
}

// Activations with 256-blocks of very different magnitude and a zero block.
inline std::vector<float> random_x(int tokens, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(size_t(tokens * n));
  for (size_t i = 0; i < x.size(); ++i) x[i] = nd(rng) * (i % 768 < 256 ? 20.0f : 0.03f);
  if (n >= 512)
    for (int k = 256; k < 512; ++k) x[size_t(k)] = 0.0f;  // token 0, block 1
  return x;
}

struct Acts {
  std::vector<int8_t> q;
  std::vector<float> d;
  std::vector<int16_t> bsum;
  Q8KActivations view(int64_t n, int tokens) const {
    return {q.data(), d.data(), bsum.data(), n, tokens};
  }
};

inline Acts quantize(const std::vector<float>& x, int tokens, int64_t n) {
  Acts a{std::vector<int8_t>(x.size()), std::vector<float>(x.size() / kQK),
         std::vector<int16_t>(x.size() / 16)};
  for (int t = 0; t < tokens; ++t)
    kern::quantize_activations_q8k_scalar(x.data() + t * n, n, a.q.data() + t * n,
                                          a.d.data() + t * n / kQK, a.bsum.data() + t * n / 16);
  return a;
}

inline constexpr DType kTypes[] = {DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_XS};

}  // namespace elutq::test
