// `elutq quantize IN OUT`: quantize a model's linear layers (RTN, HLQ, GPTQ, HLQ-GPTQ, GANQ, AWQ)
// block by block with calibration data, and write one elutq model file. The flags fill a
// QuantizeJob (quant/quantize_job.h), which does the work; this verb prints its notices and a
// progress bar (block i/n, layer, ETA) on stderr and a final report on stdout: per-layer
// reconstruction error, bits per weight, file size, wall time and peak memory.
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <string>

#include "cli.h"
#include "core/error.h"
#include "core/memory_usage.h"
#include "core/progress.h"
#include "quant/quantize_job.h"
#include "runtime/open_model.h"

namespace elutq::cli {
namespace {

std::string fmt_err(double e) {
  if (e < 0) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.3e", e);
  return b;
}

// The per-layer table and the summary lines, on stdout.
void print_report(const QuantizeResult& r, const std::string& method_name, const std::string& out,
                  std::chrono::steady_clock::time_point t_start) {
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  std::printf("%-28s %14s %-16s %11s %11s %6s %7s  %s\n", "layer", "shape", "format", "rel_w_err",
              "rel_out_err", "bpw", "sec", "notes");
  std::map<std::string, int64_t> weights_per_format;
  for (const LayerReport& l : r.report.layers) {
    const std::string shape = std::to_string(l.rows) + "x" + std::to_string(l.cols);
    // Blocks resumed from checkpoints written before their lines kept a format have none.
    const std::string format = l.format.empty() ? "(not recorded)" : l.format;
    std::printf("%-28s %14s %-16s %11s %11s %6.3f %7.2f  %s\n", l.name.c_str(), shape.c_str(),
                format.c_str(), fmt_err(l.rel_weight_error).c_str(),
                fmt_err(l.rel_output_error).c_str(), l.bits_per_weight, l.seconds, l.log.c_str());
    weights_per_format[format] += l.rows * l.cols;
  }
  for (const std::string& n : r.report.notes) std::printf("note: %s\n", n.c_str());
  std::printf(
      "\n%s: %s, %zu layers quantized (%lld weights), mean rel_w_err %.3e, mean rel_out_err %s\n",
      method_name.c_str(), r.spec.name().c_str(), r.report.layers.size(),
      static_cast<long long>(r.report.quantized_weights), r.mean_rel_weight_error,
      fmt_err(r.mean_rel_output_error).c_str());
  if (weights_per_format.size() > 1) {  // a mix (--tensor-spec, a quantized head)
    std::string mix;
    for (const auto& [f, n] : weights_per_format) {
      char part[96];
      std::snprintf(part, sizeof part, "%s%s %.1f%%", mix.empty() ? "" : ", ", f.c_str(),
                    100.0 * double(n) / double(r.report.quantized_weights));
      mix += part;
    }
    std::printf("formats (share of weights): %s\n", mix.c_str());
  }
  std::printf("summary: bpw %.4f  file %s %.2f MiB  wall %.1f s  peak RSS %.1f MiB\n",
              r.bits_per_weight, out.c_str(), r.file_bytes / 1048576.0, wall,
              peak_rss_bytes() / 1048576.0);
}

int run_quantize(int argc, char** argv) {
  CLI::App app(
      "Quantize a model's linear layers to B bits and write one elutq model file.\n"
      "Calibrated methods (gptq, hlq-gptq, ganq, awq, or --awq) run block by block on calibration\n"
      "text (--calib); without it they calibrate on " +
          std::to_string(kDataFreeSamples) + " sequences of " + std::to_string(kDataFreeSeqlen) +
          " tokens sampled from the model itself\n(data-free, a few minutes for a 135M model on 2 "
          "cores). rtn and hlq need no calibration.\n\n"
          "examples:\n"
          "  elutq quantize model.gguf out.gguf --method hlq --bits 2 --group 128\n"
          "  elutq quantize model.gguf out.gguf --method hlq-gptq --bits 2 --group 64 \\\n"
          "      --calib c4.jsonl --nsamples 128 --seqlen 2048\n"
          "  elutq quantize model.gguf out.gguf --method hlq-ft --bits 2 --group 64 \\\n"
          "      --calib c4.jsonl --nsamples 128 --seqlen 512     # HLQ-Finetuning",
      argv[0]);
  QuantizeJob job;  // plain flags write into it directly
  std::string method_name = "hlq", fit = "alternating", variant = "ours", hlq_params = "full",
              tok_path;
  int nsamples = 0, seqlen = 0, output_bits = 0, output_group = -1;
  bool quiet = false;
  app.add_option("IN", job.source_path,
                 "source model: GGUF file, Hugging Face folder or llama2.c .bin")
      ->required();
  app.add_option("OUT", job.out_path, "output model file (GGUF container, written atomically)")
      ->required();
  app.add_option("--method", method_name,
                 "rtn | hlq | gptq | hlq-gptq | ganq | awq | hlq-ft (default hlq). awq = AWQ "
                 "scales, then RTN. hlq-ft = HLQ-Finetuning: hlq-gptq, then Block-AP (each block's "
                 "weights and HLQ parameters trained to reproduce the fp block), then E2E-QP (all "
                 "HLQ parameters trained on next-token loss); the paper's best 2-bit method")
      ->check(CLI::IsMember({"rtn", "hlq", "gptq", "hlq-gptq", "ganq", "awq", "hlq-ft"}));
  app.add_option("--bits", job.bits, "bits per weight code, 1..8 (HLQ: 1..4; default 2)");
  app.add_option("--group", job.group,
                 "weights per group along a row, e.g. 64 or 128; 0 = whole row "
                 "(default 128; ganq uses one codebook per row)");
  app.add_option("--tensor-spec", job.tensor_specs,
                 "PATTERN=wBITS[gGROUP]: other bits (and group) for the block projections whose "
                 "name matches the regular expression PATTERN, e.g. 'ffn_down=w3' or "
                 "'blk\\.(0|1)\\.=w4g128' (names read like blk.3.attn_v.weight); repeatable, the "
                 "first matching rule wins; the method stays --method's")
      ->allow_extra_args(false);
  double target_bpw = 0;
  app.add_option("--target-bpw", target_bpw,
                 "mixed precision by measurement: give the block projections widths from "
                 "--width-choices so their average bits per weight (parameters included) stays "
                 "within this, the wider ones where quantizing costs the model's loss most "
                 "(measured on a few calibration sequences first), e.g. 2.9");
  app.add_option("--width-choices", job.width_choices,
                 "widths --target-bpw chooses from, e.g. w2g128,w3g128,w4g128 (default: --bits, "
                 "--bits + 1 and --bits + 2 at --group)");
  app.add_option("--sensitivity-samples", job.sensitivity_samples,
                 "calibration sequences --target-bpw measures on (default 4)");
  app.add_option("--fit", fit, "HLQ fit: alternating | gradient (default alternating)")
      ->check(CLI::IsMember({"alternating", "gradient"}));
  app.add_option("--variant", variant,
                 "hlq / hlq-gptq: paper = the ELUTQ paper's procedure, ours = with our "
                 "additions (several starts, keep best, in-group refit) (default ours)")
      ->check(CLI::IsMember({"paper", "ours"}));
  app.add_option("--hlq-params", hlq_params,
                 "hlq / hlq-gptq parameters per group: full = B plane scales + zero in fp16 "
                 "(format hlq-wBgG), compact = scale + zero in fp16 and a 4-bit code per further "
                 "plane into a per-matrix table of plane-scale ratios (format hlqc-wBgG: nearly "
                 "uniform's size, so decode nearly as fast) (default full)")
      ->check(CLI::IsMember({"full", "compact"}));
  app.add_flag("--act-order", job.act_order,
               "GPTQ: quantize columns by decreasing Hessian diagonal");
  app.add_option("--percdamp", job.percdamp,
                 "GPTQ/GANQ damping, fraction of the mean Hessian "
                 "diagonal (default 0.01)");
  app.add_flag("--awq", job.awq, "AWQ scale search and folding before the method (any method)");
  app.add_flag("--awq-clip", job.awq_clip, "with AWQ: also search a clipping range per group");
  app.add_option("--awq-grid", job.awq_grid, "AWQ: alphas tried, 0..(n-1)/n (default 20)");
  app.add_option("--awq-tokens", job.awq_tokens,
                 "AWQ: calibration tokens the scale search scores (default 2048)");
  app.add_option("--calib", job.calib_path,
                 "calibration text: plain text or JSONL with a \"text\" field per line (.jsonl)");
  app.add_flag("--jsonl", job.calib_jsonl, "read --calib as JSONL whatever its name");
  app.add_option("--nsamples", nsamples,
                 "calibration sequences (default 128 with --calib, " +
                     std::to_string(kDataFreeSamples) + " data-free)");
  app.add_option("--seqlen", seqlen,
                 "tokens per calibration sequence (default 2048 with --calib, " +
                     std::to_string(kDataFreeSeqlen) +
                     " data-free; capped at the model's context)");
  app.add_option("--seed", job.seed, "seed for sampling calibration sequences (default 0)");
  app.add_option("--mem-budget", job.mem_budget,
                 "memory budget, e.g. 2G: calibration activations beyond their share spill to a "
                 "scratch file (default: unlimited)");
  app.add_option("--scratch-dir", job.scratch_dir,
                 "where activations over --mem-budget spill (default: beside OUT)");
  app.add_flag("--restart", job.restart,
               "ignore an interrupted run's work (OUT.elutq-work, Block-AP's OUT.stage1.gguf, --target-bpw's OUT.allocation.txt) instead of resuming");
  app.add_flag("--quantize-output", job.quantize_output,
               "also quantize the output head (lm_head), with the same method; by default it is "
               "kept as it is. A head tied to the token embedding gets its own quantized copy (the "
               "embedding stays as it is). Speeds up decode of small models with large "
               "vocabularies");
  app.add_option("--output-bits", output_bits,
                 "bits for the output head (implies --quantize-output; default: --bits). The "
                 "ELUTQ paper keeps the head at 4 bits, groups of 128");
  app.add_option("--output-group", output_group,
                 "group size for the output head (implies --quantize-output; default: --group)");
  // Finetuning (HLQ-Finetuning); defaults chosen by measurement (docs/RESULTS.md).
  std::string ft_stages, ft_schedule = "cosine", e2e_schedule = "cosine";
  BlockApOptions bap;
  E2eQpOptions e2e;
  int e2e_nsamples = 0;
  app.add_option("--ft-stages", ft_stages,
                 "finetuning stages after quantizing: block (Block-AP), e2e (E2E-QP), block,e2e, "
                 "or none (default for hlq-ft: block,e2e; other methods: none). Any method "
                 "storing hlq, hlqc (--hlq-params compact: s_0 and midpoint trained, plane-scale "
                 "ratios kept) or uniform parameters can be finetuned")
      ->check(CLI::IsMember({"block", "e2e", "block,e2e", "none"}));
  app.add_option("--ft-epochs", bap.epochs, "Block-AP: epochs over the calibration set per block (default 2)");
  app.add_option("--ft-lr-weights", bap.lr_weights,
                 "Block-AP: peak learning rate of the latent weights; 0 trains only the HLQ "
                 "parameters (default 2e-5)");
  app.add_option("--ft-lr-params", bap.lr_params,
                 "Block-AP: peak learning rate of the HLQ scales and zeros (default 1e-4)");
  app.add_option("--ft-weight-decay", bap.weight_decay, "Block-AP: AdamW weight decay of the latent weights (default 0)");
  app.add_option("--ft-schedule", ft_schedule, "Block-AP: cosine | linear | constant (default cosine)")
      ->check(CLI::IsMember({"cosine", "linear", "constant"}));
  app.add_option("--ft-batch", bap.batch_seqs, "Block-AP: sequences per step (default 1)");
  app.add_option("--ft-holdout", bap.holdout_seqs,
                 "Block-AP and E2E-QP: calibration sequences held out to pick the best epoch "
                 "(default: a tenth)");
  app.add_option("--e2e-epochs", e2e.epochs, "E2E-QP: epochs (default 1)");
  app.add_option("--e2e-lr", e2e.lr,
                 "E2E-QP: peak learning rate of the HLQ parameters, relative to their size "
                 "(each projection's step is about lr times their RMS; default 1e-3)");
  app.add_option("--e2e-batch", e2e.batch_seqs, "E2E-QP: sequences per step (default 1)");
  app.add_option("--e2e-schedule", e2e_schedule, "E2E-QP: cosine | linear | constant (default cosine)")
      ->check(CLI::IsMember({"cosine", "linear", "constant"}));
  app.add_option("--e2e-warmup", e2e.warmup,
                 "E2E-QP: fraction of the steps over which the learning rate rises linearly "
                 "(default 0.1)");
  app.add_option("--e2e-nsamples", e2e_nsamples,
                 "E2E-QP: train on the first N calibration sequences (default: all)");
  app.add_option("--ft-keep-stage1", job.keep_stage1_path,
                 "with E2E-QP: also keep the model as it was after Block-AP, under this file name "
                 "(to compare the stages)");
  app.add_option("-t,--threads", job.n_threads, "threads (default: all cores)");
  app.add_option("--tokenizer", tok_path, "llama2.c tokenizer.bin (default: found beside IN)");
  app.add_flag("-q,--quiet", quiet, "no progress bar");
  int code = 0;
  if (!parse(app, argc, argv, &code)) return code;
  const auto t_start = std::chrono::steady_clock::now();
  if (app.count("--target-bpw") > 0) job.target_bpw = target_bpw;

  const bool hlq_ft = method_name == "hlq-ft";
  job.method = parse_quant_method(hlq_ft ? "hlq-gptq" : method_name);
  if (ft_stages.empty()) ft_stages = hlq_ft ? "block,e2e" : "none";
  if (ft_stages.find("block") != std::string::npos) {
    bap.schedule = parse_lr_schedule(ft_schedule);
    bap.seed = job.seed;
    job.block_ap = bap;
  }
  if (ft_stages.find("e2e") != std::string::npos) {
    e2e.schedule = parse_lr_schedule(e2e_schedule);
    e2e.holdout_seqs = bap.holdout_seqs;
    e2e.seed = job.seed;
    job.e2e_qp = e2e;
  }
  if (app.count("--e2e-nsamples")) job.e2e_nsamples = e2e_nsamples;
  for (const char* f : {"--ft-epochs", "--ft-lr-weights", "--ft-lr-params", "--ft-weight-decay",
                        "--ft-schedule", "--ft-batch"})
    require(!app.count(f) || job.block_ap, f, " sets up Block-AP: add --ft-stages block (or use --method hlq-ft)");
  for (const char* f : {"--e2e-epochs", "--e2e-lr", "--e2e-batch", "--e2e-schedule", "--e2e-warmup",
                        "--e2e-nsamples"})
    require(!app.count(f) || job.e2e_qp, f, " sets up E2E-QP: add --ft-stages e2e (or use --method hlq-ft)");
  job.fit = fit == "gradient" ? HlqFitMethod::Gradient : HlqFitMethod::Alternating;
  job.variant = variant == "paper" ? HlqGptqVariant::Paper : HlqGptqVariant::Ours;
  job.hlq_compact = hlq_params == "compact";
  if (app.count("--output-bits")) job.output_bits = output_bits;
  if (app.count("--output-group")) job.output_group = output_group;
  if (app.count("--nsamples")) job.nsamples = nsamples;
  if (app.count("--seqlen")) job.seqlen = seqlen;
  validate_quantize_job(job);  // before the model is read

  std::optional<Progress> bar;
  QuantizeCallbacks cb;
  cb.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  cb.stage_begin = [&](const std::string& stage, int64_t total) {
    bar.emplace(stage, total, quiet);
  };
  cb.stage_update = [&](int64_t done, const std::string& status) { bar->update(done, status); };
  cb.stage_end = [&] { bar->finish(); };
  const QuantizeResult r = run_quantize_job(job, open_model(job.source_path, tok_path), cb);
  print_report(r, method_name, job.out_path, t_start);
  return 0;
}

const VerbRegistrar reg({"quantize", "quantize a model (rtn, hlq, gptq, hlq-gptq, ganq, awq, hlq-ft)",
                         run_quantize});

}  // namespace
}  // namespace elutq::cli
