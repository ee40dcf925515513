// AWQ scale search, folding helpers and clip search (see awq.h).
#include "quant/awq.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "quant/group_fit.h"
#include "quant/rtn.h"

namespace elutq {

std::vector<float> awq_scales(const std::vector<float>& mean_abs_x, float alpha) {
  require(!mean_abs_x.empty(), "AWQ: no activation statistics");
  std::vector<float> s(mean_abs_x.size());
  float mx = 0, mn = std::numeric_limits<float>::infinity();
  for (size_t j = 0; j < s.size(); ++j) {
    require(std::isfinite(mean_abs_x[j]), "AWQ: non-finite activation statistic at channel ", j);
    s[j] = std::pow(std::max(mean_abs_x[j], 1e-4f), alpha);
    mx = std::max(mx, s[j]);
    mn = std::min(mn, s[j]);
  }
  const float norm = std::sqrt(mx * mn);
  for (float& v : s) v /= norm;
  return s;
}

AwqSearchResult awq_search_scales(const std::vector<float>& mean_abs_x,
                                  const std::function<double(const std::vector<float>&)>& error_fn,
                                  int grid) {
  require(grid >= 1, "AWQ: grid must be at least 1");
  AwqSearchResult res;
  double best = std::numeric_limits<double>::infinity();
  for (int k = 0; k < grid; ++k) {
    float alpha = float(k) / float(grid);
    std::vector<float> s = awq_scales(mean_abs_x, alpha);
    double e = error_fn(s);
    res.errors.push_back(e);
    if (e < best) {  // NaN errors never win
      best = e;
      res.alpha = alpha;
      res.scales = std::move(s);
    }
  }
  require(!res.scales.empty(), "AWQ: every candidate scale gave a non-finite error");
  return res;
}

void scale_columns(float* W, int64_t rows, int64_t cols, const float* s) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) W[r * cols + j] *= s[j];
}

void fold_into_norm(float* g, int64_t n, const float* s) {
  for (int64_t j = 0; j < n; ++j) g[j] /= s[j];
}

void fold_into_linear_rows(float* Wp, int64_t rows_p, int64_t cols_p, const float* s) {
  for (int64_t j = 0; j < rows_p; ++j)
    for (int64_t c = 0; c < cols_p; ++c) Wp[j * cols_p + c] /= s[j];
}

std::vector<float> awq_clip_search(float* W, int64_t rows, int64_t cols, const std::vector<float>& G,
                                   const QuantSpec& spec, int steps, float min_ratio) {
  require(spec.kind != QuantKind::Codebook, "AWQ clip search: needs a grouped format");
  require(int64_t(G.size()) == cols * cols, "AWQ clip search: G must be ", cols, " x ", cols);
  require(steps >= 1, "AWQ clip search: steps must be at least 1");
  const int64_t g = spec.group_len(cols), gpr = spec.groups_per_row(cols);
  std::vector<float> ratios(size_t(rows * gpr), 1.0f);
  std::vector<float> Gg, wc, q;  // (n, n) group block, clipped weights, quantized
  std::vector<uint8_t> codes;
  for (int64_t gi = 0; gi < gpr; ++gi) {
    const int64_t a = gi * g;
    const int n = int(std::min(g, cols - a));
    Gg.resize(size_t(n) * n);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) Gg[size_t(i) * n + j] = G[(a + i) * cols + a + j];
    GroupWeights gw;
    gw.full = Gg.data();
    wc.resize(n);
    q.resize(n);
    codes.resize(n);
    for (int64_t r = 0; r < rows; ++r) {
      float* w = W + r * cols + a;
      float lo = *std::min_element(w, w + n), hi = *std::max_element(w, w + n);
      float mid = 0.5f * (lo + hi), half = 0.5f * (hi - lo);
      double best = std::numeric_limits<double>::infinity();
      float best_p = 1.0f;
      for (int k = 0; k < steps; ++k) {
        float p = steps == 1 ? 1.0f : 1.0f - (1.0f - min_ratio) * float(k) / float(steps - 1);
        for (int i = 0; i < n; ++i) wc[i] = std::clamp(w[i], mid - half * p, mid + half * p);
        float params[2];
        rtn_fit_group(wc.data(), n, spec.bits, GroupWeights{}, RtnOptions{}, params, codes.data());
        for (int i = 0; i < n; ++i) q[i] = params[1] + params[0] * codes[i];
        double e = weighted_error(w, q.data(), n, gw);
        if (e < best) {
          best = e;
          best_p = p;
        }
      }
      ratios[r * gpr + gi] = best_p;
      for (int i = 0; i < n; ++i) w[i] = std::clamp(w[i], mid - half * best_p, mid + half * best_p);
    }
  }
  return ratios;
}

}  // namespace elutq
