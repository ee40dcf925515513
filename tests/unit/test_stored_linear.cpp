// StoredLinear (model/stored_linear.h) on Q8_0, F16 and BF16 weights: the GEMV (every SIMD path
// against the scalar reference) and the slab-sgemm path for several tokens both equal the fp32
// product with the weights the format layer dequantizes (tensor_to_f32), within float
// summation-order error; bad tensors throw.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "format/dequant.h"
#include "kernels/gemv.h"
#include "kernels/gemv_kernels.h"
#include "model/stored_linear.h"
#include "runtime/quantized_linear_factory.h"
#include "tensor/tensor_info.h"
#include "test_forward_model.h"
#include "test_util.h"

namespace elutq {
namespace {

// Random weights of type t, (rows, cols): Q8_0 with fp16 scales of mixed magnitude and codes over
// the whole int8 range; F16 / BF16 from Gaussian values.
std::vector<uint8_t> random_stored(DType t, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> b;
  if (t == DType::Q8_0) {
    std::uniform_real_distribution<float> scale(1e-4f, 0.05f);
    std::uniform_int_distribution<int> code(-128, 127);
    b.resize(size_t(rows * cols / 32 * 34));
    for (size_t off = 0; off < b.size(); off += 34) {
      const uint16_t d = f32_to_fp16(scale(rng));
      std::memcpy(&b[off], &d, 2);
      for (int j = 0; j < 32; ++j) b[off + 2 + size_t(j)] = uint8_t(int8_t(code(rng)));
    }
    return b;
  }
  std::normal_distribution<float> nd(0.0f, 0.05f);
  b.resize(size_t(rows * cols * 2));
  for (size_t off = 0; off < b.size(); off += 2) {
    const float v = nd(rng);
    const uint16_t h = t == DType::F16 ? f32_to_fp16(v) : f32_to_bf16(v);
    std::memcpy(&b[off], &h, 2);
  }
  return b;
}

TensorInfo as_tensor(DType t, const std::vector<uint8_t>& b, int64_t rows, int64_t cols) {
  TensorInfo w;
  w.name = std::string(1, 'w');  // not = "w": GCC 12 warns falsely (-Wrestrict) on that assignment
  w.shape = {rows, cols};
  w.dtype = t;
  w.data = b.data();
  w.nbytes = b.size();
  return w;
}

using GemvFn = void (*)(const uint8_t*, const float*, int64_t, int64_t, int64_t, float*);

GemvFn scalar_gemv(DType t) {
  return t == DType::Q8_0 ? kern::gemv_rows_q8_0_scalar
         : t == DType::F16 ? kern::gemv_rows_f16_scalar
                           : kern::gemv_rows_bf16_scalar;
}

TEST(StoredLinear, GemvAndSlabPathsEqualTheFp32ProductForEveryType) {
  ThreadPool pool(2);
  for (DType t : {DType::Q8_0, DType::F16, DType::BF16}) {
    // 300 rows: more than one 256-row slab per thread for n > 1 and a ragged last 16-row unit;
    // 160 / 75 / 96 columns: odd block counts (Q8_0) and F16/BF16 rows with and without tails.
    for (int64_t in : {int64_t(160), int64_t(75), int64_t(96)}) {
      if (t == DType::Q8_0 && in % 32 != 0) continue;
      const int64_t out = 300;
      const std::vector<uint8_t> b = random_stored(t, out, in, uint32_t(in));
      const TensorInfo info = as_tensor(t, b, out, in);
      std::vector<float> w(size_t(out * in));
      tensor_to_f32(info, w.data());
      std::mt19937 rng(3);
      std::normal_distribution<float> nd;
      std::vector<float> x(size_t(70 * in));
      for (float& v : x) v = nd(rng);
      StoredLinear lin(info);
      EXPECT_EQ(lin.weight_bytes(), b.size());
      // fp32 sums of `in` products: within a few ulp of the sum of the products' magnitudes.
      auto bound = [&](int64_t r, int64_t tok) {
        double mag = 0;
        for (int64_t k = 0; k < in; ++k)
          mag += std::fabs(double(w[size_t(r * in + k)]) * x[size_t(tok * in + k)]);
        return 1e-6 * double(in) * mag + 1e-30;
      };
      // Q8_0 on the int16-activation kernel (AVX-512 VNNI CPUs): plus each product's rounding of
      // x to a 32767th of its 32-column block's largest value.
      const bool int16 = lin.describe().find("int16") != std::string::npos;
      EXPECT_EQ(int16, t == DType::Q8_0 && active_q8_rows16_kernel() != nullptr) << lin.describe();
      auto forward_bound = [&](int64_t r, int64_t tok) {
        double b = bound(r, tok);
        if (!int16) return b;
        for (int64_t k0 = 0; k0 < in; k0 += 32) {
          double amax = 0, wsum = 0;
          for (int64_t k = k0; k < k0 + 32; ++k) {
            amax = std::max(amax, double(std::fabs(x[size_t(tok * in + k)])));
            wsum += std::fabs(double(w[size_t(r * in + k)]));
          }
          b += wsum * 0.5 * amax / 32767.0 * 1.001;
        }
        return b;
      };
      auto exact = [&](int64_t r, int64_t tok) {
        double s = 0;
        for (int64_t k = 0; k < in; ++k) s += double(w[size_t(r * in + k)]) * x[size_t(tok * in + k)];
        return s;
      };
      for (int64_t n : {1, 7, 70}) {  // GEMV, GEMV per token, slabs + sgemm
        std::vector<float> y(size_t(n * out));
        lin.forward(x.data(), n, y.data(), pool);
        for (int64_t tok = 0; tok < n; ++tok)
          for (int64_t r = 0; r < out; ++r)
            ASSERT_NEAR(y[size_t(tok * out + r)], exact(r, tok), forward_bound(r, tok))
                << dtype_name(t) << " in=" << in << " n=" << n << " row " << r;
      }
      // Every SIMD GEMV against the scalar reference.
      std::vector<float> ref(static_cast<size_t>(out)), got(static_cast<size_t>(out));
      scalar_gemv(t)(b.data(), x.data(), in, 0, out, ref.data());
      std::vector<GemvFn> paths;
#if defined(ELUTQ_X86)
      if (isa_available(Isa::Avx2))
        paths.push_back(t == DType::Q8_0 ? kern::gemv_rows_q8_0_avx2
                        : t == DType::F16 ? kern::gemv_rows_f16_avx2
                                          : kern::gemv_rows_bf16_avx2);
      if (isa_available(Isa::Avx512))
        paths.push_back(t == DType::Q8_0 ? kern::gemv_rows_q8_0_avx512
                        : t == DType::F16 ? kern::gemv_rows_f16_avx512
                                          : kern::gemv_rows_bf16_avx512);
#endif
      for (GemvFn f : paths) {
        f(b.data(), x.data(), in, 0, out, got.data());
        for (int64_t r = 0; r < out; ++r)
          ASSERT_NEAR(got[size_t(r)], ref[size_t(r)], 2 * bound(r, 0)) << dtype_name(t) << " " << r;
      }
      gemv_rows_stored(t, b.data(), x.data(), in, 0, out, got.data());
      for (int64_t r = 0; r < out; ++r)
        ASSERT_NEAR(got[size_t(r)], ref[size_t(r)], 2 * bound(r, 0)) << dtype_name(t) << " " << r;
    }
  }
}

// The several-token Q8_0 rows of every ISA give each token exactly the single-token GEMV's result
// (the server's decode step and the chat's output head rely on it for repeatable output).
TEST(StoredLinear, SeveralTokenQ8RowsEqualOneTokenGemvBitForBit) {
  using TokensFn = void (*)(const uint8_t*, const float*, int64_t, int, int64_t, int64_t, float*,
                            int64_t);
  std::vector<std::pair<GemvFn, TokensFn>> paths = {
      {kern::gemv_rows_q8_0_scalar, kern::gemv_rows_q8_0_tokens_scalar}};
#if defined(ELUTQ_X86)
  if (isa_available(Isa::Avx2))
    paths.push_back({kern::gemv_rows_q8_0_avx2, kern::gemv_rows_q8_0_tokens_avx2});
  if (isa_available(Isa::Avx512))
    paths.push_back({kern::gemv_rows_q8_0_avx512, kern::gemv_rows_q8_0_tokens_avx512});
#endif
  const int64_t out = 37;
  for (int64_t in : {int64_t(32), int64_t(96), int64_t(160)}) {  // 1, 3, 5 blocks: odd tails
    const std::vector<uint8_t> b = random_stored(DType::Q8_0, out, in, uint32_t(in + 1));
    std::mt19937 rng(5);
    std::normal_distribution<float> nd;
    std::vector<float> x(size_t(7 * in));
    for (float& v : x) v = nd(rng);
    for (const auto& [one, many] : paths)
      for (int tokens = 1; tokens <= 7; ++tokens) {
        const int64_t stride = out + 3;  // outputs not packed: the stride is honoured
        std::vector<float> got(size_t(tokens * stride), -1.0f), ref(static_cast<size_t>(out));
        many(b.data(), x.data(), in, tokens, 2, out, got.data(), stride);
        for (int t = 0; t < tokens; ++t) {
          one(b.data(), x.data() + t * in, in, 2, out, ref.data());
          for (int64_t r = 0; r < out; ++r) {
            const float g = got[size_t(t * stride + r)];
            if (r < 2) {
              ASSERT_EQ(g, -1.0f) << "row outside [r0, r1) written";
              continue;
            }
            ASSERT_EQ(std::memcmp(&g, &ref[size_t(r)], 4), 0)
                << "in=" << in << " tokens=" << tokens << " token " << t << " row " << r;
          }
        }
      }
  }
}

// What a server step relies on for repeatable output: each token's outputs are the same bits
// whatever other tokens share the forward (up to the GEMV limit on the fp32 form; any count on the
// int16-activation form of Q8_0).
TEST(StoredLinear, EachTokensOutputsDoNotDependOnTheOtherTokensInTheForward) {
  ThreadPool pool(2);
  const int64_t out = 300, in = 160;
  const std::vector<uint8_t> b = random_stored(DType::Q8_0, out, in, 11);
  StoredLinear lin(as_tensor(DType::Q8_0, b, out, in));
  const bool any_count = lin.describe().find("int16") != std::string::npos;
  std::mt19937 rng(12);
  std::normal_distribution<float> nd;
  std::vector<float> x(size_t(70 * in));
  for (float& v : x) v = nd(rng);
  std::vector<float> alone(static_cast<size_t>(out));
  for (int64_t n : {int64_t(4), int64_t(7), int64_t(70)}) {
    if (n > 64 && !any_count) continue;
    std::vector<float> y(size_t(n * out));
    lin.forward(x.data(), n, y.data(), pool);
    for (int64_t tok : {int64_t(0), n / 2, n - 1}) {
      lin.forward(x.data() + tok * in, 1, alone.data(), pool);
      ASSERT_EQ(std::memcmp(alone.data(), y.data() + tok * out, size_t(out) * 4), 0)
          << "n=" << n << " token " << tok;
    }
  }
}

TEST(StoredLinear, TheLutFactoryPicksItForStoredTypesAndTheDequantFactoryDoesNot) {
  const test::MemorySource src(test::tiny("llama"), 5);
  for (DType t : {DType::Q8_0, DType::F16, DType::BF16}) {
    const std::vector<uint8_t> b = random_stored(t, 8, 64, 6);
    const TensorInfo w = as_tensor(t, b, 8, 64);
    const std::string lut = make_linear_factory(KernelChoice::Lut)(src, w)->describe();
    const std::string deq = make_linear_factory(KernelChoice::Dequant)(src, w)->describe();
    EXPECT_EQ(lut.rfind(t == DType::Q8_0 ? "q8_0 " : t == DType::F16 ? "f16 " : "bf16 ", 0), 0u)
        << lut;
    EXPECT_EQ(deq.rfind("f32 dense", 0), 0u) << deq;
  }
}

TEST(StoredLinear, RejectsBadTensors) {
  const std::vector<uint8_t> q = random_stored(DType::Q8_0, 4, 64, 4);
  TensorInfo t = as_tensor(DType::Q8_0, q, 4, 64);
  t.nbytes -= 1;
  EXPECT_THROW(StoredLinear{t}, Error);  // truncated
  t = as_tensor(DType::Q8_0, q, 4, 48);
  EXPECT_FALSE(StoredLinear::supports(t));  // Q8_0 rows must be whole blocks
  EXPECT_THROW(StoredLinear{t}, Error);
  t = as_tensor(DType::F32, q, 4, 16);
  EXPECT_FALSE(StoredLinear::supports(t));  // F32 goes through DenseLinear
  EXPECT_THROW(StoredLinear{t}, Error);
  t = as_tensor(DType::F16, q, 4, 16);
  t.data = nullptr;
  EXPECT_THROW(StoredLinear{t}, Error);
}

}  // namespace
}  // namespace elutq
