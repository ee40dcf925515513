// Block-AP: block-wise training of all parameters of one quantized decoder block. After
// HLQ-GPTQ has fitted the block's projections, their latent weights and quantization parameters
// are trained so the quantized block reproduces the full-precision block: the loss is the mean
// squared error between the quantized block's output and the target (the fp block's output on the
// same inputs, which come from the already finetuned quantized blocks before it). Codes follow the
// latent weights (quantized_linear_param.h). AdamW with one learning rate for the weights and one
// for the quantization parameters, decayed over the steps; a held-out slice of the sequences picks
// the best epoch, and the result is never worse on it than the fitted start.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "tensor/model_config.h"
#include "tensor/qformat.h"
#include "tensor/tensor_names.h"
#include "train/adamw.h"

namespace elutq {

class DecoderBlock;

struct BlockApOptions {
  int epochs = 2;
  float lr_weights = 2e-5f;       // latent weights; 0 trains the parameters only
  float lr_params = 1e-4f;        // s_b and z (scale and zero)
  float weight_decay = 0.0f;
  LrSchedule schedule = LrSchedule::Cosine;
  int batch_seqs = 1;             // sequences per step
  int holdout_seqs = -1;          // sequences kept out of training to choose the best epoch;
                                  // < 0: a tenth of them (at least 1 when there are >= 2)
  uint64_t seed = 0;              // shuffling order
};

struct BlockApEpoch {
  double train_loss;    // mean over the epoch's steps (before each step's update)
  double holdout_loss;  // after the epoch; = train loss of the whole set without a holdout
};

struct BlockApResult {
  double start_loss = 0;  // on the holdout (all sequences without one), before training
  double best_loss = 0;   // the kept state's, same sequences
  int best_epoch = 0;     // 0: the start was kept
  std::vector<BlockApEpoch> epochs;
  double seconds = 0;
};

// Reads sequence i (tokens, dim) of the block's inputs or targets into x.
using SequenceReader = std::function<void(int64_t i, float* x)>;

// progress(epoch (1-based), step within it, steps per epoch, mean training loss so far)
using BlockApProgress = std::function<void(int epoch, int step, int steps, double loss)>;

// Trains q (the block's fitted projections, per LinearSlot; HLQ, HLQC or uniform) in place. block gives
// the config, norms, biases and RoPE frequencies (its projections are not used). count sequences
// of `tokens` rows each are read through inputs / targets.
BlockApResult block_ap(const DecoderBlock& block, std::array<QuantizedMatrix, kLinearSlots>& q,
                       const SequenceReader& inputs, const SequenceReader& targets, int64_t count,
                       int64_t tokens, const BlockApOptions& opt, ThreadPool& pool,
                       const BlockApProgress& progress = {});

}  // namespace elutq
