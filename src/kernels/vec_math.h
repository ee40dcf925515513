// Element-wise math written so the compiler vectorizes it (no library call per element), for the
// softmaxes of attention and of token sampling.
#pragma once

#include <cstdint>

namespace elutq {

// x[i] = e^x[i] for x[i] <= 0, within 3e-7 relative; x[i] <= -87 (and -inf) gives exactly 0.
void exp_nonpositive_inplace(float* x, int64_t n);

}  // namespace elutq
