// GPTQ (Frantar et al.): quantize a linear layer column by column, pushing each column's rounding
// error onto the columns not yet quantized through the inverse Hessian, in lazy blocks.
//
// W is (rows = out, cols = in) row-major; H is the (cols, cols) Hessian 2 X^T X / n (hessian.h).
// Group parameters are fitted when the sweep reaches the start of a group, on the error-updated
// weights, by the format's fitter:
//   Uniform          RTN min-max (optionally clip-searched): the GPTQ baseline.
//   HLQ, Paper       HLQ-GPTQ as the ELUTQ paper: fit the group's HLQ params (alternating or
//                    gradient, HlqFitOptions) on the updated weights, then quantize the group column
//                    by column with them, propagating the error.
//   HLQ, Ours        also compensates inside the group: fit, sweep the group with error feedback,
//                    refit (s, z) by least squares given the codes under the group's effective
//                    Hessian (U_gg^T U_gg)^{-1} (the exact cost of the group once later columns
//                    compensate), sweep again; `refit_rounds` times, keeping per row the round of
//                    least cost (round 0 is the paper variant with the same fit).
// act_order processes columns by decreasing H diagonal; with groups it uses static groups (as the
// reference GPTQ's static_groups: every group's params fitted on the original weights before the
// sweep), so a group's params never depend on the permutation; Ours then skips its in-group refit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quant/hlq_fit.h"
#include "quant/rtn.h"
#include "tensor/qformat.h"

namespace elutq {

class ThreadPool;

enum class HlqGptqVariant { Paper, Ours };
// Importance used by the HLQ fit at a group start: none (the paper), the Hessian diagonal, or the
// group's effective Hessian block.
enum class GroupFitWeight { None, HessianDiag, HessianBlock };

struct GptqOptions {
  double percdamp = 0.01;  // damping, fraction of the mean Hessian diagonal
  int block = 128;         // lazy-update block (adjusted to align with groups)
  bool act_order = false;
  RtnOptions rtn;          // Uniform groups
  HlqGptqVariant variant = HlqGptqVariant::Paper;  // HLQ groups
  HlqFitOptions fit;
  GroupFitWeight fit_weight = GroupFitWeight::None;
  int refit_rounds = 3;    // Ours: sweep + least-squares refit rounds after the first sweep
};

struct GptqResult {
  QuantizedMatrix q;
  std::string log;         // damping retries and other notes; the library never prints
  // Sum of the squared GPTQ column errors. By the OBS identity this equals
  // trace((W' - Q) H_damped (W' - Q)^T), the layer's output error under the damped Hessian, where
  // H_damped = H + damp I with each dead input's diagonal (always-zero input: its row and column
  // of H are zero) first set to 1, and W' is W with the dead inputs' columns zeroed.
  double proxy_loss = 0;
  double damp = 0;
  std::vector<uint8_t> dead;  // (cols) 1 for a dead input, in W's column order
};

GptqResult gptq_quantize(const float* W, int64_t rows, int64_t cols, const std::vector<float>& H,
                         const QuantSpec& spec, const GptqOptions& opt = {},
                         ThreadPool* pool = nullptr);

}  // namespace elutq
