// GGML's 32-weight block types against int16 activations (kernels/block32_gemm.h) beside the rest
// of the library (the kernels alone: test_kernel_block32.cpp): the scalar reference equals the
// dequantized weights (format/dequant, checked against the gguf package) times the dequantized
// activations within fp32 rounding; StoredLinear runs these types within the activations'
// rounding of the fp32 product, layers on one input together as each alone.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "block32_test_util.h"
#include "core/thread_pool.h"
#include "format/dequant.h"
#include "isa_test_util.h"
#include "model/stored_linear.h"
#include "tensor/tensor_info.h"

namespace elutq {
namespace {

using test::B32Acts;
using test::kBlock32Types;
using test::quantize32;
using test::random_block32_rows;
using test::random_x32;

using test::view_tensor;

TEST(Block32Gemm, ScalarEqualsDequantizedWeightsTimesDequantizedActivations) {
  const int64_t rows = 5, n = 576;
  const int tokens = 3;
  const std::vector<float> x = random_x32(tokens, n, 5);
  const B32Acts a = quantize32(x, tokens, n);
  for (DType t : kBlock32Types) {
    const std::vector<uint8_t> w = random_block32_rows(t, rows, n, 11);
    std::vector<float> wf(size_t(rows * n));
    tensor_rows_to_f32(view_tensor(t, w, rows, n), 0, rows, wf.data());
    std::vector<float> y(size_t(tokens * rows));
    block32_kernel(isa_kernels(Isa::Scalar), t)(w.data(), a.view(n, tokens), 0, rows, y.data(),
                                                rows);
    for (int tk = 0; tk < tokens; ++tk)
      for (int64_t r = 0; r < rows; ++r) {
        double exact = 0, mag = 0;
        for (int64_t c = 0; c < n; ++c) {
          const double xd = double(a.q[size_t(tk * n + c)]) * a.d[size_t((tk * n + c) / 32)];
          exact += double(wf[size_t(r * n + c)]) * xd;
          mag += std::fabs(double(wf[size_t(r * n + c)]) * xd);
        }
        EXPECT_NEAR(y[size_t(tk * rows + r)], exact, 2e-6 * mag + 1e-30)
            << dtype_name(t) << " token " << tk << " row " << r;
      }
  }
}

TEST(Block32Gemm, StoredLinearRunsThemNearTheFp32LayerTogetherAsAlone) {
  const int64_t n = 576;
  const int tokens = 6;
  const std::vector<float> x = random_x32(tokens, n, 8);
  ThreadPool pool(2);
  std::vector<std::vector<uint8_t>> ws;
  std::vector<StoredLinear> ls;
  const int64_t rows[] = {37, 8, 5, 12};
  for (int i = 0; i < 4; ++i)
    ws.push_back(random_block32_rows(kBlock32Types[i], rows[i], n, 30 + i));
  for (int i = 0; i < 4; ++i)
    ls.emplace_back(view_tensor(kBlock32Types[i], ws[size_t(i)], rows[i], n));
  std::vector<std::vector<float>> ys(4);
  for (int i = 0; i < 4; ++i) {
    const StoredLinear& lin = ls[size_t(i)];
    const DType t = kBlock32Types[i];
    EXPECT_NE(lin.describe().find("int16 activations"), std::string::npos) << lin.describe();
    std::vector<float>& y = ys[size_t(i)];
    y.resize(size_t(tokens * rows[i]));
    lin.forward(x.data(), tokens, y.data(), pool);
    std::vector<float> wf(size_t(rows[i] * n));
    tensor_rows_to_f32(view_tensor(t, ws[size_t(i)], rows[i], n), 0, rows[i], wf.data());
    for (int tk = 0; tk < tokens; ++tk)
      for (int64_t r = 0; r < rows[i]; ++r) {
        double exact = 0, bound = 0;
        for (int64_t c = 0; c < n; ++c) {
          float amax = 0.0f;
          for (int k = 0; k < 32; ++k)
            amax = std::max(amax, std::fabs(x[size_t(tk * n + c / 32 * 32 + k)]));
          exact += double(wf[size_t(r * n + c)]) * x[size_t(tk * n + c)];
          bound += std::fabs(double(wf[size_t(r * n + c)])) *
                   (amax / 65534.0 + 1e-6 * std::fabs(x[size_t(tk * n + c)]));
        }
        EXPECT_NEAR(y[size_t(tk * rows[i] + r)], exact, bound)
            << dtype_name(t) << " " << tk << " " << r;
      }
  }
  const Linear* layers[] = {&ls[0], &ls[1], &ls[2], &ls[3]};
  std::vector<std::vector<float>> together(4);
  float* outs[4];
  for (int i = 0; i < 4; ++i) {
    together[size_t(i)].resize(ys[size_t(i)].size());
    outs[i] = together[size_t(i)].data();
  }
  ASSERT_TRUE(ls[0].forward_together(layers, x.data(), tokens, outs, pool));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(together[size_t(i)], ys[size_t(i)]) << i;
}

}  // namespace
}  // namespace elutq
