// `elutq quantize IN OUT`: quantize a model's linear layers (RTN, HLQ, GPTQ, HLQ-GPTQ, GANQ, AWQ)
// block by block with calibration data, and write one elutq model file. Prints a progress bar
// (block i/n, layer, ETA) and a final report: per-layer reconstruction error, bits per weight,
// file size, wall time and peak memory.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli.h"
#include "core/error.h"
#include "core/memory_usage.h"
#include "core/progress.h"
#include "format/quantized_model_writer.h"
#include "model/model.h"
#include "model/untied_head_source.h"
#include "quant/activation_store.h"
#include "quant/blockwise_quantizer.h"
#include "quant/calib_activations.h"
#include "quant/calib_data.h"
#include "quant/resume.h"
#include "quant/resume_driver.h"
#include "runtime/open_model.h"
#include "tensor/model_source.h"
#include "tokenizer/tokenizer.h"

namespace elutq::cli {
namespace {

// Data-free calibration size: small so the default job runs in a few minutes on two cores.
constexpr int kDataFreeSamples = 8;
constexpr int kDataFreeSeqlen = 256;

std::string fmt_err(double e) {
  if (e < 0) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.3e", e);
  return b;
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
          "      --calib c4.jsonl --nsamples 128 --seqlen 2048",
      argv[0]);
  std::string in, out, method_name = "hlq", fit = "alternating", variant = "ours", calib,
                       tok_path, mem_budget, hlq_params = "full";
  int bits = 2, group = 128, nsamples = 0, seqlen = 0, threads = 0, awq_grid = 20,
      output_bits = 0, output_group = -1;
  int64_t awq_tokens = 2048;
  uint64_t seed = 0;
  double percdamp = 0.01;
  bool jsonl = false, awq = false, awq_clip = false, act_order = false, quantize_output = false,
       quiet = false, restart = false;
  std::string scratch_dir;
  app.add_option("IN", in, "source model: GGUF file, Hugging Face folder or llama2.c .bin")
      ->required();
  app.add_option("OUT", out, "output model file (GGUF container, written atomically)")->required();
  app.add_option("--method", method_name,
                 "rtn | hlq | gptq | hlq-gptq | ganq | awq (default hlq). awq = AWQ scales, then "
                 "RTN")
      ->check(CLI::IsMember({"rtn", "hlq", "gptq", "hlq-gptq", "ganq", "awq"}));
  app.add_option("--bits", bits, "bits per weight code, 1..8 (HLQ: 1..4; default 2)");
  app.add_option("--group", group, "weights per group along a row, e.g. 64 or 128; 0 = whole row "
                                   "(default 128; ganq uses one codebook per row)");
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
  app.add_flag("--act-order", act_order, "GPTQ: quantize columns by decreasing Hessian diagonal");
  app.add_option("--percdamp", percdamp, "GPTQ/GANQ damping, fraction of the mean Hessian "
                                         "diagonal (default 0.01)");
  app.add_flag("--awq", awq, "AWQ scale search and folding before the method (any method)");
  app.add_flag("--awq-clip", awq_clip, "with AWQ: also search a clipping range per group");
  app.add_option("--awq-grid", awq_grid, "AWQ: alphas tried, 0..(n-1)/n (default 20)");
  app.add_option("--awq-tokens", awq_tokens,
                 "AWQ: calibration tokens the scale search scores (default 2048)");
  app.add_option("--calib", calib,
                 "calibration text: plain text or JSONL with a \"text\" field per line (.jsonl)");
  app.add_flag("--jsonl", jsonl, "read --calib as JSONL whatever its name");
  app.add_option("--nsamples", nsamples,
                 "calibration sequences (default 128 with --calib, " +
                     std::to_string(kDataFreeSamples) + " data-free)");
  app.add_option("--seqlen", seqlen,
                 "tokens per calibration sequence (default 2048 with --calib, " +
                     std::to_string(kDataFreeSeqlen) +
                     " data-free; capped at the model's context)");
  app.add_option("--seed", seed, "seed for sampling calibration sequences (default 0)");
  app.add_option("--mem-budget", mem_budget,
                 "memory budget, e.g. 2G: calibration activations beyond their share spill to a scratch file (default: unlimited)");
  app.add_option("--scratch-dir", scratch_dir,
                 "where activations over --mem-budget spill (default: beside OUT)");
  app.add_flag("--restart", restart,
               "ignore an interrupted run's work directory (OUT.elutq-work) instead of resuming");
  app.add_flag("--quantize-output", quantize_output,
               "also quantize the output head (lm_head), with the same method; by default it is "
               "kept as it is. A head tied to the token embedding gets its own quantized copy (the "
               "embedding stays as it is). Speeds up decode of small models with large "
               "vocabularies");
  app.add_option("--output-bits", output_bits,
                 "bits for the output head (implies --quantize-output; default: --bits). The "
                 "ELUTQ paper keeps the head at 4 bits, groups of 128");
  app.add_option("--output-group", output_group,
                 "group size for the output head (implies --quantize-output; default: --group)");
  app.add_option("-t,--threads", threads, "threads (default: all cores)");
  app.add_option("--tokenizer", tok_path, "llama2.c tokenizer.bin (default: found beside IN)");
  app.add_flag("-q,--quiet", quiet, "no progress bar");
  int code = 0;
  if (!parse(app, argc, argv, &code)) return code;
  const auto t_start = std::chrono::steady_clock::now();

  // ---- validate everything before any heavy work ----
  BlockwiseOptions opt;
  opt.layer.method = parse_quant_method(method_name);
  opt.layer.bits = bits;
  opt.layer.group = group;
  opt.layer.fit = fit == "gradient" ? HlqFitMethod::Gradient : HlqFitMethod::Alternating;
  opt.layer.variant = variant == "paper" ? HlqGptqVariant::Paper : HlqGptqVariant::Ours;
  opt.layer.paper_fit = variant == "paper";
  opt.layer.act_order = act_order;
  opt.layer.hlq_compact = hlq_params == "compact";
  opt.layer.percdamp = percdamp;
  opt.awq = awq;
  opt.awq_clip = awq_clip;
  opt.awq_grid = awq_grid;
  opt.awq_tokens = awq_tokens;
  if (app.count("--output-bits") || app.count("--output-group")) quantize_output = true;
  opt.quantize_output = quantize_output;
  if (app.count("--output-bits")) opt.output_bits = output_bits;
  if (app.count("--output-group")) opt.output_group = output_group;
  opt.n_threads = threads;
  require(bits >= 1 && bits <= 8, "--bits must be between 1 and 8, got ", bits);
  require(bits <= 4 || (opt.layer.method != QuantMethod::Hlq &&
                        opt.layer.method != QuantMethod::HlqGptq),
          "--bits ", bits, ": ", method_name, " stores 1 to 4 bit-planes; use --bits 1..4");
  require(group >= 0, "--group must be 0 (whole row) or a positive group size, got ", group);
  require(!opt.output_bits || (output_bits >= 1 && output_bits <= 8),
          "--output-bits must be between 1 and 8, got ", output_bits);
  require(!opt.output_group || output_group >= 0,
          "--output-group must be 0 (whole row) or a positive group size, got ", output_group);
  require(percdamp >= 0 && percdamp < 1, "--percdamp must be in [0, 1), got ", percdamp);
  require(awq_grid >= 1, "--awq-grid must be at least 1, got ", awq_grid);
  require(awq_tokens >= 1, "--awq-tokens must be at least 1, got ", awq_tokens);
  require(threads >= 0, "--threads must be >= 0, got ", threads);
  require(app.count("--nsamples") == 0 || nsamples > 0,
          "--nsamples must be positive, got ", nsamples);
  require(app.count("--seqlen") == 0 || seqlen >= 2, "--seqlen must be at least 2, got ", seqlen);
  require(!awq_clip || awq || opt.layer.method == QuantMethod::Awq,
          "--awq-clip needs AWQ (--method awq or --awq)");
  const bool calibrated = blockwise_needs_calibration(opt) || !calib.empty();
  require(calib.empty() || std::filesystem::is_regular_file(calib), "--calib: cannot read '",
          calib, "'");
  uint64_t budget = 0;  // 0: unlimited
  if (!mem_budget.empty()) {
    budget = parse_byte_size(mem_budget);
    require(budget > 0, "--mem-budget must be positive, got '", mem_budget, "'");
  }
  require(!std::filesystem::exists(out) || !std::filesystem::is_directory(out), "OUT '", out,
          "' is a directory; give a file name");
  {
    std::error_code ec;
    require(!std::filesystem::exists(out) ||
                !std::filesystem::equivalent(std::filesystem::path(in), std::filesystem::path(out),
                                             ec),
            "OUT must differ from IN");
  }
  const QuantSpec spec = method_spec(
      [&] {
        LayerQuantOptions l = opt.layer;
        if (l.method == QuantMethod::Awq) l.method = QuantMethod::Rtn;
        return l;
      }());

  const QuantSpec head_spec = method_spec(blockwise_output_layer(opt));  // validates early
  auto src = open_model(in, tok_path);
  // A tied head gets its own tensor in the output file (a quantized copy of the embedding).
  if (quantize_output && src->config().tied_embeddings) src = untie_output_head(std::move(src));
  const ModelConfig& cfg = src->config();
  BlockwiseQuantizer bq(*src, opt);  // checks the options against the model

  QuantizedFilePlan plan = plan_quantized_file(*src, spec, quantize_output);
  if (quantize_output) plan.quantized["output.weight"] = head_spec;
  plan.method = method_name + (awq && opt.layer.method != QuantMethod::Awq ? "+awq" : "");
  if (spec.is_hlq()) plan.fit = fit + (variant == "paper" ? "/paper" : "/ours");
  plan.source_name = std::filesystem::path(in).filename().string();

  // ---- calibration ----
  std::vector<std::vector<int>> seqs;
  std::unique_ptr<ActivationStore> store;
  uint64_t act_budget = UINT64_MAX;
  if (scratch_dir.empty()) {
    const std::filesystem::path parent = std::filesystem::path(out).parent_path();
    scratch_dir = (parent.empty() ? std::filesystem::path(".") : parent).string();
  }
  RunManifest manifest;
  manifest.set("format", "elutq-quantize-1");
  manifest.set("source", file_identity(in));
  manifest.set("method", method_name);
  manifest.set("spec", spec.name());
  manifest.set("fit", fit);
  manifest.set("variant", variant);
  manifest.set("act_order", act_order ? "1" : "0");
  manifest.set("percdamp", std::to_string(percdamp));
  manifest.set("awq", awq ? "1" : "0");
  manifest.set("awq_clip", awq_clip ? "1" : "0");
  manifest.set("awq_grid", std::to_string(awq_grid));
  manifest.set("awq_tokens", std::to_string(awq_tokens));
  manifest.set("quantize_output", quantize_output ? "1" : "0");
  if (quantize_output) manifest.set("output_spec", head_spec.name());
  if (calibrated) {
    CalibDataOptions co;
    co.seed = seed;
    co.nsamples = nsamples > 0 ? nsamples : (calib.empty() ? kDataFreeSamples : 128);
    co.seqlen = seqlen > 0 ? seqlen : (calib.empty() ? kDataFreeSeqlen : 2048);
    if (co.seqlen > cfg.max_seq_len) {
      std::fprintf(stderr, "note: --seqlen %d exceeds the model's context %d; using %d\n",
                   co.seqlen, cfg.max_seq_len, cfg.max_seq_len);
      co.seqlen = cfg.max_seq_len;
    }
    // The budget is shared: the block being quantized needs its working set, the activations
    // (and the per-block scratch of o's inputs) get the rest and spill to disk beyond it.
    const uint64_t act_bytes = uint64_t(co.nsamples) * co.seqlen * cfg.dim * 4;
    if (budget > 0) {
      const uint64_t work = estimate_block_working_bytes(cfg, co.seqlen);
      act_budget = budget > work ? (budget - work) / 2 : 0;
      std::fprintf(stderr,
                   "memory: budget %s, block working set ~%s, activations %s (%s)\n",
                   format_byte_size(budget).c_str(), format_byte_size(work).c_str(),
                   format_byte_size(act_bytes).c_str(),
                   act_bytes > act_budget ? "spilled to disk" : "in memory");
    }
    const Tokenizer tok(src->tokenizer());
    if (!calib.empty()) {
      std::fprintf(stderr, "calibration: %d x %d tokens from %s (seed %llu)\n", co.nsamples,
                   co.seqlen, calib.c_str(), static_cast<unsigned long long>(seed));
      seqs = calibration_from_file(calib, jsonl, tok, co);
      plan.extra.push_back({"calibration.source", std::filesystem::path(calib).filename().string()});
    } else {
      std::fprintf(stderr,
                   "calibration: no --calib given; sampling %d x %d tokens from the model "
                   "(temperature 1, seed %llu)\n",
                   co.nsamples, co.seqlen, static_cast<unsigned long long>(seed));
      // A KV cache for the sequences side by side (each step then reads the weights once for
      // all of them), up to 2 GiB (a quarter of --mem-budget): all 8 x 256 default sequences of
      // a 7B model (1 MiB per position), every sequence of small models. Under --mem-budget the
      // model is lazy and each step streams the blocks' weights through memory one at a time.
      const int64_t kv_per_pos = int64_t(cfg.n_layers) * 2 * cfg.n_kv_heads * cfg.head_dim * 4;
      const int64_t kv_cap = budget > 0 ? int64_t(budget / 4) : int64_t(2) << 30;
      const int64_t fit = std::max<int64_t>(1, kv_cap / kv_per_pos / co.seqlen);
      // fp32 weights of the eager model: blocks, embedding, and a head unless tied.
      const int64_t per_block = block_weight_count(cfg);
      const uint64_t fp32_bytes =
          4 * uint64_t(per_block * cfg.n_layers +
                       int64_t(cfg.vocab_size) * cfg.dim * (cfg.tied_embeddings ? 1 : 2));
      const uint64_t available = available_memory_bytes();
      ModelOptions mo;
      mo.n_threads = threads;
      mo.max_ctx = co.seqlen * int(std::min<int64_t>(co.nsamples, fit));
      mo.lazy_blocks = sampling_streams_blocks(fp32_bytes, budget, available);
      Model full(*src, mo);
      if (mo.lazy_blocks) {
        // Blocks that fit half the memory at hand stay loaded; only the rest stream.
        const int kept = sampling_blocks_kept(
            (budget > 0 ? budget : available) / 2, uint64_t(kv_per_pos) * mo.max_ctx,
            4 * uint64_t(cfg.vocab_size) * cfg.dim, 4 * uint64_t(per_block), cfg.n_layers);
        for (int l = 0; l < kept; ++l) full.load_block(l);
        const std::string why = budget > 0 ? "--mem-budget given"
                                           : "the fp32 model would not fit the " +
                                                 format_byte_size(available) + " available";
        std::fprintf(stderr,
                     "sampling: %s, so %d of %d blocks stay loaded and the others stream from "
                     "the source every step (slower than holding the %s fp32 model)\n",
                     why.c_str(), kept, cfg.n_layers, format_byte_size(fp32_bytes).c_str());
      }
      Progress bar("sampling", int64_t(co.nsamples) * (co.seqlen - 1), quiet);
      seqs = calibration_from_model(full, tok.bos_id(), co,
                                    [&](int64_t done) { bar.update(done); });
      bar.finish();
      plan.extra.push_back({"calibration.source", "sampled from the model (data-free)"});
    }
    plan.extra.push_back({"calibration.sequences", std::to_string(co.nsamples)});
    plan.extra.push_back({"calibration.seqlen", std::to_string(co.seqlen)});
    plan.extra.push_back({"calibration.seed", std::to_string(seed)});
    manifest.set("calibration", calib.empty() ? "data-free" : file_identity(calib));
    manifest.set("nsamples", std::to_string(co.nsamples));
    manifest.set("seqlen", std::to_string(co.seqlen));
    manifest.set("seed", std::to_string(seed));
    store = std::make_unique<ActivationStore>(co.nsamples, co.seqlen, cfg.dim, act_budget,
                                              scratch_dir);
    const uint64_t scratch_budget = act_budget;
    opt.make_scratch = [scratch_budget, scratch_dir](int64_t n, int64_t t, int64_t d) {
      return std::unique_ptr<CalibActivations>(
          std::make_unique<ActivationStore>(n, t, d, scratch_budget, scratch_dir));
    };
    bq.set_make_scratch(opt.make_scratch);
    bq.embed_calibration(seqs, *store);
    seqs = {};
  }

  // ---- quantize block by block, streaming into the file (resumable) ----
  QuantizedModelWriter writer(out, *src, plan);
  QuantReport rep;
  {
    Progress bar("quantize", cfg.n_layers, quiet);
    bq.set_progress([&](int block, int, const std::string& status) { bar.update(block, status); });
    ResumableRunOptions ro;
    ro.out_path = out;
    ro.manifest = manifest;
    ro.restart = restart;
    ro.on_resume = [&](int done) {
      std::fprintf(stderr, "resuming: %d of %d blocks were finished by an earlier run\n", done,
                   cfg.n_layers);
    };
    ro.after_checkpoint = [&](int block) { bar.update(block + 1); };
    rep = run_resumable(bq, *src, store.get(), writer, ro, [&] { writer.finish(); });
    bar.finish();
  }

  // ---- report ----
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start)
                          .count();
  const uint64_t file_bytes = std::filesystem::file_size(out);
  std::printf("%-28s %14s %11s %11s %6s %7s  %s\n", "layer", "shape", "rel_w_err", "rel_out_err",
              "bpw", "sec", "notes");
  for (const LayerReport& l : rep.layers) {
    const std::string shape = std::to_string(l.rows) + "x" + std::to_string(l.cols);
    std::printf("%-28s %14s %11s %11s %6.3f %7.2f  %s\n", l.name.c_str(), shape.c_str(),
                fmt_err(l.rel_weight_error).c_str(), fmt_err(l.rel_output_error).c_str(),
                l.bits_per_weight, l.seconds, l.log.c_str());
  }
  for (const std::string& n : rep.notes) std::printf("note: %s\n", n.c_str());
  double sum_w = 0, sum_o = 0;
  int n_o = 0;
  for (const LayerReport& l : rep.layers) {
    sum_w += l.rel_weight_error;
    if (l.rel_output_error >= 0) sum_o += l.rel_output_error, ++n_o;
  }
  const double bpw = rep.quantized_weights ? rep.quantized_bits / rep.quantized_weights : 0;
  std::printf(
      "\n%s: %s, %zu layers quantized (%lld weights), mean rel_w_err %.3e, mean rel_out_err %s\n",
      method_name.c_str(), spec.name().c_str(), rep.layers.size(),
      static_cast<long long>(rep.quantized_weights),
      rep.layers.empty() ? 0.0 : sum_w / double(rep.layers.size()),
      n_o ? fmt_err(sum_o / n_o).c_str() : "-");
  std::printf("summary: bpw %.4f  file %s %.2f MiB  wall %.1f s  peak RSS %.1f MiB\n", bpw,
              out.c_str(), file_bytes / 1048576.0, wall, peak_rss_bytes() / 1048576.0);
  return 0;
}

const VerbRegistrar reg({"quantize", "quantize a model (rtn, hlq, gptq, hlq-gptq, ganq, awq)",
                         run_quantize});

}  // namespace
}  // namespace elutq::cli
