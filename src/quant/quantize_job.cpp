// One whole quantization run (see quantize_job.h).
#include "quant/quantize_job.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/memory_usage.h"
#include "core/thread_pool.h"
#include "format/gguf_model.h"
#include "format/quantized_model_writer.h"
#include "model/model.h"
#include "model/untied_head_source.h"
#include "quant/activation_store.h"
#include "quant/bit_allocation.h"
#include "quant/blockwise_quantizer.h"
#include "quant/calib_data.h"
#include "quant/resume.h"
#include "quant/resume_checkpoint.h"
#include "quant/resume_driver.h"
#include "tensor/tensor_names.h"
#include "tokenizer/tokenizer.h"
#include "train/e2e_qp_model.h"
#include "train/quantized_linear_param.h"

namespace elutq {
namespace {

namespace fs = std::filesystem;

const char* fit_name(HlqFitMethod f) {
  return f == HlqFitMethod::Gradient ? "gradient" : "alternating";
}
const char* variant_name(HlqGptqVariant v) { return v == HlqGptqVariant::Paper ? "paper" : "ours"; }

[[gnu::format(printf, 1, 2)]] std::string format_line(const char* format, ...) {
  va_list args, again;
  va_start(args, format);
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, format, args);
  va_end(args);
  std::string line(size_t(std::max(n, 0)) + 1, '\0');
  std::vsnprintf(line.data(), line.size(), format, again);
  va_end(again);
  line.pop_back();
  return line;
}

// The callbacks, each doing nothing where it is empty.
class Reporter {
 public:
  explicit Reporter(const QuantizeCallbacks& cb) : cb_(cb) {}
  void log(const std::string& line) const {
    if (cb_.log) cb_.log(line);
  }
  void begin(const std::string& stage, int64_t total) const {
    if (cb_.stage_begin) cb_.stage_begin(stage, total);
  }
  void update(int64_t done, const std::string& status = "") const {
    if (cb_.stage_update) cb_.stage_update(done, status);
  }
  void end() const {
    if (cb_.stage_end) cb_.stage_end();
  }

 private:
  const QuantizeCallbacks& cb_;
};

bool quantizes_output(const QuantizeJob& job) {
  return job.quantize_output || job.output_bits || job.output_group;
}

BlockwiseOptions blockwise_options(const QuantizeJob& job) {
  BlockwiseOptions opt;
  opt.layer.method = job.method;
  opt.layer.bits = job.bits;
  opt.layer.group = job.group;
  opt.layer.fit = job.fit;
  opt.layer.variant = job.variant;
  opt.layer.paper_fit = job.variant == HlqGptqVariant::Paper;
  opt.layer.act_order = job.act_order;
  opt.layer.hlq_compact = job.hlq_compact;
  opt.layer.percdamp = job.percdamp;
  opt.awq = job.awq;
  opt.awq_clip = job.awq_clip;
  opt.awq_grid = job.awq_grid;
  opt.awq_tokens = job.awq_tokens;
  opt.quantize_output = quantizes_output(job);
  opt.output_bits = job.output_bits;
  opt.output_group = job.output_group;
  opt.n_threads = job.n_threads;
  opt.block_ap = job.block_ap;
  for (const std::string& r : job.tensor_specs) opt.tensor_rules.push_back(parse_tensor_spec_rule(r));
  return opt;
}

bool finetunes(const QuantizeJob& job) { return job.block_ap || job.e2e_qp; }

// The stage-1 file of a job with E2E-QP (what Block-AP produced), and its manifest beside it.
std::string stage1_path(const QuantizeJob& job) { return job.out_path + ".stage1.gguf"; }
std::string stage1_manifest_path(const QuantizeJob& job) { return stage1_path(job) + ".manifest"; }
// Its quantization report (layer lines), so that a run resumed at E2E-QP reports the whole file.
std::string stage1_report_path(const QuantizeJob& job) { return stage1_path(job) + ".report"; }
// --target-bpw's measured rules, kept until the job finishes so that a resumed run (in any stage)
// does not measure again: on a 1.5B model that takes about a minute per block.
std::string allocation_path(const QuantizeJob& job) { return job.out_path + ".allocation.txt"; }

// A job started over (--restart) leaves nothing of the interrupted one behind: neither work
// directory (with E2E-QP the blockwise stage writes the stage-1 file, and works beside it).
void discard_interrupted_run(const QuantizeJob& job) {
  ResumeDir::discard(job.out_path);
  ResumeDir::discard(stage1_path(job));
  std::error_code ec;
  for (const std::string& p : {stage1_path(job), stage1_manifest_path(job),
                               stage1_report_path(job), allocation_path(job)})
    fs::remove(p, ec);
}


// The decoder layers' format: method awq stores uniform RTN codes.
QuantSpec body_spec(const BlockwiseOptions& opt) {
  LayerQuantOptions l = opt.layer;
  if (l.method == QuantMethod::Awq) l.method = QuantMethod::Rtn;
  return method_spec(l);
}

// The memory budget in bytes; 0: unlimited.
uint64_t memory_budget(const QuantizeJob& job) {
  if (job.mem_budget.empty()) return 0;
  const uint64_t budget = parse_byte_size(job.mem_budget);
  require(budget > 0, "--mem-budget must be positive, got '", job.mem_budget, "'");
  return budget;
}

// Rough peak bytes the block-by-block quantizer itself needs for one block (fp32 weights and their
// quantized copies, the largest Hessian, KV cache and forward scratch for seqlen tokens), to split
// a memory budget between it and the calibration activations.
uint64_t estimate_block_working_bytes(const ModelConfig& c, int64_t seqlen,
                                      const std::optional<BlockApOptions>& block_ap) {
  const uint64_t dim = uint64_t(c.dim), hd = uint64_t(c.head_dim), hidden = uint64_t(c.hidden_dim),
                 q_dim = uint64_t(c.n_heads) * hd, kv_dim = uint64_t(c.n_kv_heads) * hd,
                 T = uint64_t(std::max<int64_t>(seqlen, 1));
  const uint64_t block_params = uint64_t(block_weight_count(c));
  const uint64_t weights = 2 * block_params * 4;  // fp32 weights + their dequantized copies
  const uint64_t widest = std::max({dim, q_dim, hidden});
  const uint64_t hessian =
      widest * widest * (8 + 4 + 4 + 4);         // double sums, H, its factor, scratch
  const uint64_t kv_cache = 2 * T * kv_dim * 4;  // the loaded block only (lazy model)
  const uint64_t scratch = T * (4 * dim + 2 * q_dim + 2 * kv_dim + 2 * hidden) * 4;
  uint64_t training = 0;
  if (block_ap) {
    // Per weight: effective and latent copies, codes, latent and weight gradients, AdamW's two
    // moments and the best epoch's latent copy (29 bytes); the tape of one step.
    const uint64_t tokens = T * uint64_t(block_ap->batch_seqs);
    training = 29 * block_params +
               tokens * (6 * dim + 3 * q_dim + 4 * kv_dim + 3 * hidden + uint64_t(c.n_heads)) * 4;
  }
  return weights + hessian + kv_cache + scratch + training;
}

// E2E-QP's memory is checked before the first stage runs, not hours later when it starts.
void check_e2e_budget(const QuantizeJob& job, const ModelSource& src, int seqlen, uint64_t budget,
                      const Reporter& out) {
  const int batch = job.e2e_qp->batch_seqs;
  const BlockwiseOptions opt = blockwise_options(job);
  // The embedding and head are copied to the file as stored, so the source's are what E2E-QP maps.
  const uint64_t need = E2eQpModel::estimate_bytes(
      src,
      [&](int l, LinearSlot s) {
        return method_spec(blockwise_layer_for(opt, linear_weight_name(l, s)));
      },
      int64_t(seqlen - 1) * batch, job.n_threads > 0 ? job.n_threads : hardware_threads());
  require(need <= budget, "E2E-QP would need about ", format_byte_size(need), " for batches of ",
          batch, " x ", seqlen, " tokens, over --mem-budget ", format_byte_size(budget),
          ": lower --e2e-batch or --seqlen, or raise --mem-budget");
  out.log(format_line("memory: E2E-QP stage ~%s", format_byte_size(need).c_str()));
}

// Everything that affects the output, so that a resumed run is refused if any of it changed.
RunManifest run_manifest(const QuantizeJob& job, const QuantSpec& spec,
                         const QuantSpec& head_spec) {
  RunManifest m;
  m.set("format", "elutq-quantize-1");
  m.set("source", file_identity(job.source_path));
  m.set("method", quant_method_name(job.method));
  m.set("spec", spec.name());
  m.set("fit", fit_name(job.fit));
  m.set("variant", variant_name(job.variant));
  m.set("act_order", job.act_order ? "1" : "0");
  m.set("percdamp", std::to_string(job.percdamp));
  m.set("awq", job.awq ? "1" : "0");
  m.set("awq_clip", job.awq_clip ? "1" : "0");
  m.set("awq_grid", std::to_string(job.awq_grid));
  m.set("awq_tokens", std::to_string(job.awq_tokens));
  m.set("quantize_output", quantizes_output(job) ? "1" : "0");
  if (!job.tensor_specs.empty())
    m.set("tensor_specs", tensor_spec_rules_text(blockwise_options(job).tensor_rules));
  if (job.target_bpw) m.set("target_bpw", format_line("%.9g", *job.target_bpw));
  if (quantizes_output(job)) m.set("output_spec", head_spec.name());
  if (const auto& b = job.block_ap) {
    char v[256];
    std::snprintf(v, sizeof v, "epochs=%d lr_w=%.9g lr_p=%.9g wd=%.9g %s batch=%d holdout=%d seed=%llu",
                  b->epochs, b->lr_weights, b->lr_params, b->weight_decay,
                  lr_schedule_name(b->schedule), b->batch_seqs, b->holdout_seqs,
                  static_cast<unsigned long long>(b->seed));
    m.set("block_ap", v);
  }
  return m;
}

// Data-free calibration: sequences sampled from the model itself at temperature 1.
std::vector<std::vector<int>> sample_from_model(const ModelSource& src, const Tokenizer& tok,
                                                const CalibDataOptions& co, uint64_t budget,
                                                int n_threads, const Reporter& out) {
  const ModelConfig& cfg = src.config();
  // A KV cache for the sequences side by side (each step then reads the weights once for all of
  // them), up to 2 GiB (a quarter of --mem-budget): all 8 x 256 default sequences of a 7B model
  // (1 MiB per position), every sequence of small models. Under --mem-budget the model is lazy
  // and each step streams the blocks' weights through memory one at a time.
  const int64_t kv_per_pos = int64_t(cfg.n_layers) * 2 * cfg.n_kv_heads * cfg.head_dim * 4;
  const int64_t kv_cap = budget > 0 ? int64_t(budget / 4) : int64_t(2) << 30;
  const int64_t side_by_side = std::max<int64_t>(1, kv_cap / kv_per_pos / co.seqlen);
  // fp32 weights of the eager model: blocks, embedding, and a head unless tied.
  const int64_t per_block = block_weight_count(cfg);
  const uint64_t fp32_bytes =
      4 * uint64_t(per_block * cfg.n_layers +
                   int64_t(cfg.vocab_size) * cfg.dim * (cfg.tied_embeddings ? 1 : 2));
  const uint64_t available = available_memory_bytes();
  ModelOptions mo;
  mo.n_threads = n_threads;
  mo.max_ctx = co.seqlen * int(std::min<int64_t>(co.nsamples, side_by_side));
  mo.lazy_blocks = sampling_streams_blocks(fp32_bytes, budget, available);
  Model full(src, mo);
  if (mo.lazy_blocks) {
    // Blocks that fit half the memory at hand stay loaded; only the rest stream.
    const int kept = sampling_blocks_kept(
        (budget > 0 ? budget : available) / 2, uint64_t(kv_per_pos) * mo.max_ctx,
        4 * uint64_t(cfg.vocab_size) * cfg.dim, 4 * uint64_t(per_block), cfg.n_layers);
    for (int l = 0; l < kept; ++l) full.load_block(l);
    const std::string why = budget > 0 ? "--mem-budget given"
                                       : "the fp32 model would not fit the " +
                                             format_byte_size(available) + " available";
    out.log(format_line(
        "sampling: %s, so %d of %d blocks stay loaded and the others stream from the source "
        "every step (slower than holding the %s fp32 model)",
        why.c_str(), kept, cfg.n_layers, format_byte_size(fp32_bytes).c_str()));
  }
  out.begin("sampling", int64_t(co.nsamples) * (co.seqlen - 1));
  std::vector<std::vector<int>> seqs =
      calibration_from_model(full, tok.bos_id(), co, [&](int64_t done) { out.update(done); });
  out.end();
  return seqs;
}

// Gets the calibration sequences (from the file, or sampled from the model), records them in the
// file's metadata and the run manifest, and embeds them into the activation store it returns
// (spilling to the scratch folder beyond the activations' share of the budget).
std::unique_ptr<ActivationStore> calibrate(const QuantizeJob& job, const ModelSource& src,
                                           uint64_t budget, BlockwiseQuantizer& bq,
                                           QuantizedFilePlan& plan, RunManifest& manifest,
                                           const Reporter& out,
                                           std::vector<std::vector<int>>* seqs_out) {
  const ModelConfig& cfg = src.config();
  const bool data_free = job.calib_path.empty();
  CalibDataOptions co;
  co.seed = job.seed;
  co.nsamples = job.nsamples.value_or(data_free ? kDataFreeSamples : 128);
  co.seqlen = job.seqlen.value_or(data_free ? kDataFreeSeqlen : 2048);
  if (co.seqlen > cfg.max_seq_len) {
    out.log(format_line("note: --seqlen %d exceeds the model's context %d; using %d", co.seqlen,
                        cfg.max_seq_len, cfg.max_seq_len));
    co.seqlen = cfg.max_seq_len;
  }
  if (job.e2e_qp && budget > 0) check_e2e_budget(job, src, co.seqlen, budget, out);
  // The budget is shared: the block being quantized needs its working set, the activations
  // (and the per-block scratch of o's inputs) get the rest and spill to disk beyond it.
  uint64_t act_budget = UINT64_MAX;
  const uint64_t act_bytes = uint64_t(co.nsamples) * co.seqlen * cfg.dim * 4;
  if (budget > 0) {
    const uint64_t work = estimate_block_working_bytes(cfg, co.seqlen, job.block_ap);
    // Three stores share the rest: the block inputs, o's inputs (scratch) and either down's inputs
    // (scratch, while down is quantized) or, with Block-AP, the fp targets.
    act_budget = budget > work ? (budget - work) / 3 : 0;
    out.log(format_line("memory: budget %s, block working set ~%s, activations %s (%s)",
                        format_byte_size(budget).c_str(), format_byte_size(work).c_str(),
                        format_byte_size(act_bytes).c_str(),
                        act_bytes > act_budget ? "spilled to disk" : "in memory"));
  }
  const Tokenizer tok(src.tokenizer());
  std::vector<std::vector<int>> seqs;
  if (!data_free) {
    out.log(format_line("calibration: %d x %d tokens from %s (seed %llu)", co.nsamples, co.seqlen,
                        job.calib_path.c_str(), static_cast<unsigned long long>(job.seed)));
    seqs = calibration_from_file(job.calib_path, job.calib_jsonl, tok, co);
    plan.extra.push_back({"calibration.source", fs::path(job.calib_path).filename().string()});
  } else {
    out.log(
        format_line("calibration: no --calib given; sampling %d x %d tokens from the model "
                    "(temperature 1, seed %llu)",
                    co.nsamples, co.seqlen, static_cast<unsigned long long>(job.seed)));
    seqs = sample_from_model(src, tok, co, budget, job.n_threads, out);
    plan.extra.push_back({"calibration.source", "sampled from the model (data-free)"});
  }
  plan.extra.push_back({"calibration.sequences", std::to_string(co.nsamples)});
  plan.extra.push_back({"calibration.seqlen", std::to_string(co.seqlen)});
  plan.extra.push_back({"calibration.seed", std::to_string(job.seed)});
  manifest.set("calibration", data_free ? "data-free" : file_identity(job.calib_path));
  manifest.set("nsamples", std::to_string(co.nsamples));
  manifest.set("seqlen", std::to_string(co.seqlen));
  manifest.set("seed", std::to_string(job.seed));
  std::string scratch_dir = job.scratch_dir;
  if (scratch_dir.empty()) {
    const fs::path parent = fs::path(job.out_path).parent_path();
    scratch_dir = (parent.empty() ? fs::path(".") : parent).string();
  }
  auto store =
      std::make_unique<ActivationStore>(co.nsamples, co.seqlen, cfg.dim, act_budget, scratch_dir);
  bq.set_make_scratch([act_budget, scratch_dir](int64_t n, int64_t t, int64_t d) {
    return std::unique_ptr<CalibActivations>(
        std::make_unique<ActivationStore>(n, t, d, act_budget, scratch_dir));
  });
  bq.embed_calibration(seqs, *store);
  if (seqs_out) *seqs_out = std::move(seqs);
  return store;
}

// The report's means over its layers.
void summarize(QuantizeResult& r) {
  const QuantReport& rep = r.report;
  r.bits_per_weight = rep.quantized_weights ? rep.quantized_bits / rep.quantized_weights : 0;
  double sum_w = 0, sum_o = 0;
  int n_o = 0;
  for (const LayerReport& l : rep.layers) {
    sum_w += l.rel_weight_error;
    if (l.rel_output_error >= 0) sum_o += l.rel_output_error, ++n_o;
  }
  if (!rep.layers.empty()) r.mean_rel_weight_error = sum_w / double(rep.layers.size());
  if (n_o) r.mean_rel_output_error = sum_o / n_o;
}

QuantReport run_blockwise(const QuantizeJob& job, const ModelSource& src, BlockwiseQuantizer& bq,
                          ActivationStore* store, const QuantizedFilePlan& plan,
                          const RunManifest& manifest, const std::string& out_path,
                          const Reporter& out);
void run_e2e_stage(const QuantizeJob& job, const QuantizedFilePlan& plan,
                   const std::vector<std::vector<int>>& calib, QuantReport& report,
                   const Reporter& out);
QuantizeResult run_planned_job(const QuantizeJob& job, std::unique_ptr<ModelSource> source,
                               const Reporter& out);
std::vector<std::string> plan_target_bpw(const QuantizeJob& job, const ModelSource& src,
                                         const Reporter& out);
std::optional<std::vector<std::string>> read_saved_allocation(const QuantizeJob& job,
                                                              const std::string& header);

}  // namespace

void validate_quantize_job(const QuantizeJob& job) {
  const BlockwiseOptions opt = blockwise_options(job);
  require(job.bits >= 1 && job.bits <= 8, "--bits must be between 1 and 8, got ", job.bits);
  require(job.bits <= 4 || (job.method != QuantMethod::Hlq && job.method != QuantMethod::HlqGptq),
          "--bits ", job.bits, ": ", quant_method_name(job.method),
          " stores 1 to 4 bit-planes; use --bits 1..4");
  require(job.group >= 0, "--group must be 0 (whole row) or a positive group size, got ",
          job.group);
  require(!job.output_bits || (*job.output_bits >= 1 && *job.output_bits <= 8),
          "--output-bits must be between 1 and 8, got ", job.output_bits.value_or(0));
  require(!job.output_group || *job.output_group >= 0,
          "--output-group must be 0 (whole row) or a positive group size, got ",
          job.output_group.value_or(0));
  require(job.percdamp >= 0 && job.percdamp < 1, "--percdamp must be in [0, 1), got ",
          job.percdamp);
  require(job.awq_grid >= 1, "--awq-grid must be at least 1, got ", job.awq_grid);
  require(job.awq_tokens >= 1, "--awq-tokens must be at least 1, got ", job.awq_tokens);
  checked_thread_count(job.n_threads);  // before any work: 100000 would start that many threads
  require(!job.nsamples || *job.nsamples > 0, "--nsamples must be positive, got ",
          job.nsamples.value_or(0));
  require(!job.seqlen || *job.seqlen >= 2, "--seqlen must be at least 2, got ",
          job.seqlen.value_or(0));
  require(!job.awq_clip || job.awq || job.method == QuantMethod::Awq,
          "--awq-clip needs AWQ (--method awq or --awq)");
  require(job.calib_path.empty() || fs::is_regular_file(job.calib_path), "--calib: cannot read '",
          job.calib_path, "'");
  memory_budget(job);
  const std::string& out = job.out_path;
  check_output_path(out, "OUT");
  std::error_code ec;
  require(!fs::exists(out) || !fs::equivalent(fs::path(job.source_path), fs::path(out), ec),
          "OUT must differ from IN");
  const QuantSpec spec = body_spec(opt);
  method_spec(blockwise_output_layer(opt));
  if (finetunes(job)) {
    require(trainable_format(spec),
            "finetuning (--method hlq-ft / --ft-stages) trains HLQ, HLQC or uniform parameters, "
            "not ", spec.name());
  }
  if (const auto& b = job.block_ap) {
    require(b->epochs >= 0, "--ft-epochs must be >= 0, got ", b->epochs);
    require(b->lr_weights >= 0 && b->lr_params >= 0, "--ft-lr-weights and --ft-lr-params must be >= 0");
    require(b->weight_decay >= 0, "--ft-weight-decay must be >= 0");
    require(b->batch_seqs >= 1, "--ft-batch must be at least 1, got ", b->batch_seqs);
  }
  if (const auto& e = job.e2e_qp) {
    require(e->epochs >= 0, "--e2e-epochs must be >= 0, got ", e->epochs);
    require(e->lr >= 0, "--e2e-lr must be >= 0");
    require(e->batch_seqs >= 1, "--e2e-batch must be at least 1, got ", e->batch_seqs);
  }
  if (job.target_bpw) {
    require(*job.target_bpw > 0 && *job.target_bpw <= 32, "--target-bpw must be in (0, 32], got ",
            *job.target_bpw);
    require(job.tensor_specs.empty(),
            "--target-bpw chooses every projection's width itself; drop --tensor-spec");
    require(job.sensitivity_samples >= 1, "--sensitivity-samples must be at least 1, got ",
            job.sensitivity_samples);
    if (!job.width_choices.empty()) parse_width_choices(job.width_choices, spec.kind);
  }
  require(job.keep_stage1_path.empty() || job.e2e_qp,
          "--ft-keep-stage1 keeps Block-AP's file before E2E-QP: it needs the e2e stage");
  require(!job.e2e_nsamples || *job.e2e_nsamples >= 1, "--e2e-nsamples must be positive, got ",
          job.e2e_nsamples.value_or(0));
}

QuantizeResult run_quantize_job(const QuantizeJob& job, std::unique_ptr<ModelSource> source,
                                const QuantizeCallbacks& callbacks) {
  validate_quantize_job(job);
  require(source != nullptr, "quantize: no source model");
  if (!job.target_bpw) return run_planned_job(job, std::move(source), Reporter(callbacks));
  // The measured allocation becomes tensor-spec rules; the run records them in its manifest,
  // and a resumed run measures again (deterministic: the same rules) to check that it matches.
  QuantizeJob planned = job;
  if (job.restart) {
    discard_interrupted_run(job);
    planned.restart = false;
  }
  planned.tensor_specs = plan_target_bpw(planned, *source, Reporter(callbacks));
  QuantizeResult result = run_planned_job(planned, std::move(source), Reporter(callbacks));
  std::error_code ec;
  fs::remove(allocation_path(job), ec);
  return result;
}

namespace {

QuantizeResult run_planned_job(const QuantizeJob& job, std::unique_ptr<ModelSource> source,
                               const Reporter& out) {
  BlockwiseOptions opt = blockwise_options(job);
  const uint64_t budget = memory_budget(job);
  const QuantSpec spec = body_spec(opt);
  const QuantSpec head_spec = method_spec(blockwise_output_layer(opt));
  std::unique_ptr<ModelSource> src = std::move(source);
  // A tied head gets its own tensor in the output file (a quantized copy of the embedding).
  if (opt.quantize_output && src->config().tied_embeddings) src = untie_output_head(std::move(src));
  BlockwiseQuantizer bq(*src, opt);  // checks the options against the model

  QuantizedFilePlan plan = plan_quantized_file(*src, spec, opt.quantize_output);
  for (auto& [name, s] : plan.quantized)
    if (block_index(name) >= 0) s = method_spec(blockwise_layer_for(opt, name));
  if (opt.quantize_output) plan.quantized[kOutputName] = head_spec;
  plan.method =
      quant_method_name(job.method) + (job.awq && job.method != QuantMethod::Awq ? "+awq" : "") +
      (job.block_ap ? "+block-ap" : "");
  if (spec.is_hlq()) plan.fit = std::string(fit_name(job.fit)) + "/" + variant_name(job.variant);
  plan.source_name = fs::path(job.source_path).filename().string();
  RunManifest manifest = run_manifest(job, spec, head_spec);

  // With E2E-QP the blockwise result goes to a stage-1 file first; a finished one with the same
  // manifest is reused (an interrupted E2E-QP resumes there).
  const std::string blockwise_out = job.e2e_qp ? stage1_path(job) : job.out_path;
  std::unique_ptr<ActivationStore> store;
  std::vector<std::vector<int>> seqs;
  if (blockwise_needs_calibration(opt) || !job.calib_path.empty() || job.e2e_qp)
    store = calibrate(job, *src, budget, bq, plan, manifest, out, &seqs);
  QuantizeResult result;
  result.spec = spec;
  if (job.restart) discard_interrupted_run(job);
  const bool stage1_done = job.e2e_qp && fs::is_regular_file(stage1_path(job)) &&
                           fs::is_regular_file(stage1_manifest_path(job)) &&
                           read_whole_file(stage1_manifest_path(job)) == manifest.text();
  if (stage1_done) {
    out.log("resuming: Block-AP's result " + stage1_path(job) +
            " is complete; going on with E2E-QP");
    // Its layers' lines as stage 1 reported them (none from a stage 1 written before they were
    // kept: the summary then counts no layers).
    std::error_code ec;
    if (fs::is_regular_file(stage1_report_path(job), ec))
      for (LayerReport& l : parse_report_lines(read_whole_file(stage1_report_path(job)))) {
        result.report.add_totals(l);
        result.report.layers.push_back(std::move(l));
      }
  } else {
    result.report = run_blockwise(job, *src, bq, store.get(), plan, manifest, blockwise_out, out);
    if (job.e2e_qp) {  // the report first: the manifest marks the stage as complete
      write_file_atomic(stage1_report_path(job), report_lines_text(result.report.layers));
      write_file_atomic(stage1_manifest_path(job), manifest.text());
    }
  }
  store.reset();
  if (job.e2e_qp) {
    run_e2e_stage(job, plan, seqs, result.report, out);
    if (!job.keep_stage1_path.empty())
      fs::rename(stage1_path(job), job.keep_stage1_path);
    else
      fs::remove(stage1_path(job));
    fs::remove(stage1_manifest_path(job));
    fs::remove(stage1_report_path(job));
  }
  result.file_bytes = fs::file_size(job.out_path);
  summarize(result);
  return result;
}

std::vector<std::string> plan_target_bpw(const QuantizeJob& job, const ModelSource& src,
                                         const Reporter& out) {
  const BlockwiseOptions opt = blockwise_options(job);
  const QuantKind kind = body_spec(opt).kind;
  const std::vector<QuantSpec> choices = job.width_choices.empty()
                                             ? default_width_choices(kind, job.bits, job.group)
                                             : parse_width_choices(job.width_choices, kind);
  require(choices.size() >= 2, "--target-bpw needs at least two widths; give --width-choices");
  const ModelConfig& cfg = src.config();
  const bool data_free = job.calib_path.empty();
  CalibDataOptions co;
  co.seed = job.seed;
  co.nsamples = std::min(job.sensitivity_samples,
                         job.nsamples.value_or(data_free ? kDataFreeSamples : 128));
  co.seqlen = std::min(job.seqlen.value_or(data_free ? kDataFreeSeqlen : 2048), cfg.max_seq_len);
  std::string widths;
  for (const QuantSpec& c : choices) widths += (widths.empty() ? "" : ", ") + c.name();
  // Everything the rules follow from; a saved allocation is reused only under the same key.
  RunManifest key = run_manifest(job, body_spec(opt), method_spec(blockwise_output_layer(opt)));
  key.set("calibration", data_free ? "data-free" : file_identity(job.calib_path));
  key.set("sensitivity", format_line("%d x %d seed=%llu threads=%d widths=%s", co.nsamples,
                                     co.seqlen, static_cast<unsigned long long>(co.seed),
                                     job.n_threads, widths.c_str()));
  const std::string saved_header = key.text() + "rules:\n";
  if (std::optional<std::vector<std::string>> rules = read_saved_allocation(job, saved_header)) {
    out.log("resuming: bit allocation as measured by the interrupted run (" +
            allocation_path(job) + ")");
    return *rules;
  }
  const Tokenizer tok(src.tokenizer());
  const std::vector<std::vector<int>> seqs =
      data_free ? sample_from_model(src, tok, co, memory_budget(job), job.n_threads, out)
                : calibration_from_file(job.calib_path, job.calib_jsonl, tok, co);
  out.log(format_line("bit allocation: target %.4g bits per weight over %s, measured on %d x %d "
                      "tokens", *job.target_bpw, widths.c_str(), co.nsamples, co.seqlen));
  out.begin("sensitivity", cfg.n_layers);
  const std::vector<TensorSensitivity> sens = measure_model_sensitivity(
      src, opt, seqs, choices, [&](int block, int) { out.update(block); });
  out.end();
  const std::vector<int> chosen = allocate_widths(sens, choices, *job.target_bpw);
  // What went where, as shares of the weights.
  std::vector<double> share(choices.size(), 0.0);
  double total = 0;
  for (size_t t = 0; t < sens.size(); ++t) {
    const double w = double(sens[t].rows) * double(sens[t].cols);
    share[size_t(chosen[t])] += w;
    total += w;
  }
  std::string dist;
  for (size_t c = 0; c < choices.size(); ++c)
    dist += format_line("%s%s %.1f%%", dist.empty() ? "" : ", ", choices[c].name().c_str(),
                        100.0 * share[c] / total);
  out.log(format_line("bit allocation: %.4f bits per weight: %s",
                      allocation_bpw(sens, choices, chosen), dist.c_str()));
  std::vector<std::string> rules = allocation_rules(sens, choices, chosen);
  std::string text = saved_header;
  for (const std::string& r : rules) text += r + "\n";
  write_file_atomic(allocation_path(job), text);
  return rules;
}

std::optional<std::vector<std::string>> read_saved_allocation(const QuantizeJob& job,
                                                              const std::string& header) {
  if (!fs::is_regular_file(allocation_path(job))) return std::nullopt;
  const std::string text = read_whole_file(allocation_path(job));
  if (text.compare(0, header.size(), header) != 0) return std::nullopt;  // other settings
  std::vector<std::string> rules;
  std::istringstream lines(text.substr(header.size()));
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) rules.push_back(line);
  if (rules.empty()) return std::nullopt;
  return rules;
}

QuantReport run_blockwise(const QuantizeJob& job, const ModelSource& src, BlockwiseQuantizer& bq,
                          ActivationStore* store, const QuantizedFilePlan& plan,
                          const RunManifest& manifest, const std::string& out_path,
                          const Reporter& out) {
  const ModelConfig& cfg = src.config();
  QuantizedModelWriter writer(out_path, src, plan);
  out.begin("quantize", cfg.n_layers);
  bq.set_progress([&](int block, int, const std::string& status) { out.update(block, status); });
  ResumableRunOptions ro;
  ro.out_path = out_path;
  ro.manifest = manifest;
  ro.restart = job.restart;
  ro.on_resume = [&](int done) {
    out.log(format_line("resuming: %d of %d blocks were finished by an earlier run", done,
                        cfg.n_layers));
  };
  ro.after_checkpoint = [&](int block) { out.update(block + 1); };
  QuantReport report = run_resumable(bq, src, store, writer, ro, [&] { writer.finish(); });
  out.end();
  return report;
}

// E2E-QP from the stage-1 file into OUT (written atomically by the writer).
void run_e2e_stage(const QuantizeJob& job, const QuantizedFilePlan& plan,
                   const std::vector<std::vector<int>>& calib, QuantReport& report,
                   const Reporter& out) {
  std::vector<std::vector<int>> seqs = calib;
  if (job.e2e_nsamples && size_t(*job.e2e_nsamples) < seqs.size()) seqs.resize(size_t(*job.e2e_nsamples));
  E2eQpOptions eo = *job.e2e_qp;
  eo.n_threads = job.n_threads;
  eo.mem_budget = memory_budget(job);
  const std::unique_ptr<ModelSource> stage1 = open_gguf(stage1_path(job));
  // The stage-1 file is the writer's source: the trained projections are planned in its formats,
  // everything else (a quantized head too) is copied from it as stored.
  QuantizedFilePlan p2 = plan_block_rewrite(*stage1);
  p2.method = plan.method + "+e2e-qp";
  p2.fit = plan.fit;
  p2.source_name = plan.source_name;
  p2.extra = plan.extra;
  QuantizedModelWriter writer(job.out_path, *stage1, p2);
  out.log(format_line("E2E-QP: %zu sequences x %zu tokens, %d epoch(s), lr %g", seqs.size(),
                      seqs.empty() ? size_t(0) : seqs[0].size(), eo.epochs, double(eo.lr)));
  int last_epoch = 0;
  bool begun = false;
  const E2eQpResult r = e2e_qp(*stage1, seqs, eo, writer, [&](int epoch, int step, int steps, double loss) {
    if (!begun || epoch != last_epoch) {
      if (begun) out.end();
      out.begin("e2e-qp epoch " + std::to_string(epoch) + "/" + std::to_string(eo.epochs), steps);
      begun = true;
      last_epoch = epoch;
    }
    out.update(step, format_line("cross-entropy %.4f", loss));
  });
  if (begun) out.end();
  writer.finish();
  report.notes.push_back(e2e_qp_summary(r, eo.epochs) + format_line(", %.0f s", r.seconds));
}

}  // namespace

}  // namespace elutq
