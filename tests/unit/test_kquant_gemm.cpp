// K-quant rows against int8 activations (kernels/kquant_gemm.h): the scalar reference equals the
// product of the dequantized weights (format/dequant, itself checked against the gguf package) and
// the dequantized activations within fp32 rounding, so it reads the blocks as GGML lays them out;
// every SIMD kernel equals the scalar one bit for bit on random blocks, any row range and token
// count; the activations round within half a step; StoredLinear runs these types within the
// activations' rounding of the fp32 layer, each token independent of the others in a forward.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "format/dequant.h"
#include "kernels/dispatch.h"
#include "kernels/kquant_gemm.h"
#include "model/stored_linear.h"
#include "tensor/tensor_info.h"

namespace elutq {
namespace {

int64_t block_bytes(DType t) {
  return t == DType::Q4_K ? kQ4KBlockBytes : t == DType::Q5_K ? kQ5KBlockBytes : kQ6KBlockBytes;
}

// Random super-blocks: every byte random except the fp16 d / dmin, finite and of mixed magnitude.
std::vector<uint8_t> random_rows(DType t, int64_t rows, int64_t n, uint32_t seed) {
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
std::vector<float> random_x(int tokens, int64_t n, uint32_t seed) {
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
  Q8KActivations view(int64_t n, int tokens) const { return {q.data(), d.data(), bsum.data(), n, tokens}; }
};

Acts quantize(const std::vector<float>& x, int tokens, int64_t n) {
  Acts a{std::vector<int8_t>(x.size()), std::vector<float>(x.size() / kQK),
         std::vector<int16_t>(x.size() / 16)};
  for (int t = 0; t < tokens; ++t)
    quantize_activations_q8k(x.data() + t * n, n, a.q.data() + t * n, a.d.data() + t * n / kQK,
                             a.bsum.data() + t * n / 16);
  return a;
}

TensorInfo view_tensor(DType t, const std::vector<uint8_t>& w, int64_t rows, int64_t n) {
  TensorInfo ti;
  ti.name = "blk.0.ffn_up.weight";
  ti.dtype = t;
  ti.shape = {rows, n};
  ti.data = w.data();
  ti.nbytes = w.size();
  return ti;
}

constexpr DType kTypes[] = {DType::Q4_K, DType::Q5_K, DType::Q6_K};

const kern::KQuantGemmFn& kernel_of(const IsaKernels& k, DType t) {
  return t == DType::Q4_K ? k.gemm_rows_q4_k : t == DType::Q5_K ? k.gemm_rows_q5_k : k.gemm_rows_q6_k;
}

TEST(KQuantGemm, ActivationsRoundWithinHalfAStepWithTheirSixteenSums) {
  std::vector<float> x = random_x(1, 768, 1);
  x[600] = -1e3f;  // block 2's extreme, negative: must map to -127
  Acts a = quantize(x, 1, 768);
  EXPECT_EQ(a.d[1], 0.0f);
  for (int k = 256; k < 512; ++k) EXPECT_EQ(a.q[size_t(k)], 0);
  EXPECT_EQ(a.q[600], -127);
  for (int64_t b = 0; b < 3; ++b) {
    float amax = 0.0f;
    for (int k = 0; k < 256; ++k) amax = std::max(amax, std::fabs(x[size_t(b * 256 + k)]));
    EXPECT_EQ(a.d[size_t(b)], amax / 127.0f);
    for (int k = 0; k < 256; ++k) {
      const size_t i = size_t(b * 256 + k);
      EXPECT_LE(std::fabs(double(a.q[i]) * a.d[size_t(b)] - x[i]), 0.5001 * a.d[size_t(b)] + 1e-30);
    }
  }
  for (int g = 0; g < 48; ++g) {
    int s = 0;
    for (int k = 0; k < 16; ++k) s += a.q[size_t(16 * g + k)];
    EXPECT_EQ(a.bsum[size_t(g)], s) << g;
  }
  x[5] = NAN;
  a = quantize(x, 1, 768);
  EXPECT_TRUE(std::isnan(a.d[0]));
  EXPECT_FALSE(std::isnan(a.d[2]));
  // A non-finite activation turns every output it meets NaN, as the fp32 product would.
  for (DType t : kTypes) {
    const std::vector<uint8_t> w = random_rows(t, 2, 768, 3);
    std::vector<float> y(2);
    kernel_of(isa_kernels(Isa::Scalar), t)(w.data(), a.view(768, 1), 0, 2, y.data(), 2);
    for (float v : y) EXPECT_TRUE(std::isnan(v)) << dtype_name(t);
  }
}

TEST(KQuantGemm, ScalarEqualsDequantizedWeightsTimesDequantizedActivations) {
  const int64_t rows = 7, n = 768;
  const int tokens = 3;
  const std::vector<float> x = random_x(tokens, n, 5);
  const Acts a = quantize(x, tokens, n);
  for (DType t : kTypes) {
    const std::vector<uint8_t> w = random_rows(t, rows, n, 11);
    std::vector<float> wf(size_t(rows * n));
    tensor_rows_to_f32(view_tensor(t, w, rows, n), 0, rows, wf.data());
    std::vector<float> y(size_t(tokens * rows));
    kern::KQuantGemmFn k = kernel_of(isa_kernels(Isa::Scalar), t);
    k(w.data(), a.view(n, tokens), 0, rows, y.data(), rows);
    for (int tk = 0; tk < tokens; ++tk)
      for (int64_t r = 0; r < rows; ++r) {
        double exact = 0, mag = 0;
        for (int64_t c = 0; c < n; ++c) {
          const double xd = double(a.q[size_t(tk * n + c)]) * a.d[size_t((tk * n + c) / kQK)];
          exact += double(wf[size_t(r * n + c)]) * xd;
          mag += std::fabs(double(wf[size_t(r * n + c)]) * xd);
        }
        EXPECT_NEAR(y[size_t(tk * rows + r)], exact, 2e-6 * mag + 1e-30)
            << dtype_name(t) << " token " << tk << " row " << r;
      }
  }
}

TEST(KQuantGemm, EverySimdKernelEqualsTheScalarOneBitForBit) {
  const IsaKernels& ref = isa_kernels(Isa::Scalar);
  int compared = 0;
  for (Isa isa : {Isa::Avx2, Isa::Avx512, Isa::Neon}) {
    if (!isa_available(isa)) continue;
    const IsaKernels* k = nullptr;
    try {
      k = &isa_kernels(isa);
    } catch (const std::exception&) {
      continue;  // not compiled into this build
    }
    for (DType t : kTypes) {
      if (kernel_of(*k, t) == kernel_of(ref, t)) continue;  // this ISA runs the scalar one
      for (int64_t rows : {int64_t(1), int64_t(4), int64_t(9)})
        for (int tokens : {1, 2, 5, 11}) {  // 11: past the few-token path
          const int64_t n = 512;
          const std::vector<uint8_t> w = random_rows(t, rows, n, uint32_t(rows * 13 + tokens));
          const std::vector<float> x = random_x(tokens, n, uint32_t(tokens));
          const Acts a = quantize(x, tokens, n);
          const int64_t stride = rows + 3;
          for (int64_t r0 : {int64_t(0), rows / 2}) {
            std::vector<float> want(size_t(tokens * stride), -7.0f), got = want;
            kernel_of(ref, t)(w.data(), a.view(n, tokens), r0, rows, want.data(), stride);
            kernel_of(*k, t)(w.data(), a.view(n, tokens), r0, rows, got.data(), stride);
            ASSERT_EQ(std::memcmp(want.data(), got.data(), got.size() * 4), 0)
                << isa_name(isa) << " " << dtype_name(t) << " rows " << rows << " tokens "
                << tokens << " from row " << r0;
          }
          ++compared;
        }
    }
  }
  if (compared == 0) GTEST_SKIP() << "no SIMD K-quant kernel on this CPU";
}

TEST(KQuantGemm, StoredLinearRunsKQuantsNearTheFp32LayerEachTokenAlone) {
  const int64_t rows = 37, n = 1024;
  const int tokens = 6;
  const std::vector<float> x = random_x(tokens, n, 8);
  ThreadPool pool(2);
  for (DType t : kTypes) {
    const std::vector<uint8_t> w = random_rows(t, rows, n, 21);
    const TensorInfo ti = view_tensor(t, w, rows, n);
    ASSERT_TRUE(StoredLinear::supports(ti));
    StoredLinear lin(ti);
    EXPECT_NE(lin.describe().find("int8 activations"), std::string::npos) << lin.describe();
    EXPECT_EQ(lin.weight_bytes(), w.size());
    std::vector<float> y(size_t(tokens * rows));
    lin.forward(x.data(), tokens, y.data(), pool);
    std::vector<float> wf(size_t(rows * n));
    tensor_rows_to_f32(ti, 0, rows, wf.data());
    for (int tk = 0; tk < tokens; ++tk) {
      std::vector<float> alone(static_cast<size_t>(rows));
      lin.forward(x.data() + tk * n, 1, alone.data(), pool);
      ASSERT_EQ(std::memcmp(alone.data(), y.data() + tk * rows, size_t(rows) * 4), 0) << tk;
      for (int64_t r = 0; r < rows; ++r) {
        // Each activation moves by at most half its block's step, d / 2 = max|x| / 254.
        double exact = 0, bound = 0;
        for (int64_t c = 0; c < n; ++c) {
          const int64_t b0 = tk * n + c / kQK * kQK;
          float amax = 0.0f;
          for (int k = 0; k < kQK; ++k) amax = std::max(amax, std::fabs(x[size_t(b0 + k)]));
          exact += double(wf[size_t(r * n + c)]) * x[size_t(tk * n + c)];
          bound += std::fabs(double(wf[size_t(r * n + c)])) * (amax / 254.0 + 1e-6 * std::fabs(x[size_t(tk * n + c)]));
        }
        EXPECT_NEAR(y[size_t(tk * rows + r)], exact, bound) << dtype_name(t) << " " << tk << " " << r;
      }
    }
  }
  // Rows that are not a multiple of 256 long stay off these kernels.
  const std::vector<uint8_t> w = random_rows(DType::Q4_K, 2, 256, 1);
  TensorInfo odd = view_tensor(DType::Q4_K, w, 2, 256);
  odd.shape = {4, 128};
  EXPECT_FALSE(StoredLinear::supports(odd));
}

}  // namespace
}  // namespace elutq
