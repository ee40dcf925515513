// E2E-QP: end-to-end training of the quantization parameters. With every code frozen, the
// per-group parameters (HLQ s_b and z; uniform scale and zero) of every quantized projection of
// every block are trained together on next-token cross-entropy over calibration text, through the
// whole model: embedding, blocks, final norm, output head (frozen, as are norms and biases).
// Memory stays bounded: the forward keeps only each block's input (checkpointing) and the
// backward recomputes one block at a time; the logits are formed a few rows at a time. A held-out
// slice of the sequences picks the best epoch, never worse than the start.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "tensor/model_source.h"
#include "tensor/quantized_tensor_sink.h"
#include "train/adamw.h"

namespace elutq {

struct E2eQpOptions {
  int epochs = 1;
  // Peak learning rate, relative: each projection's parameters get lr times their root mean
  // square at the start, so one value serves models whose scales differ tenfold (SmolLM2's
  // HLQ scales are ~0.3, Qwen2.5-1.5B's ~0.03; Adam's steps are absolute). Measured:
  // docs/RESULTS.md.
  float lr = 1e-3f;
  float weight_decay = 0.0f;
  LrSchedule schedule = LrSchedule::Cosine;
  float warmup = 0.1f;            // fraction of the steps with the lr rising linearly (0..1)
  int batch_seqs = 1;             // sequences per step
  int holdout_seqs = -1;          // < 0: a tenth (at least 1 when there are >= 2)
  uint64_t seed = 0;
  int n_threads = 0;              // <= 0: all cores
  uint64_t mem_budget = 0;        // bytes; > 0: refuse up front a run estimated to need more
};

struct E2eQpResult {
  double start_loss = 0;  // mean next-token cross-entropy (nats) on the holdout, before
                          // (without a holdout, holdout_seqs = 0: on the training sequences)
  double best_loss = 0;   // the kept parameters', same sequences
  int best_epoch = 0;     // 0: the start was kept
  std::vector<double> train_loss, holdout_loss;  // per epoch
  double seconds = 0;
  int64_t trained_params = 0;
  uint64_t estimated_bytes = 0;  // E2eQpModel::estimate_bytes for this run
};

// progress(epoch (1-based), step within it (1-based), steps per epoch, mean training loss of the
// epoch so far)
// "e2e-qp: held-out cross-entropy A -> B (kept epoch E of N), P parameters": one line for logs.
std::string e2e_qp_summary(const E2eQpResult& r, int epochs);

using E2eQpProgress = std::function<void(int epoch, int step, int steps, double loss)>;

// Reads the quantized model `quantized` (an elutq model file opened as a ModelSource), trains the
// parameters of its quantized block projections on seqs (token ids, all the same length) and
// writes every tensor to sink in model-file order, the trained projections replaced and all else
// unchanged.
E2eQpResult e2e_qp(const ModelSource& quantized, const std::vector<std::vector<int>>& seqs,
                   const E2eQpOptions& opt, QuantizedTensorSink& sink,
                   const E2eQpProgress& progress = {});

}  // namespace elutq
