// Mixed precision at a target average bit width (`quantize --target-bpw`): which block
// projections get more bits, chosen by measurement instead of by name.
//
// 1. Sensitivity: the fp model runs a few calibration sequences block by block; in each block,
//    every projection alone is quantized at each candidate width (uniform RTN at that bits /
//    group) and the change of the block's output is measured (BlockwiseQuantizer::
//    measure_sensitivity), each element weighted by the squared gradient of the model's loss
//    with respect to it (quant/loss_gradients.h): a diagonal Fisher estimate of the loss
//    increase, comparable across blocks. (Measured relative to the output's size instead, the
//    middle blocks of SmolLM2 looked cheap and got 2 bits; docs/RESULTS.md.)
// 2. Allocation: every projection starts at its cheapest candidate; the upgrade that removes the
//    most error per extra stored bit is taken while the average stays within the target
//    (greedy over each projection's lower convex hull of (bits, error): optimal for the
//    relaxed problem, and within one upgrade of the budget).
// 3. The result is a list of tensor-spec rules (quant/tensor_spec_rules.h), one per projection,
//    which the quantizer then applies like the user's own.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "quant/blockwise_quantizer.h"
#include "tensor/model_source.h"
#include "tensor/qformat.h"

namespace elutq {

// One projection's measured errors, one per candidate width.
struct TensorSensitivity {
  std::string name;            // "blk.3.ffn_down.weight"
  int64_t rows = 0, cols = 0;
  std::vector<double> error;   // relative block-output error per candidate
};

// The candidates, "w2g128,w3g128,w4g64": bits and group of the run's kind (group 0 = a row).
// Throws Error on a malformed list or a width the kind cannot store.
std::vector<QuantSpec> parse_width_choices(const std::string& list, QuantKind kind);

// The default candidates of a run at `bits` / `group`: that width and up to two more bits at the
// same group (within the kind's limit).
std::vector<QuantSpec> default_width_choices(QuantKind kind, int bits, int group);

// For each tensor, the index of its chosen candidate, such that the average bits per weight
// (QuantSpec::bits_per_weight of each tensor's rows, weighted by its size) is at most target.
// Throws Error (saying the smallest reachable average) if even the cheapest choices exceed it.
std::vector<int> allocate_widths(const std::vector<TensorSensitivity>& tensors,
                                 const std::vector<QuantSpec>& choices, double target_bpw);

// Average bits per weight of an allocation.
double allocation_bpw(const std::vector<TensorSensitivity>& tensors,
                      const std::vector<QuantSpec>& choices, const std::vector<int>& chosen);

// The rules "^blk\.3\.ffn_down\.weight$=w3g128" that give each tensor its chosen width.
std::vector<std::string> allocation_rules(const std::vector<TensorSensitivity>& tensors,
                                          const std::vector<QuantSpec>& choices,
                                          const std::vector<int>& chosen);

// Step 1 over the whole model: the fp model's blocks run on seqs (all the same length) with
// the options' threads; progress(block, n_blocks) after each block.
std::vector<TensorSensitivity> measure_model_sensitivity(
    const ModelSource& src, const BlockwiseOptions& opt, const std::vector<std::vector<int>>& seqs,
    const std::vector<QuantSpec>& choices,
    const std::function<void(int block, int n_blocks)>& progress = {});

}  // namespace elutq
