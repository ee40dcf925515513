// Runs a BlockwiseQuantizer so that an interrupted run can be resumed: each finished block's
// output tensors (and the activations after it) are checkpointed in OUT.elutq-work/ (quant/
// resume.h); a restart with the same manifest replays the finished blocks' tensors into the sink
// from their checkpoints, reloads the activations and continues with the next block, so the sink
// receives exactly the same tensors in the same order as in an uninterrupted run.
//
// The caller builds the quantizer, the activation store and the sink (the model-file writer),
// calls embed_calibration when calibrating (it also builds the runtime model; its embeddings are
// replaced by the checkpointed activations on resume), then run_resumable. finish_output()
// (e.g. the writer's finish()) runs before the work directory is removed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "quant/blockwise_quantizer.h"
#include "quant/resume.h"

namespace elutq {

class ActivationStore;

struct ResumableRunOptions {
  std::string out_path;  // the output file; the work directory is out_path + ".elutq-work"
  RunManifest manifest;  // everything that affects the output (see resume.h)
  bool restart = false;  // discard an existing work directory instead of resuming it
  // Called with the number of finished blocks found when a run resumes.
  std::function<void(int finished_blocks)> on_resume;
  // Called after block l's checkpoint is on disk (tests throw from it to simulate a crash).
  std::function<void(int block)> after_checkpoint;
};

// store: the calibration activations (null without calibration). Returns the full report: the
// replayed blocks' lines (from their checkpoints) followed by this run's.
QuantReport run_resumable(BlockwiseQuantizer& q, const ModelSource& src,
                              ActivationStore* store, QuantizedTensorSink& sink,
                              const ResumableRunOptions& opt,
                              const std::function<void()>& finish_output);

// Report lines as text, one layer a line (tab-separated, escaped), and back; lines of another
// shape are skipped. Checkpoints keep their blocks' lines this way, and a finished stage 1 of
// HLQ-Finetuning keeps its whole report beside its file.
std::string report_lines_text(const std::vector<LayerReport>& lines);
std::vector<LayerReport> parse_report_lines(const std::string& text);

}  // namespace elutq
