// Round-to-nearest uniform asymmetric quantization (the simplest baseline): per group
// w = zero + scale * code, code in 0..2^B-1, from the group's min and max, optionally with a search
// over shrink factors of the range that minimises the (weighted) error ("MSE clip search").
#pragma once

#include <cstdint>

#include "quant/group_fit.h"
#include "tensor/qformat.h"

namespace elutq {

struct RtnOptions {
  bool clip_search = false;  // try range shrink factors 1, 1-step, ..., clip_min
  int clip_steps = 20;       // number of shrink factors tried
  float clip_min = 0.5f;     // smallest shrink factor
};

// Nearest uniform code for each of the n weights, given params {scale, zero}.
void uniform_assign(const float* w, int n, int bits, const float* params, uint8_t* codes);

// Fits params {scale, zero} (rounded to fp16) and codes for one group of n weights.
// Returns the weighted error r^T H r after fp16 rounding. With a full block, fb (H 1 and H w of
// the same w and h) may be passed to save making them again.
double rtn_fit_group(const float* w, int n, int bits, const GroupWeights& h,
                     const RtnOptions& opt, float* params, uint8_t* codes,
                     const FullBlockProducts* fb = nullptr);

// Quantizes W (rows, cols) row-major with spec.kind == Uniform.
QuantizedMatrix quantize_rtn(const float* W, int64_t rows, int64_t cols, const QuantSpec& spec,
                             const RtnOptions& opt = {}, ThreadPool* pool = nullptr);

}  // namespace elutq
