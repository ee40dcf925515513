// GPTQ and HLQ-GPTQ on a random layer with correlated inputs: output error against RTN / the plain
// HLQ fit, the OBS identity for the reported loss, Hessian accumulation and damping retries.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "quant/gptq.h"
#include "quant/hessian.h"
#include "quant/hlq_fit.h"
#include "quant/rtn.h"

namespace elutq {
namespace {

struct Layer {
  int rows = 48, cols = 128, n = 512;
  std::vector<float> W;  // (rows, cols)
  std::vector<float> X;  // (n, cols) calibration inputs
  std::vector<float> H;  // (cols, cols) 2 X^T X / n
};

// Inputs X = Z M with a random mixing M (correlated channels) and a few loud channels, as
// activations of LLMs have; weights ~ N(0, 0.02).
Layer make_layer(unsigned seed) {
  Layer L;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  L.W.resize(size_t(L.rows) * L.cols);
  for (float& w : L.W) w = 0.02f * nd(rng);
  std::vector<float> M(size_t(L.cols) * L.cols), Z(size_t(L.n) * L.cols);
  for (int i = 0; i < L.cols; ++i)
    for (int j = 0; j < L.cols; ++j) M[i * L.cols + j] = (i == j ? 1.0f : 0.0f) + 0.3f * nd(rng) / 4;
  for (float& z : Z) z = nd(rng);
  L.X.assign(size_t(L.n) * L.cols, 0.0f);
  for (int s = 0; s < L.n; ++s)
    for (int k = 0; k < L.cols; ++k) {
      float zk = Z[s * L.cols + k];
      for (int j = 0; j < L.cols; ++j) L.X[s * L.cols + j] += zk * M[k * L.cols + j];
    }
  for (int s = 0; s < L.n; ++s)
    for (int j = 0; j < L.cols; j += 17) L.X[s * L.cols + j] *= 6.0f;
  HessianAccumulator acc(L.cols);
  acc.add(L.X.data(), L.n);
  L.H = acc.hessian();
  return L;
}

// ||(W - Q) X^T||^2, computed directly.
double output_error(const Layer& L, const QuantizedMatrix& q) {
  std::vector<float> D(size_t(L.rows) * L.cols);
  dequantize(q, D.data());
  double e = 0;
  for (int s = 0; s < L.n; ++s)
    for (int r = 0; r < L.rows; ++r) {
      double acc = 0;
      for (int c = 0; c < L.cols; ++c)
        acc += double(L.W[r * L.cols + c] - D[r * L.cols + c]) * L.X[s * L.cols + c];
      e += acc * acc;
    }
  return e;
}

TEST(Gptq, HessianAccumulatesBatchByBatch) {
  Layer L = make_layer(1);
  HessianAccumulator acc(L.cols);
  acc.add(L.X.data(), 100);
  acc.add(L.X.data() + 100 * L.cols, L.n - 100);
  std::vector<float> H = acc.hessian();
  for (int i = 0; i < L.cols; i += 7)
    for (int j = 0; j < L.cols; j += 5) {
      double ref = 0;
      for (int s = 0; s < L.n; ++s) ref += double(L.X[s * L.cols + i]) * L.X[s * L.cols + j];
      ref *= 2.0 / L.n;
      EXPECT_NEAR(H[i * L.cols + j], ref, 1e-4 * (std::fabs(ref) + 1));
    }
}

TEST(Gptq, UniformBeatsRtnOnCorrelatedInputs) {
  Layer L = make_layer(2);
  for (const char* name : {"uniform-w2g32", "uniform-w3g64", "uniform-w4grow"}) {
    QuantSpec spec = parse_quant_spec(name);
    double e_rtn = output_error(L, quantize_rtn(L.W.data(), L.rows, L.cols, spec));
    for (bool act : {false, true}) {
      GptqOptions opt;
      opt.act_order = act;
      GptqResult g = gptq_quantize(L.W.data(), L.rows, L.cols, L.H, spec, opt);
      double e = output_error(L, g.q);
      EXPECT_LT(e, 0.9 * e_rtn) << name << " act_order " << act;
      std::printf("%s act_order=%d: RTN %.4g GPTQ %.4g\n", name, act, e_rtn, e);
    }
  }
}

// The sum of squared column errors GPTQ reports equals trace((W-Q) H_damped (W-Q)^T).
TEST(Gptq, ProxyLossIsTheHessianQuadraticForm) {
  Layer L = make_layer(3);
  QuantSpec spec = parse_quant_spec("hlq-w2g32");
  GptqOptions opt;
  opt.variant = HlqGptqVariant::Ours;
  GptqResult g = gptq_quantize(L.W.data(), L.rows, L.cols, L.H, spec, opt);
  PreparedHessian ph = prepare_hessian(L.H, L.cols, opt.percdamp);
  std::vector<float> D(size_t(L.rows) * L.cols);
  dequantize(g.q, D.data());
  double tr = 0;
  for (int r = 0; r < L.rows; ++r)
    for (int i = 0; i < L.cols; ++i)
      for (int j = 0; j < L.cols; ++j)
        tr += double(L.W[r * L.cols + i] - D[r * L.cols + i]) * ph.H[i * L.cols + j] *
              (L.W[r * L.cols + j] - D[r * L.cols + j]);
  EXPECT_NEAR(g.proxy_loss, tr, 2e-3 * tr);
}

// HLQ-GPTQ (both variants, both fits) lowers the output error against the HLQ fit alone.
TEST(Gptq, HlqGptqBeatsHlqFitAlone) {
  Layer L = make_layer(4);
  for (const char* name : {"hlq-w2g32", "hlq-w3g64"}) {
    QuantSpec spec = parse_quant_spec(name);
    double e_fit = output_error(L, quantize_hlq(L.W.data(), L.rows, L.cols, spec));
    for (HlqFitMethod m : {HlqFitMethod::Alternating, HlqFitMethod::Gradient}) {
      GptqOptions paper;
      paper.fit = HlqFitOptions::paper(m);
      double e_paper = output_error(L, gptq_quantize(L.W.data(), L.rows, L.cols, L.H, spec, paper).q);
      GptqOptions ours;
      ours.variant = HlqGptqVariant::Ours;
      ours.fit.method = m;
      double e_ours = output_error(L, gptq_quantize(L.W.data(), L.rows, L.cols, L.H, spec, ours).q);
      EXPECT_LT(e_paper, 0.8 * e_fit) << name;
      EXPECT_LT(e_ours, 0.8 * e_fit) << name;
      // Measured here: ours is 2-2.3x lower than the paper variant (refit under the group's
      // effective Hessian); assert only that it is lower.
      EXPECT_LT(e_ours, e_paper) << name;
      std::printf("%s fit=%d: HLQ fit %.4g, HLQ-GPTQ paper %.4g, ours %.4g\n", name, int(m), e_fit,
                  e_paper, e_ours);
    }
  }
}

// HLQC-GPTQ (compact plane ratios) against uniform GPTQ and full HLQ-GPTQ at the same B and g: its
// parameters are valid HLQC (check_hlqc), it beats uniform GPTQ, and it stays near full HLQ-GPTQ.
TEST(Gptq, HlqcGptqBetweenUniformAndFullHlq) {
  Layer L = make_layer(6);
  for (int bits : {2, 3, 4}) {
    // Appended, not "w" + std::to_string(bits) + ...: GCC 12 warns falsely (-Wrestrict) there.
    std::string g(1, 'w');
    g.append(std::to_string(bits)).append("g32");
    GptqOptions opt;
    opt.variant = HlqGptqVariant::Ours;
    const double e_uni = output_error(
        L, gptq_quantize(L.W.data(), L.rows, L.cols, L.H, parse_quant_spec("uniform-" + g), opt).q);
    const double e_hlq = output_error(
        L, gptq_quantize(L.W.data(), L.rows, L.cols, L.H, parse_quant_spec("hlq-" + g), opt).q);
    GptqResult c = gptq_quantize(L.W.data(), L.rows, L.cols, L.H, parse_quant_spec("hlqc-" + g), opt);
    EXPECT_NO_THROW(check_hlqc(c.q)) << g;
    const double e_c = output_error(L, c.q);
    std::printf("%s output error: uniform GPTQ %.4g, HLQ-GPTQ %.4g, HLQC-GPTQ %.4g\n", g.c_str(),
                e_uni, e_hlq, e_c);
    EXPECT_LT(e_c, e_uni) << g;
    EXPECT_LT(e_c, 1.15 * e_hlq) << g;
  }
}

// A singular Hessian with no damping fails Cholesky; the retry adds damping and says so.
TEST(Gptq, DampingRetryOnSingularHessian) {
  const int n = 16;
  std::vector<float> H(n * n, 1.0f);  // rank one: all ones
  PreparedHessian ph = prepare_hessian(H, n, 0.0);
  EXPECT_NE(ph.log.find("retrying"), std::string::npos) << ph.log;
  EXPECT_GT(ph.damp, 0.0);
  for (float u : ph.U) EXPECT_TRUE(std::isfinite(u));
  // Indefinite: 1% damping is not enough, 10x more is.
  std::vector<float> Hi(n * n, 0.0f);
  for (int i = 0; i < n; ++i) Hi[i * n + i] = i == 0 ? -0.05f : 1.0f;
  PreparedHessian p2 = prepare_hessian(Hi, n, 0.01);
  EXPECT_NE(p2.log.find("retrying"), std::string::npos);
  std::vector<float> W(4 * n, 0.01f);
  GptqOptions no_damp;
  no_damp.percdamp = 0.0;
  GptqResult g = gptq_quantize(W.data(), 4, n, H, parse_quant_spec("uniform-w4g16"), no_damp);
  EXPECT_FALSE(g.log.empty());
  std::vector<float> bad(n * n, 0.0f);
  bad[0] = NAN;
  EXPECT_THROW(prepare_hessian(bad, n, 0.01), Error);
}

// Hessians 4096 wide and more are factorised in single precision (double is the fallback): the
// factor must still be that of the damped inverse, (H + damp I) U^T U v = v, to float accuracy.
TEST(Gptq, WideHessianFactorIsTheFactorOfTheInverse) {
  const int n = 4096, k = 96;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> X(size_t(k) * n);  // k samples of n correlated inputs, unequal scales
  for (int s = 0; s < k; ++s)
    for (int i = 0; i < n; ++i)
      X[size_t(s) * n + i] = nd(rng) * (1.0f + float(i % 7)) + (i > 0 ? 0.5f * X[size_t(s) * n + i - 1] : 0.0f);
  HessianAccumulator acc(n, 2);
  acc.add(X.data(), k);
  const std::vector<float> H = acc.hessian();  // rank k < n: only the damping makes it definite
  const PreparedHessian ph = prepare_hessian(H, n, 0.01, 2);
  ASSERT_EQ(ph.U.size(), size_t(n) * n);
  for (int trial = 0; trial < 3; ++trial) {
    std::vector<double> v(n), w(n, 0.0), u(n, 0.0), r(n, 0.0);
    for (double& e : v) e = nd(rng);
    for (int i = 0; i < n; ++i)  // w = U v (U upper)
      for (int j = i; j < n; ++j) w[i] += double(ph.U[size_t(i) * n + j]) * v[j];
    for (int i = 0; i < n; ++i)  // u = U^T w
      for (int j = i; j < n; ++j) u[j] += double(ph.U[size_t(i) * n + j]) * w[i];
    double err = 0, norm = 0;
    for (int i = 0; i < n; ++i) {  // r = (H + damp I) u, H as prepared (damping on its diagonal)
      for (int j = 0; j < n; ++j) r[i] += double(ph.H[size_t(i) * n + j]) * u[j];
      err += (r[i] - v[i]) * (r[i] - v[i]);
      norm += v[i] * v[i];
    }
    EXPECT_LT(std::sqrt(err / norm), 2e-3) << "trial " << trial;
  }
}

// A wide singular Hessian with no damping: float and double Cholesky both fail, the retry adds
// damping, and whichever precision then succeeds gives a finite factor.
TEST(Gptq, WideSingularHessianRetriesWithDamping) {
  const int n = 4096;
  std::vector<float> H(size_t(n) * n, 1.0f);  // rank one: all ones
  const PreparedHessian ph = prepare_hessian(H, n, 0.0, 2);
  EXPECT_NE(ph.log.find("retrying"), std::string::npos) << ph.log;
  EXPECT_GT(ph.damp, 0.0);
  for (size_t i = 0; i < ph.U.size(); i += 4097) EXPECT_TRUE(std::isfinite(ph.U[i])) << i;
}

// An input that is always zero leaves a zero Hessian row; its weights quantize to about zero.
TEST(Gptq, DeadInputs) {
  Layer L = make_layer(5);
  for (int s = 0; s < L.n; ++s) L.X[s * L.cols + 3] = 0;
  HessianAccumulator acc(L.cols);
  acc.add(L.X.data(), L.n);
  GptqResult g = gptq_quantize(L.W.data(), L.rows, L.cols, acc.hessian(),
                               parse_quant_spec("uniform-w4g32"));
  std::vector<float> D(size_t(L.rows) * L.cols);
  dequantize(g.q, D.data());
  for (int r = 0; r < L.rows; ++r) EXPECT_LT(std::fabs(D[r * L.cols + 3]), 0.02f);
}

}  // namespace
}  // namespace elutq
