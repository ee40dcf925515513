// HLQ group fitting: alternating least squares, Adam, several starts (see hlq_fit.h).
#include "quant/hlq_fit.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>

#include "core/error.h"
#include "quant/rtn.h"
#include "quant/small_lstsq.h"

namespace elutq {

namespace {

constexpr int kMaxBits = 4;
constexpr int kMaxParams = kMaxBits + 1;

// The 2^B representable values of params {s_0..s_{B-1}, z}: vals[c] for code c.
void hlq_values(const float* p, int bits, float* vals) {
  for (int c = 0; c < (1 << bits); ++c) {
    float v = p[bits];
    for (int b = 0; b < bits; ++b)
      if (c >> b & 1) v += p[b];
    vals[c] = v;
  }
}

// The lowest code among the nearest levels, as nearest_level (tensor/qformat.h) picks
// it; written as selects over a compile-time level count, so the loop over weights vectorizes
// (with -fno-trapping-math) instead of branching on every comparison.
// With q, also the chosen values (vals[codes[i]]), picked in the same selects up to 8 levels: a
// lookup per weight afterwards does not vectorize.
template <int kLevels, bool kValues>
void assign_levels(const float* w, int n, const float* vals, uint8_t* codes, float* q) {
  for (int i = 0; i < n; ++i) {
    const float x = w[i];
    float bd = std::fabs(x - vals[0]), bv = vals[0];
    int best = 0;
    for (int c = 1; c < kLevels; ++c) {
      const float d = std::fabs(x - vals[c]);
      const bool take = d < bd;
      best = take ? c : best;
      bd = take ? d : bd;
      bv = take ? vals[c] : bv;
    }
    codes[i] = uint8_t(best);
    if constexpr (kValues) q[i] = bv;
  }
}

void assign_with_values(const float* w, int n, int bits, const float* params, uint8_t* codes,
                        float* q) {
  float vals[1 << kMaxBits];
  hlq_values(params, bits, vals);
  switch (bits) {
    case 1: return q ? assign_levels<2, true>(w, n, vals, codes, q)
                     : assign_levels<2, false>(w, n, vals, codes, q);
    case 2: return q ? assign_levels<4, true>(w, n, vals, codes, q)
                     : assign_levels<4, false>(w, n, vals, codes, q);
    case 3: return q ? assign_levels<8, true>(w, n, vals, codes, q)
                     : assign_levels<8, false>(w, n, vals, codes, q);
    case 4:  // 16 levels: a third select per level costs more than looking the values up after
      assign_levels<16, false>(w, n, vals, codes, nullptr);
      if (q)
        for (int i = 0; i < n; ++i) q[i] = vals[codes[i]];
      return;
    default: fail("hlq_assign: ", bits, " bits (1..4 supported)");
  }
}

// Nearest codes under p and their weighted error. With a full block the error comes from the bit
// planes' products, which follow the codes from one call to the next (group_fit.h), and the
// refits reuse them; else from the values directly.
struct HlqObjective {
  const float* w;
  int n, bits;
  const GroupWeights& h;
  const FullBlockProducts& fb;
  std::optional<CodeColumnProducts> cp;  // with a full block
  std::vector<float> q;                  // (n) values, without one

  HlqObjective(const float* w_, int n_, int bits_, const GroupWeights& h_,
               const FullBlockProducts& fb_)
      : w(w_), n(n_), bits(bits_), h(h_), fb(fb_), q(size_t(n_)) {
    if (h.full) cp.emplace(h.full, n, bits, CodeColumnProducts::Columns::BitPlanes);
  }
  CodeColumnProducts* products() { return cp ? &*cp : nullptr; }
  double assign(const float* p, uint8_t* codes) {
    if (cp) {
      hlq_assign(w, n, bits, p, codes);
      cp->update(codes);
      double coef[4];
      for (int b = 0; b < bits; ++b) coef[b] = p[b];
      return error_from_products(w, n, codes, fb, *cp, coef, p[bits]);
    }
    assign_with_values(w, n, bits, p, codes, q.data());
    return weighted_error(w, q.data(), n, h);
  }
};

void uniform_to_hlq(float scale, float zero, int bits, float* p) {
  for (int b = 0; b < bits; ++b) p[b] = scale * float(1 << b);  // exact: power-of-two multiple
  p[bits] = zero;
}

// Greedy binary coding: w ~ mu + sum_b alpha_b * (+-1), each alpha_b = mean |residual|; then
// alpha * (+-1) = 2*alpha*bit - alpha gives s_b = 2*alpha_b and z = mu - sum alpha_b.
void greedy_start(const float* w, int n, int bits, float* p) {
  double mu = 0;
  for (int i = 0; i < n; ++i) mu += w[i];
  mu /= n;
  std::vector<double> r(n);  // (n) residual
  for (int i = 0; i < n; ++i) r[i] = w[i] - mu;
  double z = mu;
  for (int b = bits - 1; b >= 0; --b) {
    double a = 0;
    for (int i = 0; i < n; ++i) a += std::fabs(r[i]);
    a /= n;
    for (int i = 0; i < n; ++i) r[i] -= r[i] >= 0 ? a : -a;
    p[b] = float(2 * a);
    z -= a;
  }
  p[bits] = float(z);
}

struct Fitted {
  float p[kMaxParams];
};

// One alternating run from p0; returns the last iterate, or the best one if keep_best.
Fitted run_alternating(HlqObjective& obj, const HlqFitOptions& opt, const float* p0,
                       uint8_t* codes) {
  const int n = obj.n, bits = obj.bits;
  Fitted cur, best;
  std::copy(p0, p0 + bits + 1, cur.p);
  best = cur;
  double best_e = obj.assign(cur.p, codes);
  // A fixed point ends the run early with the same result: once a refit returns the parameters
  // it started from and they assign the same codes, every later round repeats it exactly.
  thread_local std::vector<uint8_t> prev_codes;
  for (int t = 0; t < opt.iterations; ++t) {
    Fitted before = cur;
    prev_codes.assign(codes, codes + n);
    hlq_refit_params(obj.w, n, bits, codes, obj.h, cur.p, cur.p, &obj.fb, obj.products());
    double e = obj.assign(cur.p, codes);
    if (e < best_e) {
      best_e = e;
      best = cur;
    }
    if (std::memcmp(before.p, cur.p, sizeof(float) * size_t(bits + 1)) == 0 &&
        std::memcmp(prev_codes.data(), codes, size_t(n)) == 0)
      break;
  }
  return opt.keep_best ? best : cur;
}

// Adam on (s, z) with codes reassigned each step (straight-through); keeps the best iterate.
Fitted run_gradient(HlqObjective& obj, const HlqFitOptions& opt, const float* p0,
                    uint8_t* codes) {
  const float* w = obj.w;
  const int n = obj.n, bits = obj.bits, np = bits + 1;
  const GroupWeights& h = obj.h;
  Fitted cur, best;
  std::copy(p0, p0 + np, cur.p);
  best = cur;
  double m[kMaxParams] = {}, v[kMaxParams] = {};
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  double best_e = obj.assign(cur.p, codes);
  std::vector<double> hr(n), rf(n);  // (n) H r, r
  float vals[1 << kMaxBits];
  for (int t = 1; t <= opt.grad_iterations; ++t) {
    hlq_values(cur.p, bits, vals);  // the values of the current codes (q holds them without H)
    if (h.full) {
      for (int j = 0; j < n; ++j) rf[size_t(j)] = w[j] - vals[codes[j]];  // float difference
      full_block_product(h.full, n, rf.data(), 1, hr.data());
    } else {
      for (int i = 0; i < n; ++i) hr[i] = (h.diag ? h.diag[i] : 1.0) * (double(w[i]) - vals[codes[i]]);
    }
    double g[kMaxParams] = {};  // d/dp of (1/n) r^T H r = -(2/n) A^T H r
    for (int i = 0; i < n; ++i) {
      for (int b = 0; b < bits; ++b)
        if (codes[i] >> b & 1) g[b] -= 2.0 * hr[i] / n;
      g[bits] -= 2.0 * hr[i] / n;
    }
    for (int k = 0; k < np; ++k) {
      m[k] = b1 * m[k] + (1 - b1) * g[k];
      v[k] = b2 * v[k] + (1 - b2) * g[k] * g[k];
      double mh = m[k] / (1 - std::pow(b1, t)), vh = v[k] / (1 - std::pow(b2, t));
      cur.p[k] = float(cur.p[k] - opt.lr * mh / (std::sqrt(vh) + eps));
    }
    double e = obj.assign(cur.p, codes);
    if (e < best_e) {
      best_e = e;
      best = cur;
    }
  }
  return best;
}

}  // namespace

void hlq_assign(const float* w, int n, int bits, const float* params, uint8_t* codes) {
  assign_with_values(w, n, bits, params, codes, nullptr);
}

namespace {

// Column k of the least squares' design matrix A at a weight with this code: bit k of the code
// for the planes (k < B), 1 for the zero (k = B).
inline double design_column(uint8_t code, int k, int bits) {
  return k == bits ? 1.0 : double(code >> k & 1);
}

// Unweighted (no H): A^T A counts the weights whose codes set both bits (or one, with the zero's
// column of ones), so it comes exactly from the codes' histogram, in 2^B terms instead of n. A^T w
// sums in four lanes (weights i mod 4), each lane in order, added at the end: one running sum per
// column made every weight wait for the add before it, and this runs at every refit of every
// group. (Sums of one group's floats in double are exact unless their magnitudes span more than
// about 2^22, so the order rarely changes a bit.)
template <int kBits>
void normal_equations_unweighted(const float* w, int n, const uint8_t* codes, double* M,
                                 double* rhs) {
  constexpr int np = kBits + 1, kLanes = 4;
  int64_t count[kLanes][1 << kBits] = {};
  double r[kLanes][np] = {};
  // A zero bit adds +0 (a sum that starts at +0 never becomes -0, so adding nothing, +0 or
  // 0 * w gives the same sums): a select instead of converting the bit and multiplying.
  auto add = [&](int lane, int i) {
    const uint8_t c = codes[i];
    const double wi = w[i];
    ++count[lane][c];
    for (int k = 0; k < kBits; ++k) r[lane][k] += (c >> k & 1) ? wi : 0.0;
    r[lane][kBits] += wi;
  };
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) add(l, i + l);
  for (int l = 0; i < n; ++i, ++l) add(l, i);
  for (int k = 0; k < np; ++k) {
    rhs[k] = (r[0][k] + r[1][k]) + (r[2][k] + r[3][k]);
    for (int l = 0; l < np; ++l) {
      int64_t both = 0;
      for (int c = 0; c < (1 << kBits); ++c)
        if (design_column(uint8_t(c), k, kBits) != 0 && design_column(uint8_t(c), l, kBits) != 0)
          both += count[0][c] + count[1][c] + count[2][c] + count[3][c];
      M[k * np + l] = double(both);
    }
  }
}

// The normal equations M p = rhs of the least squares, M = A^T H A and rhs = A^T H w with
// A = [bit planes of the codes, 1] (n, B + 1); HAw (n, B + 2) = H [A w] for a full block H, else
// nullptr. B is a template parameter so the sums stay in registers: as loops over a run-time
// B + 1 they were additions to memory, each waiting on the one before, and most of a fit's time
// with a diagonal H (with a branch per zero bit, mispredicted half the time). Each sum adds the
// terms of the plain loops ((h_i a_ik) a_il, (h_i a_ik) w_i, a_ik (HA)_il) over i in order; the
// plain diagonal loop skipped a_ik = 0, whose terms are +-0 and change no sum, so the results are
// unchanged bit for bit.
template <int kBits>
void normal_equations(const float* w, int n, const uint8_t* codes, const float* diag,
                      const double* HAw, double* M, double* rhs) {
  if (!HAw && !diag) return normal_equations_unweighted<kBits>(w, n, codes, M, rhs);
  constexpr int np = kBits + 1;
  double m[np][np] = {}, r[np] = {};
  for (int i = 0; i < n; ++i) {
    double a[np];
    for (int k = 0; k < np; ++k) a[k] = design_column(codes[i], k, kBits);
    if (HAw) {
      const double* HAi = HAw + int64_t(i) * (np + 1);
      for (int k = 0; k < np; ++k) {
        r[k] += a[k] * HAi[np];
        for (int l = 0; l < np; ++l) m[k][l] += a[k] * HAi[l];
      }
    } else {
      // (h_i a_ik) a_il and (h_i a_ik) w_i as before; a zero a_ik adds +-0, which changes no sum.
      const double hi = diag ? double(diag[i]) : 1.0;
      for (int k = 0; k < np; ++k) {
        const double hk = hi * a[k];
        r[k] += hk * w[i];
        for (int l = 0; l < np; ++l) m[k][l] += hk * a[l];
      }
    }
  }
  for (int k = 0; k < np; ++k) {
    rhs[k] = r[k];
    for (int l = 0; l < np; ++l) M[k * np + l] = m[k][l];
  }
}

}  // namespace

bool hlq_refit_params(const float* w, int n, int bits, const uint8_t* codes,
                      const GroupWeights& h, const float* p_prev, float* params,
                      const FullBlockProducts* fb, CodeColumnProducts* cp) {
  require(bits >= 1 && bits <= kMaxBits, "HLQ refit: bits must be 1..4, got ", bits);
  const int np = bits + 1;
  double M[kMaxParams * kMaxParams], rhs[kMaxParams];  // (np, np), (np): every entry written below
  thread_local std::vector<double> HAw;  // (n, np + 1) H [A w] with a full block
  if (h.full) {
    // Only the bit planes' columns depend on the codes (their products follow the codes in cp,
    // made here if the caller has none); H 1 and H w come from fb.
    std::optional<FullBlockProducts> own;
    if (!fb) fb = &own.emplace(w, n, h);
    std::optional<CodeColumnProducts> own_cp;
    if (!cp) cp = &own_cp.emplace(h.full, n, bits, CodeColumnProducts::Columns::BitPlanes);
    require(cp->columns() == bits, "HLQ refit: products of ", cp->columns(), " planes for ", bits);
    cp->update(codes);
    HAw.resize(size_t(n) * (np + 1));
    for (int i = 0; i < n; ++i) {
      double* row = HAw.data() + size_t(i) * (np + 1);
      for (int k = 0; k < bits; ++k) row[k] = cp->column(k)[i];
      row[bits] = fb->H1[size_t(i)];
      row[np] = fb->Hw[size_t(i)];
    }
  }
  const double* hp = h.full ? HAw.data() : nullptr;
  switch (bits) {
    case 1: normal_equations<1>(w, n, codes, h.diag, hp, M, rhs); break;
    case 2: normal_equations<2>(w, n, codes, h.diag, hp, M, rhs); break;
    case 3: normal_equations<3>(w, n, codes, h.diag, hp, M, rhs); break;
    default: normal_equations<4>(w, n, codes, h.diag, hp, M, rhs); break;
  }
  double prev[kMaxParams], x[kMaxParams];
  for (int k = 0; k < np; ++k) prev[k] = p_prev[k];
  bool ok = solve_proximal_spd(M, rhs, prev, np, 1e-9, x);
  for (int k = 0; k < np; ++k) params[k] = float(x[k]);
  return ok;
}

double hlq_fit_group(const float* w, int n, int bits, const GroupWeights& h,
                     const HlqFitOptions& opt, float* params, uint8_t* codes) {
  require(bits >= 1 && bits <= kMaxBits, "HLQ fit: bits must be 1..4, got ", bits);
  require(n > 0, "HLQ fit: empty group");
  const int np = bits + 1;
  std::vector<uint8_t> tmp(n);      // (n) scratch codes
  const FullBlockProducts fb(w, n, h);  // shared by the uniform fits and every start's refits
  HlqObjective obj(w, n, bits, h, fb);

  // Uniform fits (RTN, fp16-rounded) serve as starts and, with keep_best, as candidates.
  float rtn_p[2];
  RtnOptions ro;
  rtn_fit_group(w, n, bits, h, ro, rtn_p, tmp.data(), &fb);
  std::vector<Fitted> starts, candidates;
  Fitted f;
  uniform_to_hlq(rtn_p[0], rtn_p[1], bits, f.p);
  const bool uniform = opt.start_uniform || !(opt.start_clipped || opt.start_greedy);
  if (uniform) starts.push_back(f);
  if (opt.keep_best) candidates.push_back(f);
  if (opt.start_clipped) {
    ro.clip_search = true;
    rtn_fit_group(w, n, bits, h, ro, rtn_p, tmp.data(), &fb);
    uniform_to_hlq(rtn_p[0], rtn_p[1], bits, f.p);
    starts.push_back(f);
    if (opt.keep_best) candidates.push_back(f);
  }
  if (opt.start_greedy) {
    greedy_start(w, n, bits, f.p);
    starts.push_back(f);
  }
  for (const Fitted& s : starts) {
    candidates.push_back(opt.method == HlqFitMethod::Alternating
                             ? run_alternating(obj, opt, s.p, tmp.data())
                             : run_gradient(obj, opt, s.p, tmp.data()));
  }
  // Final choice after fp16 rounding, codes assigned to the rounded parameters.
  double best_e = std::numeric_limits<double>::infinity();
  std::vector<float> rp(np);
  for (const Fitted& c : candidates) {
    rp.assign(c.p, c.p + np);
    round_params_to_fp16(rp);
    bool finite = true;
    for (float v : rp) finite = finite && std::isfinite(v);
    if (!finite) continue;  // a parameter overflowed fp16
    double e = obj.assign(rp.data(), tmp.data());
    if (e < best_e || best_e == std::numeric_limits<double>::infinity()) {
      best_e = e;
      std::copy(rp.begin(), rp.end(), params);
      std::copy(tmp.begin(), tmp.end(), codes);
    }
  }
  require(std::isfinite(best_e), "HLQ fit: parameters do not fit in fp16 (weights too large?)");
  return best_e;
}

QuantizedMatrix quantize_hlq(const float* W, int64_t rows, int64_t cols, const QuantSpec& spec,
                             const HlqFitOptions& opt, ThreadPool* pool) {
  require(spec.kind == QuantKind::HLQ, "quantize_hlq: needs an HLQ format, got ", spec.name());
  return quantize_groupwise(
      W, rows, cols, spec,
      [&](int64_t, int64_t, const float* w, int n, float* params, uint8_t* codes) {
        hlq_fit_group(w, n, spec.bits, GroupWeights{}, opt, params, codes);
      },
      pool);
}

}  // namespace elutq
