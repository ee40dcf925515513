// Q8_0Linear (model/q8_0_linear.h): the GEMV (every SIMD path against the scalar reference) and the
// slab-sgemm path for several tokens both equal the fp32 product with the weights dequantized by
// the format layer (tensor_rows_to_f32), within float summation-order error; bad sizes throw.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "format/tensor_info.h"
#include "model/gemv_kernels.h"
#include "model/q8_0_linear.h"

namespace elutq {
namespace {

// Random Q8_0 blocks: fp16 scales of mixed magnitude, int8 codes over the whole range.
std::vector<uint8_t> random_q8_0(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> scale(1e-4f, 0.05f);
  std::uniform_int_distribution<int> code(-128, 127);
  std::vector<uint8_t> b(size_t(rows * cols / 32 * 34));
  for (size_t off = 0; off < b.size(); off += 34) {
    const uint16_t d = f32_to_fp16(scale(rng));
    std::memcpy(&b[off], &d, 2);
    for (int j = 0; j < 32; ++j) b[off + 2 + size_t(j)] = uint8_t(int8_t(code(rng)));
  }
  return b;
}

TensorInfo as_tensor(const std::vector<uint8_t>& b, int64_t rows, int64_t cols) {
  TensorInfo t;
  t.name = "w";
  t.shape = {rows, cols};
  t.dtype = DType::Q8_0;
  t.data = b.data();
  t.nbytes = b.size();
  return t;
}

TEST(Q8_0Linear, DequantizedRowsEqualTheFormatLayerBitForBit) {
  const int64_t rows = 7, cols = 96;
  const std::vector<uint8_t> b = random_q8_0(rows, cols, 1);
  std::vector<float> want(size_t(rows * cols)), got(size_t(3 * cols));
  tensor_to_f32(as_tensor(b, rows, cols), want.data());
  dequantize_rows_q8_0(b.data(), cols, 2, 5, got.data());
  EXPECT_EQ(0, std::memcmp(got.data(), want.data() + 2 * cols, got.size() * sizeof(float)));
}

TEST(Q8_0Linear, GemvAndSlabPathsEqualTheFp32Product) {
  // 300 rows: more than one 256-row slab per thread for n > 1, and a ragged last 16-row unit.
  const int64_t out = 300, in = 160;
  const std::vector<uint8_t> b = random_q8_0(out, in, 2);
  std::vector<float> w(size_t(out * in));
  tensor_to_f32(as_tensor(b, out, in), w.data());
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<float> x(size_t(7 * in));
  for (float& v : x) v = nd(rng);
  Q8_0Linear lin(b.data(), b.size(), out, in);
  EXPECT_EQ(lin.weight_bytes(), b.size());
  ThreadPool pool(2);
  for (int64_t n : {1, 7}) {
    std::vector<float> y(size_t(n * out));
    lin.forward(x.data(), n, y.data(), pool);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < out; ++r) {
        double s = 0, mag = 0;
        for (int64_t k = 0; k < in; ++k) {
          s += double(w[size_t(r * in + k)]) * x[size_t(t * in + k)];
          mag += std::fabs(double(w[size_t(r * in + k)]) * x[size_t(t * in + k)]);
        }
        // fp32 sums of `in` products: error within a few ulp of the sum of magnitudes.
        EXPECT_NEAR(y[size_t(t * out + r)], s, 1e-6 * in * mag) << "n=" << n << " row " << r;
      }
  }
  // Every SIMD GEMV against the scalar reference.
  std::vector<float> ref(static_cast<size_t>(out)), got(static_cast<size_t>(out));
  kern::gemv_rows_q8_0_scalar(b.data(), x.data(), in, 0, out, ref.data());
  gemv_rows_q8_0(b.data(), x.data(), in, 0, out, got.data());
#if defined(ELUTQ_X86)
  std::vector<float> avx2(static_cast<size_t>(out));
  kern::gemv_rows_q8_0_avx2(b.data(), x.data(), in, 0, out, avx2.data());
#endif
  for (int64_t r = 0; r < out; ++r) {
    double mag = 0;
    for (int64_t k = 0; k < in; ++k) mag += std::fabs(double(w[size_t(r * in + k)]) * x[size_t(k)]);
    EXPECT_NEAR(got[size_t(r)], ref[size_t(r)], 1e-6 * in * mag) << r;
#if defined(ELUTQ_X86)
    EXPECT_NEAR(avx2[size_t(r)], ref[size_t(r)], 1e-6 * in * mag) << r;
#endif
  }
}

TEST(Q8_0Linear, RejectsBadSizes) {
  const std::vector<uint8_t> b = random_q8_0(4, 64, 4);
  EXPECT_THROW(Q8_0Linear(b.data(), b.size() - 1, 4, 64), Error);
  EXPECT_THROW(Q8_0Linear(b.data(), b.size(), 4, 48), Error);
  EXPECT_THROW(Q8_0Linear(nullptr, b.size(), 4, 64), Error);
}

}  // namespace
}  // namespace elutq
