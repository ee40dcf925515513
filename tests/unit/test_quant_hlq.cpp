// HLQ group fitting against uniform RTN and against the exact optimum of tiny groups.
#include <gtest/gtest.h>
#include <lapacke.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "quant/hlq_fit.h"
#include "quant_test_util.h"
#include "quant/rtn.h"

namespace elutq {
namespace {

std::vector<float> hlq_values_of(const float* p, int bits, const uint8_t* codes, int n) {
  std::vector<float> q(n);
  QuantSpec spec{QuantKind::HLQ, bits, 0};
  for (int i = 0; i < n; ++i) q[i] = dequant_code(spec, p, codes[i]);
  return q;
}

double sq_err(const std::vector<float>& w, const std::vector<float>& q) {
  double e = 0;
  for (size_t i = 0; i < w.size(); ++i) e += double(w[i] - q[i]) * (w[i] - q[i]);
  return e;
}

bool is_fp16(float v) { return fp16_to_f32(f32_to_fp16(v)) == v; }

// Our default fit is never worse than RTN (plain or clip-searched) on the same group, B and g,
// measured after fp16 rounding of both; the paper's procedure is checked on average only, since
// fp16 rounding of its last iterate can land above RTN on a group (counted and reported).
TEST(QuantHlq, NeverWorseThanRtnAfterFp16) {
  std::mt19937 rng(1234);
  int paper_worse = 0, total = 0;
  double paper_sum = 0, rtn_sum = 0;
  for (int bits = 1; bits <= 4; ++bits) {
    for (int n : {32, 64, 128}) {
      for (int trial = 0; trial < 25; ++trial) {
        std::vector<float> w = test::random_group(rng, n, trial % 5);
        std::vector<uint8_t> codes(n);
        float up[2], upc[2];
        RtnOptions clip;
        clip.clip_search = true;
        rtn_fit_group(w.data(), n, bits, {}, {}, up, codes.data());
        std::vector<float> q(n);
        for (int i = 0; i < n; ++i) q[i] = up[1] + up[0] * codes[i];
        double e_rtn = sq_err(w, q);
        rtn_fit_group(w.data(), n, bits, {}, clip, upc, codes.data());
        for (int i = 0; i < n; ++i) q[i] = upc[1] + upc[0] * codes[i];
        double e_clip = sq_err(w, q);
        EXPECT_LE(e_clip, e_rtn * (1 + 1e-6) + 1e-18);

        for (HlqFitMethod m : {HlqFitMethod::Alternating, HlqFitMethod::Gradient}) {
          HlqFitOptions opt;
          opt.method = m;
          std::vector<float> p(bits + 1);
          double e = hlq_fit_group(w.data(), n, bits, {}, opt, p.data(), codes.data());
          for (float v : p) EXPECT_TRUE(is_fp16(v)) << v;
          double e_check = sq_err(w, hlq_values_of(p.data(), bits, codes.data(), n));
          EXPECT_NEAR(e, e_check, 1e-6 * e_check + 1e-15);
          EXPECT_LE(e_check, std::min(e_rtn, e_clip) * (1 + 1e-5) + 1e-15)
              << "bits " << bits << " n " << n << " trial " << trial;
        }
        HlqFitOptions paper = HlqFitOptions::paper(HlqFitMethod::Alternating);
        std::vector<float> p(bits + 1);
        double e_paper = hlq_fit_group(w.data(), n, bits, {}, paper, p.data(), codes.data());
        ++total;
        if (e_paper > e_rtn * (1 + 1e-5) + 1e-15) ++paper_worse;
        paper_sum += e_paper;
        rtn_sum += e_rtn;
      }
    }
  }
  EXPECT_LT(paper_sum, rtn_sum);
  std::printf("paper alternating fit (fp16-rounded last iterate) worse than RTN on %d of %d groups\n",
              paper_worse, total);
}

// Exact optimum of a B = 2 group: for optimal parameters every weight takes its nearest value, and
// nearest assignment to 4 values splits the sorted weights into 4 contiguous runs (some empty). So
// enumerating every split of the sorted weights into 4 runs, times the 24 ways to label the runs
// with codes 0..3, and solving each by least squares (LAPACKE dgelsd on the n x 3 design matrix,
// independent of our normal-equation code) finds the global minimum over real (s0, s1, z).
double exhaustive_b2(std::vector<float> w) {
  std::sort(w.begin(), w.end());
  const int n = int(w.size());
  std::array<int, 4> perm = {0, 1, 2, 3};
  double best = 1e300;
  do {
    for (int a = 0; a <= n; ++a)
      for (int b = a; b <= n; ++b)
        for (int c = b; c <= n; ++c) {
          std::vector<double> A(size_t(n) * 3), y(n), s(3);  // (n, 3), (n)
          for (int i = 0; i < n; ++i) {
            int run = i < a ? 0 : i < b ? 1 : i < c ? 2 : 3;
            int code = perm[run];
            A[i * 3 + 0] = code & 1;
            A[i * 3 + 1] = code >> 1 & 1;
            A[i * 3 + 2] = 1;
            y[i] = w[i];
          }
          lapack_int rank;
          std::vector<double> A2 = A;
          EXPECT_EQ(LAPACKE_dgelsd(LAPACK_ROW_MAJOR, n, 3, 1, A2.data(), 3, y.data(), 1, s.data(),
                                   1e-12, &rank),
                    0);
          double e = 0;
          for (int i = 0; i < n; ++i) {
            double r = w[i] - (A[i * 3] * y[0] + A[i * 3 + 1] * y[1] + y[2]);
            e += r * r;
          }
          best = std::min(best, e);
        }
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

// The stated tolerance. Alternating least squares is a local method: measured on these 24 random
// 10-weight groups our default fit (three starts, fp16-rounded) reaches the exact optimum (within
// 0.1%) on 19 of them and stays within 21% on the others. We assert >= 75% of groups within 0.1%
// and every group within 25%.
TEST(QuantHlq, AlternatingB2NearExhaustiveOptimum) {
  std::mt19937 rng(99);
  std::vector<double> ratios;
  for (int trial = 0; trial < 24; ++trial) {
    std::vector<float> w = test::random_group(rng, 10, trial % 4);
    double opt = exhaustive_b2(w);
    std::vector<float> p(3);
    std::vector<uint8_t> codes(10);
    double e = hlq_fit_group(w.data(), 10, 2, {}, HlqFitOptions{}, p.data(), codes.data());
    EXPECT_GE(e, opt * (1 - 1e-4) - 1e-12) << "fit beat the exhaustive optimum: search is wrong";
    ratios.push_back(e / std::max(opt, 1e-30));
  }
  std::sort(ratios.begin(), ratios.end());
  std::printf("fit / optimum: median %.4f, worst %.4f\n", ratios[ratios.size() / 2],
              ratios.back());
  int exact = int(std::count_if(ratios.begin(), ratios.end(), [](double r) { return r <= 1.001; }));
  EXPECT_GE(exact, 18);
  EXPECT_LE(ratios.back(), 1.25);
}

// The least-squares step solves the weighted normal equations: compare with LAPACKE dgelsd on the
// sqrt(h)-scaled design matrix.
TEST(QuantHlq, RefitIsWeightedLeastSquares) {
  std::mt19937 rng(7);
  const int n = 64, bits = 3;
  std::vector<float> w = test::random_group(rng, n, 0), h(n);
  std::vector<uint8_t> codes(n);
  for (int i = 0; i < n; ++i) {
    codes[i] = uint8_t(rng() % 8);
    h[i] = 0.1f + float(rng() % 100) / 50.0f;
  }
  std::vector<float> prev(bits + 1, 0.0f), p(bits + 1);
  GroupWeights gw;
  gw.diag = h.data();
  ASSERT_TRUE(hlq_refit_params(w.data(), n, bits, codes.data(), gw, prev.data(), p.data()));
  std::vector<double> A(size_t(n) * 4), y(n), s(4);
  for (int i = 0; i < n; ++i) {
    double sh = std::sqrt(double(h[i]));
    for (int b = 0; b < bits; ++b) A[i * 4 + b] = sh * (codes[i] >> b & 1);
    A[i * 4 + 3] = sh;
    y[i] = sh * w[i];
  }
  lapack_int rank;
  ASSERT_EQ(LAPACKE_dgelsd(LAPACK_ROW_MAJOR, n, 4, 1, A.data(), 4, y.data(), 1, s.data(), 1e-12,
                           &rank),
            0);
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(p[k], y[k], 1e-5 * (std::fabs(y[k]) + 1e-3)) << k;
}

// A group that uses a single code leaves the scales undetermined: the fallback keeps them finite.
TEST(QuantHlq, DegenerateGroupsStayFinite) {
  std::vector<float> w(32, 0.5f);
  for (HlqFitMethod m : {HlqFitMethod::Alternating, HlqFitMethod::Gradient}) {
    HlqFitOptions opt;
    opt.method = m;
    std::vector<float> p(4);
    std::vector<uint8_t> codes(32);
    double e = hlq_fit_group(w.data(), 32, 3, {}, opt, p.data(), codes.data());
    for (float v : p) EXPECT_TRUE(std::isfinite(v));
    EXPECT_LE(e, 1e-12);
  }
}

// The matrix drivers produce a QuantizedMatrix whose reference dequantization matches the fit.
TEST(QuantHlq, MatrixDriverDequantizes) {
  std::mt19937 rng(5);
  const int rows = 8, cols = 96;
  std::vector<float> W(rows * cols), D(rows * cols), D2(rows * cols);
  for (int r = 0; r < rows; ++r) {
    auto g = test::random_group(rng, cols, r % 4);
    std::copy(g.begin(), g.end(), W.begin() + r * cols);
  }
  QuantSpec hs = parse_quant_spec("hlq-w2g32"), us = parse_quant_spec("uniform-w2g32");
  QuantizedMatrix qh = quantize_hlq(W.data(), rows, cols, hs);
  QuantizedMatrix qu = quantize_rtn(W.data(), rows, cols, us);
  dequantize(qh, D.data());
  dequantize(qu, D2.data());
  double eh = 0, eu = 0;
  for (int i = 0; i < rows * cols; ++i) {
    eh += double(W[i] - D[i]) * (W[i] - D[i]);
    eu += double(W[i] - D2[i]) * (W[i] - D2[i]);
  }
  EXPECT_LE(eh, eu * (1 + 1e-5));
  EXPECT_EQ(qh.params.size(), size_t(rows * 3 * 3));
}

}  // namespace
}  // namespace elutq
