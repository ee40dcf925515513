// GPTQ and HLQ-GPTQ (see gptq.h).
#include "quant/gptq.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/gemv.h"
#include "quant/group_fit.h"
#include "quant/hessian.h"
#include "quant/hlqc_fit.h"

namespace elutq {

namespace {

// One group's representable values under its params, made once for the group's sweep: the nearest
// code of a weight (nearest_level, as hlq_assign and assign_nearest pick it) and the
// value it stands for (dequant_code's, bit for bit). Uniform codes round instead (uniform_assign).
class GroupLevels {
 public:
  GroupLevels(const QuantSpec& spec, const float* p) : spec_(spec), p_(p) {
    if (spec.kind == QuantKind::Uniform) return;
    nv_ = 1 << spec.bits;
    for (int c = 0; c < nv_; ++c) vals_[c] = dequant_code(spec, p, uint8_t(c));
  }
  uint8_t nearest(float x, float* value) const {
    if (nv_ == 0) {
      uint8_t code;
      uniform_assign(&x, 1, spec_.bits, p_, &code);
      *value = dequant_code(spec_, p_, code);
      return code;
    }
    const int best = nearest_level(vals_, nv_, x);
    *value = vals_[best];
    return uint8_t(best);
  }

 private:
  const QuantSpec& spec_;
  const float* p_;
  int nv_ = 0;  // 0: uniform
  float vals_[16] = {};
};

// Effective Hessian of a group at the head of the unquantized columns: (U_gg^T U_gg)^{-1} =
// U_gg^{-1} U_gg^{-T}, where U_gg (n, n) is the group's diagonal block of the upper factor U.
std::vector<float> effective_block(const std::vector<float>& U, int64_t dim, int64_t a, int n) {
  std::vector<double> Ui(size_t(n) * n, 0.0);  // (n, n) upper, then its inverse
  for (int i = 0; i < n; ++i)
    for (int j = i; j < n; ++j) Ui[size_t(i) * n + j] = U[(a + i) * dim + a + j];
  require(LAPACKE_dtrtri(LAPACK_ROW_MAJOR, 'U', 'N', n, Ui.data(), n) == 0,
          "GPTQ: singular Cholesky block (increase damping)");
  std::vector<float> Heff(size_t(n) * n);  // (n, n)
  for (int i = 0; i < n; ++i)
    for (int j = i; j < n; ++j) {
      double acc = 0;
      for (int k = j; k < n; ++k) acc += Ui[size_t(i) * n + k] * Ui[size_t(j) * n + k];
      Heff[size_t(i) * n + j] = Heff[size_t(j) * n + i] = float(acc);
    }
  return Heff;
}

// Largest divisor of g that is <= cap (so lazy blocks never straddle a group start).
int64_t divisor_block(int64_t g, int64_t cap) {
  for (int64_t d = std::min(g, cap); d > 1; --d)
    if (g % d == 0) return d;
  return 1;
}

}  // namespace

GptqResult gptq_quantize(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H,
                         const QuantSpec& spec, const GptqOptions& opt, ThreadPool* pool) {
  validate_quant_spec(spec);
  require(spec.kind != QuantKind::Codebook, "GPTQ: codebook formats are quantized by GANQ");
  require(rows > 0 && cols > 0, "GPTQ: empty matrix");
  require(int64_t(H.size()) == cols * cols, "GPTQ: Hessian must be ", cols, " x ", cols,
          " for a layer with ", cols, " inputs, got ", H.size(), " values");
  require(opt.block > 0, "GPTQ: block size must be positive");
  const bool hlq = spec.is_hlq();
  const bool hlqc = spec.kind == QuantKind::HLQC;
  const int64_t g = spec.group_len(cols), gpr = spec.groups_per_row(cols);
  const int ppg = spec.params_per_group();
  const int nk = hlqc ? spec.bits - 1 : 0;  // HLQC ratio codes per group
  GptqResult res;

  // Column order: identity, or by decreasing Hessian diagonal (act-order).
  std::vector<int64_t> perm(cols);  // (cols) original column at each sweep position
  std::iota(perm.begin(), perm.end(), 0);
  if (opt.act_order)
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return H[a * cols + a] > H[b * cols + b]; });
  std::vector<float> Hp;  // (cols, cols) permuted Hessian, with act-order only
  if (opt.act_order) {
    Hp.resize(size_t(cols * cols));
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < cols; ++j) Hp[i * cols + j] = H[perm[i] * cols + perm[j]];
  }
  PreparedHessian ph = prepare_hessian(opt.act_order ? Hp : H, cols, opt.percdamp,
                                       pool ? pool->size() : 1);
  Hp = {};
  res.log = ph.log;
  res.damp = ph.damp;
  res.dead.assign(size_t(cols), 0);
  for (int64_t i = 0; i < cols; ++i) res.dead[size_t(perm[i])] = ph.dead[size_t(i)];
  const std::vector<float>& U = ph.U;  // (cols, cols) upper factor of H^{-1}, sweep order

  std::vector<float> Wk(size_t(rows * cols));  // (rows, cols) working weights, sweep order
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < cols; ++i)
      Wk[r * cols + i] = ph.dead[i] ? 0.0f : W[r * cols + perm[i]];

  QuantizedMatrix& q = res.q;
  q.spec = spec;
  q.rows = rows;
  q.cols = cols;
  q.codes.assign(size_t(rows * cols), 0);
  q.params.assign(size_t(rows * gpr * ppg), 0.0f);
  if (hlqc) {
    // The ratio codebook comes first, from free HLQ fits of the original weights: every group of
    // the sweep is then projected onto it.
    q.ratio_codebook = hlqc_fit_codebook(W, rows, cols, spec, opt.fit, pool);
    q.ratio_codes.assign(size_t(rows * gpr * nk), 0);
  }
  // HLQC: the ratio codes of (row, group); nullptr for other kinds.
  auto ratio_codes_at = [&](int64_t r, int64_t gi) {
    return hlqc ? q.ratio_codes.data() + (r * gpr + gi) * nk : nullptr;
  };

  // Per-group importance for fits made on the sweep-order weights (no permutation here).
  auto group_weights = [&](int64_t a, int n, const std::vector<float>* heff,
                           std::vector<float>& diag_buf) {
    GroupWeights gw;
    if (opt.fit_weight == GroupFitWeight::HessianDiag) {
      diag_buf.resize(n);
      for (int i = 0; i < n; ++i) diag_buf[i] = ph.H[(a + i) * cols + a + i];
      gw.diag = diag_buf.data();
    } else if (opt.fit_weight == GroupFitWeight::HessianBlock && heff) {
      gw.full = heff->data();
    }
    return gw;
  };
  auto fit_group = [&](const float* w, int n, const GroupWeights& gw, float* P, uint8_t* codes,
                       uint8_t* K) {
    if (hlqc) {
      float free_p[5];
      hlq_fit_group(w, n, spec.bits, gw, opt.fit, free_p, codes);
      hlqc_project_group(w, n, spec.bits, gw, q.ratio_codebook.data(), free_p, codes, P, K);
    } else if (hlq) {
      hlq_fit_group(w, n, spec.bits, gw, opt.fit, P, codes);
    } else {
      rtn_fit_group(w, n, spec.bits, gw, opt.rtn, P, codes);
    }
  };

  // Static groups (act-order): every group's params from the original weights, before the sweep.
  const bool static_groups = opt.act_order;
  if (static_groups) {
    if (hlq && opt.variant == HlqGptqVariant::Ours)
      res.log += "act-order uses static groups: the in-group refit of the 'ours' variant is off. ";
    std::vector<float> Wz(W, W + rows * cols);  // (rows, cols) original order, dead inputs zeroed
    for (int64_t i = 0; i < cols; ++i)
      if (ph.dead[i])
        for (int64_t r = 0; r < rows; ++r) Wz[r * cols + perm[i]] = 0.0f;
    QuantizedMatrix s = quantize_groupwise(
        Wz.data(), rows, cols, spec,
        [&](int64_t r, int64_t gi, const float* w, int n, float* P, uint8_t* codes) {
          fit_group(w, n, GroupWeights{}, P, codes, ratio_codes_at(r, gi));
        },
        pool);
    q.params = std::move(s.params);
  }

  // Lazy blocks aligned with groups, so a group start is always at a block start or inside a
  // block that holds the whole group.
  const bool ours = hlq && opt.variant == HlqGptqVariant::Ours && !static_groups;
  int64_t block = opt.block;
  if (!static_groups) {
    if (g >= block) block = ours ? g : divisor_block(g, block);
    else block = (block / g) * g;
  }
  const int64_t bmax = std::min(block, cols);
  std::vector<float> E(size_t(rows * bmax));  // (rows, bs) scaled errors of the current block
  std::vector<double> row_loss(size_t(rows), 0.0);

  for (int64_t i1 = 0; i1 < cols; i1 += block) {
    const int64_t i2 = std::min(i1 + block, cols), bs = i2 - i1;
    // Effective Hessian blocks of the groups that start in this block (shared by all rows).
    // And H 1 of each, for the refit rounds: the same for every row.
    std::vector<std::vector<float>> heff;  // per group starting in [i1, i2): (n, n)
    std::vector<std::vector<double>> heff_ones;  // per group: (n)
    const bool need_heff = !static_groups && (ours || opt.fit_weight == GroupFitWeight::HessianBlock);
    if (need_heff)
      for (int64_t a = i1; a < i2; a += g)
        if (a % g == 0) {
          const int n = int(std::min(g, cols - a));
          heff.push_back(effective_block(U, cols, a, n));
          if (ours && opt.refit_rounds > 0) heff_ones.push_back(block_times_ones(heff.back().data(), n));
        }

    auto do_rows = [&](int, int64_t r0, int64_t r1) {
      std::vector<float> w0, wt, diag_buf, P2(ppg), Pbest(ppg), Pprev(ppg);  // group scratch
      std::vector<float> et, ebest;
      std::vector<uint8_t> ct, cbest, tmp_codes;
      float free_p[5];
      uint8_t K2[3] = {}, Kbest[3] = {}, Kprev[3] = {};  // HLQC ratio codes: candidate, best, last
      for (int64_t r = r0; r < r1; ++r) {
        float* w = Wk.data() + r * cols;  // (cols) this row, sweep order
        float* e = E.data() + r * bs;     // (bs) this row's scaled errors
        double loss = 0;
        // Quantizes sweep column i with params P, pushing the error onto columns (i, i2).
        auto sweep_col = [&](int64_t i, const GroupLevels& levels) {
          float v;
          const uint8_t code = levels.nearest(w[i], &v);
          float err = (w[i] - v) / U[i * cols + i];
          const float* Ui = U.data() + i * cols;
          sub_scaled_f32(w + i + 1, Ui + i + 1, err, i2 - i - 1);
          e[i - i1] = err;
          loss += double(err) * err;
          q.codes[r * cols + perm[i]] = code;
        };
        for (int64_t c = i1; c < i2;) {
          if (static_groups) {
            sweep_col(c, GroupLevels(spec, q.params.data() + (r * gpr + perm[c] / g) * ppg));
            ++c;
            continue;
          }
          const int64_t gi = c / g, a = gi * g, b = std::min(a + g, cols);
          const int n = int(b - a);
          float* P = q.params.data() + (r * gpr + gi) * ppg;
          const std::vector<float>* hb = need_heff && a >= i1 ? &heff[(a - i1) / g] : nullptr;
          if (c == a) {
            tmp_codes.resize(n);
            fit_group(w + a, n, group_weights(a, n, hb, diag_buf), P, tmp_codes.data(),
                      ratio_codes_at(r, gi));
          }
          if (!ours) {
            const int64_t seg_end = std::min(b, i2);
            const GroupLevels levels(spec, P);
            for (int64_t i = c; i < seg_end; ++i) sweep_col(i, levels);
            c = seg_end;
            continue;
          }
          // Ours: the whole group lies in this block. Sweep it on a copy, refit, keep the best.
          w0.assign(w + a, w + b);
          wt.resize(n);
          et.resize(n);
          ct.resize(n);
          double best = std::numeric_limits<double>::infinity();
          std::copy(P, P + ppg, P2.begin());
          if (hlqc) std::copy(ratio_codes_at(r, gi), ratio_codes_at(r, gi) + nk, K2);
          GroupWeights gw;
          if (hb) gw.full = hb->data();
          // H 1 and H w of this group, for every round's refit (empty without refit rounds).
          const FullBlockProducts fb =
              opt.refit_rounds > 0 && hb
                  ? FullBlockProducts(w0.data(), n, gw, heff_ones[size_t((a - i1) / g)])
                  : FullBlockProducts(w0.data(), n, GroupWeights{});
          // The bit planes' products under this block, following each round's codes.
          std::optional<CodeColumnProducts> cp;
          if (opt.refit_rounds > 0 && gw.full)
            cp.emplace(gw.full, n, spec.bits, CodeColumnProducts::Columns::BitPlanes);
          CodeColumnProducts* cpp = cp ? &*cp : nullptr;
          for (int round = 0; round <= opt.refit_rounds; ++round) {
            if (round > 0) {
              // A round is a function of P2 (and K2) alone: the sweep from w0 gives its codes and
              // loss. A refit that returns the parameters the last sweep used repeats that sweep,
              // and so every later round: stop (the best is unchanged, bit for bit).
              Pprev = P2;
              if (hlqc) {  // free refit (from the zero form of P2), then back onto the codebook
                std::copy(K2, K2 + nk, Kprev);
                float pz[5];
                std::copy(P2.begin(), P2.end(), pz);
                for (int b = 0; b < spec.bits; ++b) pz[spec.bits] -= 0.5f * P2[b];
                hlq_refit_params(w0.data(), n, spec.bits, ct.data(), gw, pz, free_p, &fb, cpp);
                tmp_codes = ct;
                hlqc_project_group(w0.data(), n, spec.bits, gw, q.ratio_codebook.data(), free_p,
                                   tmp_codes.data(), P2.data(), K2, &fb);
              } else {
                hlq_refit_params(w0.data(), n, spec.bits, ct.data(), gw, P2.data(), P2.data(),
                                 &fb, cpp);
                round_params_to_fp16(P2);
              }
              bool finite = true;
              for (float x : P2) finite = finite && std::isfinite(x);
              if (!finite) break;
              if (std::memcmp(P2.data(), Pprev.data(), sizeof(float) * size_t(ppg)) == 0 &&
                  (!hlqc || std::equal(K2, K2 + nk, Kprev)))
                break;
            }
            std::copy(w0.begin(), w0.end(), wt.begin());
            double l = 0;
            const GroupLevels levels(spec, P2.data());
            for (int i = 0; i < n; ++i) {
              float v;
              ct[i] = levels.nearest(wt[i], &v);
              const float* Ui = U.data() + (a + i) * cols + a;
              float err = (wt[i] - v) / Ui[i];
              sub_scaled_f32(wt.data() + i + 1, Ui + i + 1, err, n - i - 1);
              et[i] = err;
              l += double(err) * err;
            }
            if (l < best) {
              best = l;
              Pbest = P2;
              std::copy(K2, K2 + nk, Kbest);
              cbest = ct;
              ebest = et;
            }
          }
          std::copy(Pbest.begin(), Pbest.end(), P);
          if (hlqc) std::copy(Kbest, Kbest + nk, ratio_codes_at(r, gi));
          for (int i = 0; i < n; ++i) {
            q.codes[r * cols + perm[a + i]] = cbest[i];
            e[a + i - i1] = ebest[i];
            const float* Ui = U.data() + (a + i) * cols;
            sub_scaled_f32(w + b, Ui + b, ebest[i], i2 - b);
          }
          loss += best;
          c = b;
        }
        row_loss[r] += loss;
      }
    };
    // Rows in small pieces claimed on demand: a row's fits take longer or shorter as they converge,
    // and halves fixed in advance left one thread waiting for the other.
    if (pool) pool->parallel_chunks(rows, 8, [&](int64_t r0, int64_t r1) { do_rows(0, r0, r1); });
    else do_rows(0, 0, rows);
    // Lazy update of the later columns: W[:, i2:] -= E (rows, bs) * U[i1:i2, i2:] (bs, cols - i2),
    // rows split over the pool (OpenBLAS runs single-threaded inside the pipeline).
    auto lazy_update = [&](int, int64_t r0, int64_t r1) {
      if (i2 < cols && r1 > r0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(r1 - r0), int(cols - i2),
                    int(bs), -1.0f, E.data() + r0 * bs, int(bs), U.data() + i1 * cols + i2,
                    int(cols), 1.0f, Wk.data() + r0 * cols + i2, int(cols));
    };
    if (pool) pool->run(rows, lazy_update);
    else lazy_update(0, 0, rows);
  }
  res.proxy_loss = std::accumulate(row_loss.begin(), row_loss.end(), 0.0);
  return res;
}

}  // namespace elutq
