// The fits' inner loops were reordered for speed (several rows' sums at once, sums held in
// registers, weights compared in blocks); each is checked here against the plain loop it replaced:
// bit for bit where the order of the sums is kept, within double rounding for the Hessian-block
// products, which now add in vector lanes (kernels/gemv.h, block_product_f32_f64).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/cpu_features.h"
#include "kernels/gemv_kernels.h"
#include "quant/group_fit.h"
#include "quant/hlq_fit.h"
#include "quant/rtn.h"
#include "quant/small_lstsq.h"

namespace elutq {
namespace {

std::vector<float> random_floats(std::mt19937& rng, size_t count, float scale) {
  std::normal_distribution<float> d;
  std::vector<float> v(count);
  for (auto& x : v) x = scale * d(rng);
  return v;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }
bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// |a - b| within double rounding of a sum of n terms whose magnitudes add to mag.
bool close_sum(double a, double b, double mag, int n) {
  return std::fabs(a - b) <= 4.0 * n * 1.2e-16 * mag + 1e-300;
}

// Any H, symmetric or not, every column count the fits use, and lengths around the vector widths:
// each ISA's sums equal the plain loop's within rounding, and column c's sums are the same bits
// whatever the other columns (the fits reuse H 1 and H w made in a two-column product).
TEST(GroupFitExact, FullBlockProductEqualsThePlainLoop) {
  using Fn = void (*)(const float*, int64_t, const double*, int, double*);
  std::vector<Fn> paths = {kern::block_product_f32_f64_scalar};
#if defined(ELUTQ_X86)
  if (isa_available(Isa::Avx2)) paths.push_back(kern::block_product_f32_f64_avx2);
  if (isa_available(Isa::Avx512)) paths.push_back(kern::block_product_f32_f64_avx512);
#endif
  std::mt19937 rng(11);
  for (int n : {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 24, 64, 129}) {
    const std::vector<float> H = random_floats(rng, size_t(n) * n, 1.0f);
    for (int m = 1; m <= 6; ++m) {
      std::vector<double> V(size_t(n) * m);
      for (auto& v : V) v = std::normal_distribution<double>()(rng);
      std::vector<double> out(V.size()), col(static_cast<size_t>(n)), one(static_cast<size_t>(n));
      for (Fn f : paths) {
        f(H.data(), n, V.data(), m, out.data());
        for (int c = 0; c < m; ++c) {
          for (int j = 0; j < n; ++j) col[size_t(j)] = V[size_t(j) * m + c];
          f(H.data(), n, col.data(), 1, one.data());
          for (int i = 0; i < n; ++i) {
            double acc = 0, mag = 0;
            for (int j = 0; j < n; ++j) {
              acc += double(H[size_t(i) * n + j]) * V[size_t(j) * m + c];
              mag += std::fabs(double(H[size_t(i) * n + j]) * V[size_t(j) * m + c]);
            }
            ASSERT_TRUE(close_sum(out[size_t(i) * m + c], acc, mag, n))
                << "n " << n << " m " << m << " i " << i;
            ASSERT_TRUE(same_bits(out[size_t(i) * m + c], one[size_t(i)]))
                << "column " << c << " depends on the other columns: n " << n << " m " << m;
          }
        }
      }
      full_block_product(H.data(), n, V.data(), m, out.data());  // the active ISA's
      std::vector<double> ref(V.size());
      kern::block_product_f32_f64_scalar(H.data(), n, V.data(), m, ref.data());
      for (size_t k = 0; k < out.size(); ++k)
        ASSERT_NEAR(out[k], ref[k], 1e-12 * (1 + std::fabs(ref[k])));
    }
  }
  std::vector<double> out(4);
  EXPECT_THROW(full_block_product(nullptr, 2, out.data(), 7, out.data()), std::exception);
}

TEST(GroupFitExact, WeightedErrorEqualsThePlainLoop) {
  std::mt19937 rng(12);
  for (int n : {1, 7, 128}) {
    const std::vector<float> H = random_floats(rng, size_t(n) * n, 1.0f);
    const std::vector<float> w = random_floats(rng, n, 0.02f), q = random_floats(rng, n, 0.02f);
    double e = 0;
    for (int i = 0; i < n; ++i) {
      double acc = 0;
      for (int j = 0; j < n; ++j) acc += double(H[size_t(i) * n + j]) * (double(w[j]) - q[j]);
      e += (double(w[i]) - q[i]) * acc;
    }
    GroupWeights gw;
    gw.full = H.data();
    EXPECT_NEAR(weighted_error(w.data(), q.data(), n, gw), e, 1e-12 * (1 + std::fabs(e))) << n;
  }
}

// H 1 made once for a group's block and shared by its rows, and H w made per row, equal bit for
// bit the two-column product H [1 w] the fits made before (so their files are unchanged), with H 1
// shared or made by the products themselves.
TEST(GroupFitExact, SharedOnesProductEqualsTheTwoColumnProduct) {
  std::mt19937 rng(17);
  for (int n : {1, 7, 64, 128}) {
    const std::vector<float> H = random_floats(rng, size_t(n) * n, 1.0f);
    GroupWeights gw;
    gw.full = H.data();
    const std::vector<double> h1 = block_times_ones(H.data(), n);
    for (int row = 0; row < 3; ++row) {
      const std::vector<float> w = random_floats(rng, n, 0.02f);
      std::vector<double> V(size_t(n) * 2), both(V.size());  // columns 1 and w
      for (int j = 0; j < n; ++j) {
        V[size_t(j) * 2] = 1.0;
        V[size_t(j) * 2 + 1] = w[j];
      }
      full_block_product(H.data(), n, V.data(), 2, both.data());
      const FullBlockProducts own(w.data(), n, gw), shared(w.data(), n, gw, h1);
      for (const FullBlockProducts* fb : {&own, &shared})
        for (int i = 0; i < n; ++i) {
          EXPECT_TRUE(same_bits(both[size_t(i) * 2], fb->H1[size_t(i)])) << n << " " << i;
          EXPECT_TRUE(same_bits(both[size_t(i) * 2 + 1], fb->Hw[size_t(i)])) << n << " " << i;
        }
    }
  }
}

// The least-squares step as it was written before: normal equations by plain loops (terms with
// a zero bit skipped in the diagonal case), then the same solver.
std::vector<float> refit_reference(const float* w, int n, int bits, const uint8_t* codes,
                                   const GroupWeights& h, const float* p_prev) {
  const int np = bits + 1;
  std::vector<double> M(size_t(np) * np, 0.0), rhs(np, 0.0);
  auto a = [&](int i, int k) { return k == bits ? 1.0 : double(codes[i] >> k & 1); };
  if (h.full) {
    std::vector<double> HA(size_t(n) * np, 0.0), Hw(n, 0.0);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        const double hij = h.full[size_t(i) * n + j];
        Hw[i] += hij * w[j];
        for (int k = 0; k < np; ++k) HA[size_t(i) * np + k] += hij * a(j, k);
      }
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < np; ++k) {
        rhs[k] += a(i, k) * Hw[i];
        for (int l = 0; l < np; ++l) M[size_t(k) * np + l] += a(i, k) * HA[size_t(i) * np + l];
      }
  } else {
    for (int i = 0; i < n; ++i) {
      const double hi = h.diag ? double(h.diag[i]) : 1.0;
      for (int k = 0; k < np; ++k) {
        const double ak = a(i, k);
        if (ak == 0) continue;
        rhs[k] += hi * ak * w[i];
        for (int l = 0; l < np; ++l) M[size_t(k) * np + l] += hi * ak * a(i, l);
      }
    }
  }
  std::vector<double> prev(p_prev, p_prev + np), x(np);
  solve_proximal_spd(M.data(), rhs.data(), prev.data(), np, 1e-9, x.data());
  return std::vector<float>(x.begin(), x.end());
}

TEST(GroupFitExact, RefitEqualsThePlainNormalEquations) {
  std::mt19937 rng(13);
  const int n = 96;
  std::vector<float> diag(n);
  for (auto& d : diag) d = 0.05f + float(rng() % 1000) / 250.0f;
  std::vector<float> X = random_floats(rng, size_t(2 * n) * n, 1.0f), H(size_t(n) * n);
  for (int i = 0; i < n; ++i)  // X^T X / rows + damping: a Hessian-like block
    for (int j = 0; j < n; ++j) {
      double acc = 0;
      for (int t = 0; t < 2 * n; ++t) acc += double(X[size_t(t) * n + i]) * X[size_t(t) * n + j];
      H[size_t(i) * n + j] = float(acc / (2 * n)) + (i == j ? 0.01f : 0.0f);
    }
  for (int bits = 1; bits <= 4; ++bits)
    for (int kind = 0; kind < 3; ++kind) {
      GroupWeights gw;
      if (kind == 1) gw.diag = diag.data();
      if (kind == 2) gw.full = H.data();
      const std::vector<float> w = random_floats(rng, n, 0.02f);
      std::vector<uint8_t> codes(n);
      for (auto& c : codes) c = uint8_t(rng() % (1u << bits));
      std::vector<float> prev(bits + 1, 0.001f), p(bits + 1);
      hlq_refit_params(w.data(), n, bits, codes.data(), gw, prev.data(), p.data());
      const std::vector<float> ref = refit_reference(w.data(), n, bits, codes.data(), gw, prev.data());
      for (int k = 0; k <= bits; ++k) {
        if (kind == 2)  // the block products add in another order: equal within rounding
          EXPECT_NEAR(p[k], ref[k], 1e-5 * (std::fabs(ref[k]) + 1e-3)) << "bits " << bits << " k " << k;
        else
          EXPECT_TRUE(same_bits(p[k], ref[k])) << "bits " << bits << " kind " << kind << " k " << k;
      }
    }
}

// Uniform codes round by the float adder instead of nearbyint: the same codes for every float
// input (random bit patterns: NaN, infinities, denormals, huge values), halfway points and scales.
TEST(GroupFitExact, UniformAssignEqualsNearbyint) {
  std::mt19937 rng(15);
  for (int t = 0; t < 200000; ++t) {
    float w[4];
    const uint32_t u = rng();
    std::memcpy(&w[0], &u, 4);
    w[1] = float(int(rng() % 2000) - 500) * 0.5f;  // halfway points under scale 1, zero 0
    w[2] = std::ldexp(float(rng() % 1000), int(rng() % 60) - 30);
    w[3] = -w[2];
    float p[2] = {std::ldexp(1.0f + float(rng() % 100) / 100, int(rng() % 40) - 20),
                  float(int(rng() % 200) - 100) * 0.01f};
    if (t % 4 == 1) p[0] = 1.0f, p[1] = 0.0f;
    if (t % 1000 == 0) p[0] = -1.0f;  // no valid scale: all codes 0
    for (int bits = 1; bits <= 8; ++bits) {
      uint8_t codes[4];
      uniform_assign(w, 4, bits, p, codes);
      for (int i = 0; i < 4; ++i) {
        const int levels = (1 << bits) - 1;
        float c = p[0] > 0 ? std::nearbyint((w[i] - p[1]) / p[0]) : 0.0f;
        if (!(c >= 0)) c = 0;
        if (c > levels) c = float(levels);
        ASSERT_EQ(int(codes[i]), int(c)) << "w " << w[i] << " scale " << p[0] << " zero " << p[1]
                                         << " bits " << bits;
      }
    }
  }
}

// Nearest codes, ties included (the first nearest value wins), on ragged lengths.
TEST(GroupFitExact, AssignEqualsThePlainLoop) {
  std::mt19937 rng(14);
  for (int bits = 1; bits <= 4; ++bits)
    for (int n : {1, 15, 16, 17, 130}) {
      const float params[5] = {0.25f, 0.5f, 1.0f, 2.0f, -1.0f};
      std::vector<float> p(params, params + bits);
      p.push_back(params[4]);
      std::vector<float> vals(1u << bits);
      for (int c = 0; c < int(vals.size()); ++c) {
        float v = p[bits];
        for (int b = 0; b < bits; ++b)
          if (c >> b & 1) v += p[b];
        vals[c] = v;
      }
      std::vector<float> w(n);
      for (auto& x : w) {
        const int pick = int(rng() % 3);  // on a value, halfway between two, or anywhere
        const float a = vals[rng() % vals.size()], b = vals[rng() % vals.size()];
        x = pick == 0 ? a : pick == 1 ? 0.5f * (a + b) : -1.5f + float(rng() % 1000) / 200.0f;
      }
      std::vector<uint8_t> codes(n);
      hlq_assign(w.data(), n, bits, p.data(), codes.data());
      for (int i = 0; i < n; ++i) {
        int best = 0;
        float bd = std::fabs(w[i] - vals[0]);
        for (int c = 1; c < int(vals.size()); ++c) {
          const float d = std::fabs(w[i] - vals[c]);
          if (d < bd) {
            bd = d;
            best = c;
          }
        }
        ASSERT_EQ(int(codes[i]), best) << "bits " << bits << " n " << n << " i " << i;
      }
    }
}

// A Hessian-like symmetric block: X^T X / rows plus damping.
std::vector<float> hessian_block(std::mt19937& rng, int n) {
  std::vector<float> X = random_floats(rng, size_t(2 * n) * n, 1.0f), H(size_t(n) * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double acc = 0;
      for (int t = 0; t < 2 * n; ++t) acc += double(X[size_t(t) * n + i]) * X[size_t(t) * n + j];
      H[size_t(i) * n + j] = float(acc / (2 * n)) + (i == j ? 0.01f : 0.0f);
    }
  return H;
}

// The code columns' products follow the codes through long runs of small and large changes and
// stay equal to a whole product of the current codes (within double rounding of its sums); the
// error made from them equals the weighted error of the dequantized values.
TEST(GroupFitExact, CodeColumnProductsFollowTheCodes) {
  std::mt19937 rng(16);
  for (int n : {1, 5, 128}) {
    const std::vector<float> H = hessian_block(rng, n);
    const std::vector<float> w = random_floats(rng, n, 0.02f);
    GroupWeights gw;
    gw.full = H.data();
    const FullBlockProducts fb(w.data(), n, gw);
    for (int kind = 0; kind < 2; ++kind)
      for (int bits = 1; bits <= 4; ++bits) {
        const bool planes = kind == 0;
        const int m = planes ? bits : 1;
        CodeColumnProducts cp(H.data(), n, m,
                              planes ? CodeColumnProducts::Columns::BitPlanes
                                     : CodeColumnProducts::Columns::CodeValue);
        std::vector<uint8_t> codes(n);
        for (auto& c : codes) c = uint8_t(rng() % (1u << bits));
        for (int step = 0; step < 60; ++step) {
          // Mostly a few codes move (the incremental path), sometimes most of them (afresh).
          const int moves = step % 10 == 9 ? n : 1 + int(rng() % 4);
          for (int t = 0; t < moves; ++t) codes[rng() % n] = uint8_t(rng() % (1u << bits));
          cp.update(codes.data());
          std::vector<double> A(size_t(n) * m), HA(A.size());
          for (int j = 0; j < n; ++j)
            for (int k = 0; k < m; ++k)
              A[size_t(j) * m + k] = planes ? double(codes[j] >> k & 1) : double(codes[j]);
          kern::block_product_f32_f64_scalar(H.data(), n, A.data(), m, HA.data());
          for (int k = 0; k < m; ++k)
            for (int i = 0; i < n; ++i) {
              double mag = 0;
              for (int j = 0; j < n; ++j) mag += std::fabs(double(H[size_t(i) * n + j])) * 15.0;
              ASSERT_NEAR(cp.column(k)[i], HA[size_t(i) * m + k], 64 * 1.2e-16 * mag * 60)
                  << "n " << n << " kind " << kind << " bits " << bits << " step " << step;
            }
          // Parameters as the fits have them (fp16-like floats); the error two ways.
          float p[5];
          for (int k = 0; k <= m; ++k) p[k] = 0.01f * float(1 + k) * (k == m ? -1.0f : 1.0f);
          std::vector<float> q(n);
          for (int j = 0; j < n; ++j) {
            double v = p[m];
            for (int k = 0; k < m; ++k) v += double(p[k]) * A[size_t(j) * m + k];
            q[size_t(j)] = float(v);
          }
          double coef[4];
          for (int k = 0; k < m; ++k) coef[k] = p[k];
          const double e = error_from_products(w.data(), n, codes.data(), fb, cp, coef, p[m]);
          const double want = weighted_error(w.data(), q.data(), n, gw);
          ASSERT_NEAR(e, want, 1e-5 * want + 1e-12) << "n " << n << " bits " << bits;
        }
      }
  }
  EXPECT_THROW(CodeColumnProducts(nullptr, 4, 1, CodeColumnProducts::Columns::BitPlanes),
               std::exception);
  std::vector<float> H(16, 1.0f);
  EXPECT_THROW(CodeColumnProducts(H.data(), 4, 2, CodeColumnProducts::Columns::CodeValue),
               std::exception);
  EXPECT_THROW(CodeColumnProducts(H.data(), 4, 5, CodeColumnProducts::Columns::BitPlanes),
               std::exception);
}

// What a fit with a full block reports is the weighted error of what it returns, and it is never
// worse than the uniform fit of the same group (a candidate it keeps).
TEST(GroupFitExact, FullBlockFitsReportTheirOwnError) {
  std::mt19937 rng(17);
  const int n = 128;
  const std::vector<float> H = hessian_block(rng, n);
  GroupWeights gw;
  gw.full = H.data();
  for (int bits = 1; bits <= 4; ++bits)
    for (int g = 0; g < 8; ++g) {
      const std::vector<float> w = random_floats(rng, n, 0.02f);
      float p[5], up[2];
      std::vector<uint8_t> codes(n), ucodes(n);
      const double e = hlq_fit_group(w.data(), n, bits, gw, HlqFitOptions{}, p, codes.data());
      std::vector<float> q(n);
      for (int j = 0; j < n; ++j) {
        float v = p[bits];
        for (int b = 0; b < bits; ++b)
          if (codes[size_t(j)] >> b & 1) v += p[b];
        q[size_t(j)] = v;
      }
      const double want = weighted_error(w.data(), q.data(), n, gw);
      EXPECT_NEAR(e, want, 1e-6 * want) << "bits " << bits;
      RtnOptions ro;
      ro.clip_search = true;
      const double eu = rtn_fit_group(w.data(), n, bits, gw, ro, up, ucodes.data());
      for (int j = 0; j < n; ++j) q[size_t(j)] = up[1] + up[0] * float(ucodes[size_t(j)]);
      EXPECT_NEAR(eu, weighted_error(w.data(), q.data(), n, gw), 1e-6 * eu) << "bits " << bits;
      EXPECT_LE(e, eu * (1 + 1e-9)) << "bits " << bits;
    }
}

}  // namespace
}  // namespace elutq
