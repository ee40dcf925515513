// One whole quantization run as a library call: what `elutq quantize` does between parsing its
// flags and printing its report. Checks the options, plans the memory (--mem-budget), gets the
// calibration sequences (cut from a text / JSONL file, or sampled from the model itself when a
// calibrated method has no file), runs the block-by-block quantizer with checkpoints so that an
// interrupted run resumes (quant/resume_driver.h), and streams the result into one model file that
// appears under out_path only once complete.
//
//   QuantizeJob job;
//   job.source_path = "model.gguf";
//   job.out_path = "out.gguf";
//   job.method = QuantMethod::HlqGptq;
//   job.bits = 2;
//   validate_quantize_job(job);                    // cheap: before the model is read
//   QuantizeResult r = run_quantize_job(job, open_model(job.source_path));
//
// Errors are thrown as Error (core/error.h) with the messages the CLI prints; they name the
// options by their CLI flags (a job field is named after its flag).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "quant/quant_report.h"
#include "quant/quantize_layer.h"
#include "tensor/model_source.h"
#include "tensor/qformat.h"
#include "train/block_ap.h"
#include "train/e2e_qp.h"

namespace elutq {

// Data-free calibration size: small so the default job runs in a few minutes on two cores.
inline constexpr int kDataFreeSamples = 8;
inline constexpr int kDataFreeSeqlen = 256;

struct QuantizeJob {
  std::string source_path;  // the model read; its identity guards resuming, its name is recorded
  std::string out_path;     // the model file written

  QuantMethod method = QuantMethod::Hlq;  // awq: AWQ scales, then RTN
  int bits = 2;                           // 1..8 (HLQ methods: 1..4)
  int group = 128;                        // weights per group along a row; 0 = whole row
  HlqFitMethod fit = HlqFitMethod::Alternating;
  HlqGptqVariant variant = HlqGptqVariant::Ours;  // Paper: also the paper's HLQ fit procedure
  bool hlq_compact = false;  // HLQ methods: hlqc parameters (scale, zero, plane-ratio codes)
  // Other bits / group for the block projections a rule matches, "PATTERN=wB[gG]", first match
  // wins (quant/tensor_spec_rules.h), e.g. {"ffn_down=w3", "attn_v=w4"}.
  std::vector<std::string> tensor_specs;
  // Mixed precision by measurement (quant/bit_allocation.h): the block projections get widths
  // from width_choices ("w2g128,w3g128"; empty: bits..bits+2 at group) so that their average bits
  // per weight, parameters included, stays within target_bpw, the widest going where the block
  // output suffers most. Measured on the first sensitivity_samples calibration sequences.
  std::optional<double> target_bpw;
  std::string width_choices;
  int sensitivity_samples = 4;
  bool act_order = false;    // GPTQ: columns by decreasing Hessian diagonal
  double percdamp = 0.01;    // GPTQ / GANQ damping, fraction of the mean Hessian diagonal

  bool awq = false;  // AWQ scale search and folding before the method
  bool awq_clip = false;
  int awq_grid = 20;
  int64_t awq_tokens = 2048;

  // The output head is quantized when quantize_output is set or either head option is given (a
  // tied head gets its own quantized copy); unset head options follow bits / group.
  bool quantize_output = false;
  std::optional<int> output_bits, output_group;

  // Calibration: a file, or none (calibrated methods then sample from the model). Unset sizes
  // default to 128 x 2048 with a file, kDataFreeSamples x kDataFreeSeqlen without.
  std::string calib_path;
  bool calib_jsonl = false;  // read calib_path as JSONL whatever its name
  std::optional<int> nsamples, seqlen;
  uint64_t seed = 0;

  // A byte size as the CLI takes it ("600M", "2G", "1073741824"); empty: unlimited. Calibration
  // activations beyond their share spill to scratch_dir (default: beside out_path).
  std::string mem_budget;
  std::string scratch_dir;
  bool restart = false;  // discard an interrupted run's work directory instead of resuming it
  int n_threads = 0;     // 0: all cores

  // HLQ-Finetuning (`--method hlq-ft` = hlq-gptq with both stages; `--ft-stages`): Block-AP
  // after each block's quantization, then E2E-QP over the whole model on the first e2e_nsamples
  // calibration sequences (all if unset). HLQ (not compact) or uniform formats. With E2E-QP the
  // Block-AP result is kept as OUT.stage1.gguf (and its manifest) until E2E-QP has written OUT, so
  // an interrupted E2E-QP resumes from it.
  std::optional<BlockApOptions> block_ap;
  std::optional<E2eQpOptions> e2e_qp;
  std::optional<int> e2e_nsamples;
  // With E2E-QP: keep Block-AP's result (the stage-1 file) under this name instead of deleting it.
  std::string keep_stage1_path;
};

// What a running job tells its caller; every member may be left empty.
struct QuantizeCallbacks {
  // A notice or decision worth a line on a console ("calibration: ...", "memory: ...").
  std::function<void(const std::string& line)> log;
  // A long stage: "sampling" (data-free calibration, in tokens) or "quantize" (in blocks). Every
  // begin is followed by updates and one end, unless an error ends the job.
  std::function<void(const std::string& stage, int64_t total)> stage_begin;
  std::function<void(int64_t done, const std::string& status)> stage_update;
  std::function<void()> stage_end;
};

struct QuantizeResult {
  QuantReport report;  // per layer, replayed blocks of a resumed run included
  QuantSpec spec;      // the format of the decoder layers
  uint64_t file_bytes = 0;
  double bits_per_weight = 0;         // over the quantized layers, parameters included
  double mean_rel_weight_error = 0;   // 0 when no layer was quantized
  double mean_rel_output_error = -1;  // -1 when no layer had calibration inputs
};

// Throws Error on the first option that is out of range or inconsistent, or on paths that cannot
// work (a missing calibration file, out_path a folder or the source itself). Needs no model.
void validate_quantize_job(const QuantizeJob& job);

// Runs the job on the opened source (whose path is job.source_path); validates it first.
QuantizeResult run_quantize_job(const QuantizeJob& job, std::unique_ptr<ModelSource> source,
                                const QuantizeCallbacks& callbacks = {});

}  // namespace elutq
