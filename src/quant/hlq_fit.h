// Fitting HLQ parameters for one group: w ~ z + sum_b s_b * bit_b(code), B bit planes.
//
// The ELUTQ paper's alternating optimisation: start from the uniform grid (s_b = s * 2^b, z = min),
// then repeat: give each weight the nearest of the 2^B representable values (its bit pattern), and
// refit (s_0..s_{B-1}, z) by least squares given the bit patterns. Its gradient variant runs Adam on
// (s, z) with the bit patterns reassigned every step and keeps the best iterate.
// What we add, each an option: keep the best iterate (alternating), several starts (uniform,
// clipped uniform, greedy binary coding of the residual), and least squares weighted by per-weight
// importance (a Hessian diagonal) or by a full Hessian block (GroupWeights).
// Parameters are rounded to fp16 before the final code assignment. With keep_best the final choice
// is made among fp16-rounded candidates that include the uniform RTN fit itself, so the result is
// never worse than RTN on the same group and objective (uniform is a special case of HLQ).
#pragma once

#include <cstdint>

#include "quant/group_fit.h"
#include "tensor/qformat.h"

namespace elutq {

enum class HlqFitMethod { Alternating, Gradient };

struct HlqFitOptions {
  HlqFitMethod method = HlqFitMethod::Alternating;
  int iterations = 10;        // alternating rounds (assign + least squares)
  int grad_iterations = 100;  // Adam steps for the gradient variant
  float lr = 1e-3f;           // Adam learning rate (absolute, on s and z)
  bool keep_best = true;      // return the best iterate, chosen after fp16 rounding, RTN included
  bool start_uniform = true;  // uniform min-max grid start (always used if no start is enabled)
  bool start_clipped = true;  // uniform grid from the MSE clip-searched range
  bool start_greedy = true;   // greedy binary coding of the residual

  // The paper's procedure, nothing added: uniform start, last iterate (alternating) or best
  // iterate (gradient, as the paper keeps it), unweighted.
  static HlqFitOptions paper(HlqFitMethod m) {
    HlqFitOptions o;
    o.method = m;
    o.keep_best = false;
    o.start_clipped = false;
    o.start_greedy = false;
    return o;
  }
};

// Nearest representable value for each weight (codes (n)), given params {s_0..s_{B-1}, z}.
void hlq_assign(const float* w, int n, int bits, const float* params, uint8_t* codes);

// Least squares for params given codes: minimises r^T H r, r = w - A p. p_prev (B+1) is kept along
// directions the codes leave undetermined (e.g. a bit plane that is all zeros). params may alias
// p_prev. With a full block, fb (made from the same w and h) saves recomputing H 1 and H w, and cp
// (bit planes over the same block) carries the planes' products from the caller's last codes,
// updated here to these. Returns false if the system was degenerate beyond repair
// (params = p_prev).
bool hlq_refit_params(const float* w, int n, int bits, const uint8_t* codes,
                      const GroupWeights& h, const float* p_prev, float* params,
                      const FullBlockProducts* fb = nullptr, CodeColumnProducts* cp = nullptr);

// Fits params (B+1, fp16-representable) and codes (n) for one group. Returns r^T H r.
double hlq_fit_group(const float* w, int n, int bits, const GroupWeights& h,
                     const HlqFitOptions& opt, float* params, uint8_t* codes);

// Quantizes W (rows, cols) row-major with spec.kind == HLQ, unweighted per group.
QuantizedMatrix quantize_hlq(const float* W, int64_t rows, int64_t cols, const QuantSpec& spec,
                             const HlqFitOptions& opt = {}, ThreadPool* pool = nullptr);

}  // namespace elutq
