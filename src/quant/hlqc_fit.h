// Fitting HLQC, HLQ with compact parameters (qformat.h): per group s_0 and zero in fp16 and one
// 4-bit ratio code per plane b >= 1, per matrix a codebook of 16 ratios s_b / s_0 per plane.
//
// Why: HLQ's B + 1 fp16 parameters per group cost 16 (B - 1) bits more than uniform's scale and
// zero, which a decode that streams weights from memory pays in time (4.625 vs 4.25 bits/weight at
// w4g128). The plane ratios s_b / s_0 of fitted HLQ groups cluster near 2^b, so 16 levels per plane
// (chosen per matrix by Lloyd's algorithm on log ratios) keep most of what free per-group ratios
// gain over uniform for 4 (B - 1) bits per group.
//
// How: fit each group as free HLQ (hlq_fit.h), then project it: pick each plane's nearest codebook
// ratio, refit s_0 and the midpoint m by (weighted) least squares for that fixed level shape,
// round them to fp16, reassign codes, and repeat a few times letting the ratio codes follow the codes' own least
// squares optimum; the uniform shape (ratios nearest 2^b) is always tried too.
#pragma once

#include <cstdint>
#include <vector>

#include "quant/group_fit.h"
#include "quant/hlq_fit.h"
#include "tensor/qformat.h"

namespace elutq {

class ThreadPool;

// A codebook ((B - 1) x 16 ratios, plane-major, ascending, all > 0) from free HLQ parameters of
// n_groups groups (n_groups x (B + 1), as in QuantizedMatrix::params): per plane b, Lloyd's
// algorithm on log2(s_b / s_0) over the groups where that ratio is positive and finite.
std::vector<float> hlqc_codebook_from_params(int bits, const float* params, int64_t n_groups);

// The codebook of a matrix: free HLQ fits (unweighted) of up to `sample_rows` of its rows, evenly
// spread, then hlqc_codebook_from_params.
std::vector<float> hlqc_fit_codebook(const float* W, int64_t rows, int64_t cols,
                                     const QuantSpec& spec, const HlqFitOptions& opt,
                                     ThreadPool* pool, int64_t sample_rows = 256);

// Projects a group's free HLQ parameters p_free (B + 1, zero form) onto the codebook. codes (n)
// holds the starting codes on entry and the final ones on return. Writes params (B + 1, HLQC's
// expanded form: s_0 and the midpoint m fp16 values, s_b = s_0 * ratio) and k (B - 1 ratio codes).
// Returns r^T H r. fb: the group's H 1 and H w under h's full block, if the caller has them.
double hlqc_project_group(const float* w, int n, int bits, const GroupWeights& h,
                          const float* codebook, const float* p_free, uint8_t* codes,
                          float* params, uint8_t* k, const FullBlockProducts* fb = nullptr);

// Quantizes W (rows, cols) with spec.kind == HLQC, unweighted per group (data-free).
QuantizedMatrix quantize_hlqc(const float* W, int64_t rows, int64_t cols, const QuantSpec& spec,
                              const HlqFitOptions& opt = {}, ThreadPool* pool = nullptr);

}  // namespace elutq
