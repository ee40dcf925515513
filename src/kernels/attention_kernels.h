// The inner loops of attention over a KV cache, on the active ISA's kernels (dispatch.h); the
// kern::*_scalar versions are the reference.
#pragma once

#include <cstdint>

namespace elutq {

// out[j] = scale * dot(q, k + j * stride) over hd dimensions, for j < count.
void attention_scores(const float* q, const float* k, int64_t stride, int64_t count, int hd,
                      float scale, float* out);
// out[d] += sum_j w[j] * v[j * stride + d] for d < hd, the rows added in order j = 0, 1, ...: one
// call over rows [0, m) then one over [m, count) gives the bits of one call over [0, count).
void attention_weighted_sum_add(const float* w, const float* v, int64_t stride, int64_t count,
                                int hd, float* out);

}  // namespace elutq
