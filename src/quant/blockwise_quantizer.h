// Calibrated, block-by-block model quantization (GPTQ's "true sequential" schedule):
//
//   embed the calibration tokens -> store (CalibActivations)
//   for each block l:
//     load block l's weights (fp32, from the source)
//     [AWQ] one pass collects mean|x| of every projection input and the fp block outputs on a
//           subset of sequences; per group (q/k/v, o, gate/up, down) the scales s = mean|x|^alpha
//           are searched by the block-output error with that group's weights replaced by
//           Q(W diag s) diag(1/s), and folded: q/k/v -> attn_norm, gate/up -> ffn_norm,
//           o -> v's output rows (shared per KV head group under GQA), down -> up's output rows.
//     then, group by group in the order q/k/v, o, gate/up, down: accumulate the group's input
//           Hessian H = 2 X^T X / n with the earlier groups already quantized, and quantize the
//           group's layers with it (quantize_layer). q/k/v's inputs are the normed block inputs;
//           one attention pass (quantized q/k/v) records o's inputs into a scratch store; the
//           feed-forward half is then recomputed from them (cheap, no attention) for gate/up's
//           and down's inputs and finally for the block outputs
//     [Block-AP] the fp block's outputs on the block inputs are recorded before quantizing (the
//           targets); after quantizing, the block's latent weights and parameters are trained
//           to reproduce them (train/block_ap.h)
//     hand the block's tensors to the sink, put the fully quantized block's outputs back into
//           the store (the next block's inputs), release the weights
//   the remaining tensors (output norm, output head: quantized only if asked)
//
// Without calibration (rtn / hlq and no --awq, and embed_calibration not called) no forward pass
// runs: each layer is quantized on its own, block by block, in the same output order. With
// calibration, rtn / hlq still get the Hessians, for the report's output errors.
// The tensors reach the sink in the model-file order: token_embd, blocks ascending (each block's
// tensors in source order), then the rest in source order.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "quant/calib_activations.h"
#include "quant/quant_report.h"
#include "quant/quantize_layer.h"
#include "quant/tensor_spec_rules.h"
#include "tensor/model_source.h"
#include "tensor/quantized_tensor_sink.h"
#include "train/block_ap.h"

namespace elutq {

class Model;

struct BlockwiseOptions {
  LayerQuantOptions layer;      // method awq means: AWQ scales (this file) then uniform RTN
  bool awq = false;             // AWQ scale search and folding before any method
  bool awq_clip = false;        // AWQ clip search on each layer (not q/k) before quantizing
  int awq_grid = 20;            // alpha in {0, 1/grid, ..., (grid-1)/grid}
  int64_t awq_tokens = 2048;    // calibration tokens the AWQ search evaluates (whole sequences)
  bool quantize_output = false; // also quantize output.weight (untied models only; a tied
                                // head can be untied first: model/untied_head_source.h)
  // The head's own bits / group (the paper keeps lm_head at 4 bits, g128, under a 2-bit body);
  // unset: the same as layer. Its method is always layer's.
  std::optional<int> output_bits, output_group;
  // Other bits / group for the block projections a rule matches (quant/tensor_spec_rules.h);
  // the method is layer's. AWQ's scale search trials layer's width for every projection.
  std::vector<TensorSpecRule> tensor_rules;
  int n_threads = 0;            // <= 0: all cores
  // Block-AP after each block's quantization (HLQ, HLQC or uniform formats, calibrated): the block's
  // latent weights and parameters are trained to reproduce the fp block's outputs on its inputs
  // (train/block_ap.h); the finetuned block then produces the next block's inputs.
  std::optional<BlockApOptions> block_ap;
  // Checks only: apply the AWQ folds and hand the folded fp32 weights to the sink (add_f32)
  // instead of quantizing, so a test can verify a fold keeps the model's function.
  bool fold_only = false;
  // Makes the per-block scratch store for o's inputs (count, tokens, q_dim); empty: in memory.
  // A streaming driver supplies one that spills to disk.
  std::function<std::unique_ptr<CalibActivations>(int64_t count, int64_t tokens, int64_t dim)>
      make_scratch;
};

// True if these options cannot run without calibration sequences.
bool blockwise_needs_calibration(const BlockwiseOptions& opt);

// What the block projection `name` is quantized with: layer (RTN for awq) with the first
// matching tensor rule's bits / group.
LayerQuantOptions blockwise_layer_for(const BlockwiseOptions& opt, const std::string& name);

// What output.weight is quantized with: layer's method (RTN for awq) at output_bits /
// output_group where set.
LayerQuantOptions blockwise_output_layer(const BlockwiseOptions& opt);

class BlockwiseQuantizer {
 public:
  // progress(block, n_blocks, status): status like "blk 3/30 ffn_up gptq".
  using ProgressFn = std::function<void(int block, int n_blocks, const std::string& status)>;

  // Validates the options against the model (throws Error); builds a runtime model that holds no
  // block weights yet (they are loaded one block at a time).
  BlockwiseQuantizer(const ModelSource& src, const BlockwiseOptions& opt);
  ~BlockwiseQuantizer();

  // Step 1: the embeddings of the calibration sequences (each of store.tokens() ids) into store.
  // Skipped (no calibration) when the options need none.
  void embed_calibration(const std::vector<std::vector<int>>& seqs, CalibActivations& store);

  // The steps run() takes, public so a streaming driver can interleave its own work
  // (checkpoints, resume). store may be null when no calibration is needed.
  void emit_head(QuantizedTensorSink& sink);  // token_embd (and whatever precedes block 0)
  void load_block(int l);                     // block l's weights into memory (fp32)
  void quantize_block(int l, CalibActivations* store, QuantizedTensorSink& sink);
  void release_block(int l);                  // drop block l's weights
  void emit_tail(CalibActivations* store, QuantizedTensorSink& sink);  // the rest

  // All of it: emit_head, then per block load / quantize / release and block_done(l), then
  // emit_tail. first_block > 0 resumes: store must hold block first_block's inputs, and the
  // sink must already have everything before it.
  QuantReport run(CalibActivations* store, QuantizedTensorSink& sink,
                      const std::function<void(int block)>& block_done = {}, int first_block = 0);

  // Bit allocation (quant/bit_allocation.h) instead of quantizing: with block l loaded and store
  // holding the fp model's inputs of it, the change of the block's output when one projection
  // alone is quantized at each of the choices (uniform RTN at that width stands in for every
  // method): errors[slot][choice], slots in LinearSlot order. With weight (the store's rows x
  // dim, e.g. squared loss gradients at the output) the error is sum(weight * change^2); without,
  // sum(change^2) as a fraction of the output's energy. Then store holds the fp block's outputs,
  // the next block's inputs.
  std::vector<std::vector<double>> measure_sensitivity(int l, CalibActivations& store,
                                                       const std::vector<QuantSpec>& choices,
                                                       const std::vector<float>* weight = nullptr);

  const QuantReport& report() const { return report_; }
  void set_progress(ProgressFn fn) { progress_ = std::move(fn); }
  // Replaces BlockwiseOptions::make_scratch (known only once the calibration size is).
  void set_make_scratch(
      std::function<std::unique_ptr<CalibActivations>(int64_t, int64_t, int64_t)> fn);
  Model& model();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  QuantReport report_;
  ProgressFn progress_;
};

}  // namespace elutq
