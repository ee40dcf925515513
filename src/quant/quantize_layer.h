// One linear layer, one call: the method names of `elutq quantize --method` mapped to the
// algorithms of this directory, with the per-layer report the pipeline prints (relative weight
// error, relative output error under the calibration Hessian, bits per weight, notes).
//   rtn        uniform RTN (clip search on)                       no calibration
//   hlq        HLQ fit (alternating or gradient; ours by default) no calibration
//   gptq       GPTQ with uniform groups                           Hessian
//   hlq-gptq   HLQ-GPTQ (paper or ours variant)                   Hessian
//   ganq       GANQ per-row codebook (group is ignored)           Hessian
//   awq        AWQ scales (searched on this layer's output error under H) + uniform RTN;
//              the caller folds 1/input_scales into the preceding norm / linear      Hessian + mean|x|
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quant/gptq.h"
#include "quant/hlq_fit.h"
#include "tensor/qformat.h"

namespace elutq {

class ThreadPool;

enum class QuantMethod { Rtn, Hlq, Gptq, HlqGptq, Ganq, Awq };

// "rtn", "hlq", "gptq", "hlq-gptq", "ganq", "awq"; throws Error listing them otherwise.
QuantMethod parse_quant_method(const std::string& name);
std::string quant_method_name(QuantMethod m);
bool method_needs_calibration(QuantMethod m);

struct LayerQuantOptions {
  QuantMethod method = QuantMethod::Hlq;
  int bits = 2;
  int group = 128;  // 0 = whole row
  HlqFitMethod fit = HlqFitMethod::Alternating;
  bool paper_fit = false;  // use the paper's fit procedure instead of ours (HlqFitOptions::paper)
  HlqGptqVariant variant = HlqGptqVariant::Ours;
  // HLQ methods: store HLQC (s_0, zero and 4-bit plane-ratio codes per group; about uniform's
  // bytes) instead of HLQ's B + 1 fp16 parameters per group.
  bool hlq_compact = false;
  bool act_order = false;
  double percdamp = 0.01;
};

// The storage format a method produces at these bits / group.
QuantSpec method_spec(const LayerQuantOptions& opt);

struct LayerQuantResult {
  QuantizedMatrix q;
  std::vector<float> input_scales;  // (cols) AWQ only: q approximates W diag(input_scales)
  double rel_weight_error = 0;      // ||W - W_hat||^2 / ||W||^2
  double rel_output_error = -1;     // tr(D H D^T) / tr(W H W^T), D = W - W_hat; -1 without H
  double bits_per_weight = 0;
  std::string log;
};

// W (rows, cols) row-major. H (cols, cols) = 2 X^T X / n, or nullptr (then only calibration-free
// methods run). mean_abs_x (cols) for AWQ. Throws Error on missing inputs or bad shapes.
LayerQuantResult quantize_layer(const float* W, int64_t rows, int64_t cols,
                                const LayerQuantOptions& opt, const std::vector<float>* H,
                                const std::vector<float>* mean_abs_x = nullptr,
                                ThreadPool* pool = nullptr);

}  // namespace elutq
