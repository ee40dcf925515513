// AWQ (activation-aware weight quantization): scale input channel j of a linear layer by s_j before
// quantizing (W diag(s)), and divide the layer's inputs by s (folded into the preceding RMSNorm
// weight or the preceding linear's output rows), so salient channels (large mean |x|) lose less.
// The scale search follows the AWQ paper: s = mean|x|^alpha normalised by sqrt(max(s) * min(s)),
// alpha in {0, 0.05, ..., 0.95}, the alpha of least block-output error wins; the error is measured
// by a callback the pipeline provides (it quantizes the scaled weights and runs the block).
// Optional clip search: per (row, group), shrink the weight range to the factor that minimises the
// group's output error (w - Q(clip(w)))^T G (w - Q(clip(w))), G = X_g^T X_g.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "tensor/qformat.h"

namespace elutq {

// Scales for one alpha: (cols) mean_abs_x^alpha (mean |x| clamped below at 1e-4), normalised.
std::vector<float> awq_scales(const std::vector<float>& mean_abs_x, float alpha);

struct AwqSearchResult {
  float alpha = 0;
  std::vector<float> scales;   // (cols) the winning scales
  std::vector<double> errors;  // (grid) the callback's error for each alpha tried
};

// Tries alpha = k / grid for k = 0..grid-1; error_fn(scales) returns the block-output error.
AwqSearchResult awq_search_scales(const std::vector<float>& mean_abs_x,
                                  const std::function<double(const std::vector<float>&)>& error_fn,
                                  int grid = 20);

// W (rows, cols) row-major: W[:, j] *= s[j].
void scale_columns(float* W, int64_t rows, int64_t cols, const float* s);
// RMSNorm weight (n) feeding the scaled layer(s): g[j] /= s[j].
void fold_into_norm(float* norm_weight, int64_t n, const float* s);
// Preceding linear Wp (rows_p, cols_p) whose output j feeds input j: Wp[j, :] /= s[j].
void fold_into_linear_rows(float* Wp, int64_t rows_p, int64_t cols_p, const float* s);

// Clip search for uniform/HLQ groups of spec: G (cols, cols) = X^T X (or the Hessian). Clamps W in
// place to the best symmetric-about-the-middle range per (row, group) among `steps` shrink factors
// down to min_ratio, scored by uniform RTN at spec.bits. Returns the chosen factor per (row, group).
std::vector<float> awq_clip_search(float* W, int64_t rows, int64_t cols, const std::vector<float>& G,
                                   const QuantSpec& spec, int steps = 20, float min_ratio = 0.5f);

}  // namespace elutq
