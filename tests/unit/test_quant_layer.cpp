// The per-layer dispatcher: method names, calibration requirements, and the report's output error
// against a direct computation from the calibration inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <initializer_list>
#include <map>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/hessian.h"
#include "quant/quantize_layer.h"
#include "quant_test_util.h"

namespace elutq {
namespace {

TEST(QuantLayer, MethodNames) {
  for (const char* m : {"rtn", "hlq", "gptq", "hlq-gptq", "ganq", "awq"})
    EXPECT_EQ(quant_method_name(parse_quant_method(m)), m);
  EXPECT_THROW(parse_quant_method("gptq2"), Error);
  LayerQuantOptions o;
  o.method = QuantMethod::HlqGptq;
  o.bits = 3;
  o.group = 64;
  EXPECT_EQ(method_spec(o).name(), "hlq-w3g64");
  o.method = QuantMethod::Ganq;
  EXPECT_EQ(method_spec(o).name(), "codebook-w3");
  o.method = QuantMethod::Hlq;
  o.bits = 5;
  EXPECT_THROW(method_spec(o), Error);  // HLQ is 1..4 bits
}

TEST(QuantLayer, EveryMethodOnACorrelatedLayer) {
  std::mt19937 rng(31);
  const int rows = 24, cols = 64, n = 256;
  std::vector<float> X = test::correlated_inputs(rng, n, cols), W(rows * cols);
  for (int r = 0; r < rows; ++r) {
    auto g = test::random_group(rng, cols, r % 4);
    std::copy(g.begin(), g.end(), W.begin() + r * cols);
  }
  HessianAccumulator acc(cols);
  acc.add(X.data(), n);
  std::vector<float> H = acc.hessian(), mean_abs(cols, 0.0f);
  for (int s = 0; s < n; ++s)
    for (int j = 0; j < cols; ++j) mean_abs[j] += std::fabs(X[s * cols + j]) / n;
  std::vector<float> zeros(rows * cols, 0.0f);
  const double ref = test::output_error(W, zeros, X, rows, cols);  // ||W X^T||^2

  std::map<std::string, double> out;
  for (const char* m : {"rtn", "hlq", "gptq", "hlq-gptq", "ganq", "awq"}) {
    LayerQuantOptions o;
    o.method = parse_quant_method(m);
    o.bits = 2;
    o.group = 32;
    if (method_needs_calibration(o.method)) {
      EXPECT_THROW(quantize_layer(W.data(), rows, cols, o, nullptr), Error) << m;
    }
    LayerQuantResult r = quantize_layer(W.data(), rows, cols, o, &H, &mean_abs);
    std::vector<float> D(rows * cols);
    dequantize(r.q, D.data());
    if (!r.input_scales.empty()) {
      for (int i = 0; i < rows; ++i)
        for (int j = 0; j < cols; ++j) D[i * cols + j] /= r.input_scales[j];
    }
    double direct = test::output_error(W, D, X, rows, cols) / ref;
    EXPECT_NEAR(r.rel_output_error, direct, 1e-3 * direct + 1e-9) << m;
    EXPECT_GT(r.rel_weight_error, 0.0);
    EXPECT_LT(r.rel_weight_error, 1.0);
    out[m] = r.rel_output_error;
    std::printf("%-9s bpw %.3f  rel weight err %.4f  rel output err %.4f  %s\n", m,
                r.bits_per_weight, r.rel_weight_error, r.rel_output_error, r.log.c_str());
  }
  EXPECT_LT(out["gptq"], out["rtn"]);
  EXPECT_LT(out["hlq-gptq"], out["hlq"]);
  EXPECT_LE(out["hlq"], out["rtn"] * 1.05);  // per-group guarantee is on weight error, not output
  EXPECT_LE(out["awq"], out["rtn"] * (1 + 1e-6));  // alpha = 0 is RTN itself
}

// A random layer W (rows, cols) with n correlated calibration inputs X (the inputs `dead` always
// zero), their Hessian H and ||W X^T||^2, the report's denominator.
struct CalibratedLayer {
  std::vector<float> X, W, H;
  double ref = 0;
};

CalibratedLayer calibrated_layer(std::mt19937& rng, int rows, int cols, int n,
                                 std::initializer_list<int> dead = {}) {
  CalibratedLayer l;
  l.X = test::correlated_inputs(rng, n, cols);
  for (int s = 0; s < n; ++s)
    for (int j : dead) l.X[size_t(s) * cols + j] = 0.0f;
  l.W.resize(size_t(rows) * cols);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  for (float& v : l.W) v = nd(rng);
  HessianAccumulator acc(cols);
  acc.add(l.X.data(), n);
  l.H = acc.hessian();
  const std::vector<float> zeros(size_t(rows) * cols, 0.0f);
  l.ref = test::output_error(l.W, zeros, l.X, rows, cols);
  return l;
}

// The report's traces are made a block of 256 columns at a time on the pool's threads: a layer of
// 600 inputs (two whole blocks and a part) gives the direct output error, with and without a pool.
TEST(QuantLayer, OutputErrorOfAWideLayerOnThePool) {
  std::mt19937 rng(5);
  const int rows = 40, cols = 600, n = 700;
  const CalibratedLayer l = calibrated_layer(rng, rows, cols, n);
  const std::vector<float>& X = l.X;  // (n, cols)
  const std::vector<float>& W = l.W;  // (rows, cols)
  const std::vector<float>& H = l.H;  // (cols, cols)
  const double ref = l.ref;
  LayerQuantOptions o;
  o.method = QuantMethod::Rtn;
  o.bits = 2;
  o.group = 40;
  ThreadPool pool(2);
  const LayerQuantResult alone = quantize_layer(W.data(), rows, cols, o, &H);
  const LayerQuantResult pooled = quantize_layer(W.data(), rows, cols, o, &H, nullptr, &pool);
  std::vector<float> D(rows * cols);
  dequantize(alone.q, D.data());
  const double direct = test::output_error(W, D, X, rows, cols) / ref;
  EXPECT_GT(direct, 0.01);
  EXPECT_NEAR(alone.rel_output_error, direct, 1e-3 * direct);
  EXPECT_NEAR(pooled.rel_output_error, direct, 1e-3 * direct);
}

// The GPTQ methods' output error comes from their own summed column errors with the damping taken
// off (no second trace): equal to the direct error on the calibration inputs, also with dead
// inputs (always zero: their H row and column vanish, and GPTQ quantizes their weights to zero),
// act-order, HLQC, and at 4 bits where the damping is a large part of the loss.
TEST(QuantLayer, GptqOutputErrorFromItsLossEqualsTheDirectError) {
  std::mt19937 rng(8);
  const int rows = 32, cols = 256, n = 400;
  const CalibratedLayer l = calibrated_layer(rng, rows, cols, n, {3, 100, 255});
  const std::vector<float>& X = l.X;  // (n, cols)
  const std::vector<float>& W = l.W;  // (rows, cols)
  const std::vector<float>& H = l.H;  // (cols, cols)
  const double ref = l.ref;
  ThreadPool pool(2);
  for (const char* m : {"gptq", "hlq-gptq"})
    for (int bits : {2, 4})
      for (int variant = 0; variant < 3; ++variant) {  // plain, act-order, compact parameters
        LayerQuantOptions o;
        o.method = parse_quant_method(m);
        o.bits = bits;
        o.group = 64;
        o.act_order = variant == 1;
        o.hlq_compact = variant == 2 && o.method == QuantMethod::HlqGptq;
        const LayerQuantResult r = quantize_layer(W.data(), rows, cols, o, &H, nullptr, &pool);
        std::vector<float> D(rows * cols);
        dequantize(r.q, D.data());
        const double direct = test::output_error(W, D, X, rows, cols) / ref;
        EXPECT_GT(direct, 1e-5);
        EXPECT_NEAR(r.rel_output_error, direct, 1e-3 * direct)
            << m << " bits " << bits << " variant " << variant;
      }
}

}  // namespace
}  // namespace elutq
