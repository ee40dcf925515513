// `elutq finetune IN OUT`: E2E-QP on a model elutq has already quantized (HLQ, HLQC or uniform):
// every block projection's scales and zeros are trained on next-token loss over calibration text with
// the codes frozen, and the model is written again with the trained parameters. `elutq quantize
// --method hlq-ft` runs the same stage after Block-AP; this verb finetunes any existing file.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include "cli.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/memory_usage.h"
#include "core/progress.h"
#include "format/quantized_model_writer.h"
#include "quant/calib_data.h"
#include "runtime/open_model.h"
#include "tokenizer/tokenizer.h"
#include "train/e2e_qp.h"

namespace elutq::cli {
namespace {

int run_finetune(int argc, char** argv) {
  CLI::App app(
      "E2E-QP: train the HLQ (HLQC, uniform) scales and zeros of every block projection of an elutq "
      "quantized model on next-token loss over calibration text, codes frozen, and write the "
      "model again.\n\nexample:\n"
      "  elutq finetune model-hlq-w2g64.gguf model-ft.gguf --calib c4.jsonl --nsamples 32 "
      "--seqlen 512",
      argv[0]);
  std::string in, out, calib, schedule = "cosine";
  bool jsonl = false, quiet = false;
  CalibDataOptions co;
  co.nsamples = 32;
  co.seqlen = 512;
  E2eQpOptions opt;
  app.add_option("IN", in, "an elutq quantized model file (from elutq quantize)")->required();
  app.add_option("OUT", out, "output model file (written atomically)")->required();
  app.add_option("--calib", calib, "training text: plain text or JSONL with a \"text\" field (.jsonl)")
      ->required();
  app.add_flag("--jsonl", jsonl, "read --calib as JSONL whatever its name");
  app.add_option("--nsamples", co.nsamples, "training sequences (default 32; a tenth held out)");
  app.add_option("--seqlen", co.seqlen, "tokens per sequence (default 512)");
  app.add_option("--seed", co.seed, "seed for cutting sequences and shuffling (default 0)");
  app.add_option("--epochs", opt.epochs, "epochs (default 1)");
  app.add_option("--lr", opt.lr,
                 "peak learning rate of the scales and zeros, relative to their size: each "
                 "projection's step is about lr times their RMS (default 1e-3)");
  app.add_option("--batch", opt.batch_seqs, "sequences per step (default 1)");
  app.add_option("--warmup", opt.warmup,
                 "fraction of the steps over which the learning rate rises linearly (default 0.1)");
  app.add_option("--schedule", schedule, "cosine | linear | constant (default cosine)")
      ->check(CLI::IsMember({"cosine", "linear", "constant"}));
  app.add_option("--holdout", opt.holdout_seqs,
                 "sequences held out to keep the best epoch (default: a tenth)");
  app.add_option("-t,--threads", opt.n_threads, "threads (default: all cores)");
  std::string mem_budget;
  app.add_option("--mem-budget", mem_budget,
                 "refuse up front if training would need more memory than this (e.g. 4G)");
  app.add_flag("-q,--quiet", quiet, "no progress bar");
  int code = 0;
  if (!parse(app, argc, argv, &code)) return code;
  const auto t0 = std::chrono::steady_clock::now();
  require(co.nsamples >= 1 && co.seqlen >= 2, "--nsamples must be >= 1 and --seqlen >= 2");
  require(std::filesystem::is_regular_file(calib), "--calib: cannot read '", calib, "'");
  std::error_code ec;
  require(!std::filesystem::equivalent(in, out, ec), "OUT must differ from IN");
  check_output_path(out, "OUT");
  opt.schedule = parse_lr_schedule(schedule);
  if (!mem_budget.empty()) {
    opt.mem_budget = parse_byte_size(mem_budget);
    require(opt.mem_budget > 0, "--mem-budget must be positive, got '", mem_budget, "'");
  }
  opt.seed = co.seed;

  const std::unique_ptr<ModelSource> src = open_model(in);
  const Tokenizer tok(src->tokenizer());
  const std::vector<std::vector<int>> seqs =
      calibration_from_file(calib, jsonl || calib.ends_with(".jsonl"), tok, co);
  QuantizedFilePlan plan = plan_block_rewrite(*src);
  plan.method = "e2e-qp";
  plan.source_name = std::filesystem::path(in).filename().string();
  plan.extra.push_back({"finetune.calibration", std::filesystem::path(calib).filename().string()});
  QuantizedModelWriter writer(out, *src, plan);
  std::optional<Progress> bar;
  int epoch_shown = 0;
  const E2eQpResult r = e2e_qp(*src, seqs, opt, writer, [&](int epoch, int step, int steps, double loss) {
    if (epoch != epoch_shown) {
      if (bar) bar->finish();
      bar.emplace("e2e-qp epoch " + std::to_string(epoch) + "/" + std::to_string(opt.epochs), steps, quiet);
      epoch_shown = epoch;
    }
    char status[64];
    std::snprintf(status, sizeof status, "cross-entropy %.4f", loss);
    bar->update(step, status);
  });
  if (bar) bar->finish();
  writer.finish();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s\n", e2e_qp_summary(r, opt.epochs).c_str());
  std::printf("memory: estimated %s before training (see the peak below)\n",
              format_byte_size(r.estimated_bytes).c_str());
  for (size_t e = 0; e < r.train_loss.size(); ++e)
    std::printf("epoch %zu: train %.4f held-out %.4f\n", e + 1, r.train_loss[e], r.holdout_loss[e]);
  std::printf("summary: file %s  wall %.1f s  peak RSS %.1f MiB\n", out.c_str(), wall,
              peak_rss_bytes() / 1048576.0);
  return 0;
}

const VerbRegistrar reg({"finetune", "E2E-QP: train a quantized model's scales and zeros end to end",
                         run_finetune});

}  // namespace
}  // namespace elutq::cli
