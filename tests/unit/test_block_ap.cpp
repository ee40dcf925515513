// HLQ-Finetuning's block stage: the trainable quantized projection's gradients (exact in the
// parameters given the codes), Block-AP lowering a quantized block's output error below
// HLQ-GPTQ's, never handing back something worse than its start, and a finetuning job that
// resumes to the identical file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "calib_test_util.h"
#include "core/error.h"
#include "model/dense_linear.h"
#include "model/model.h"
#include "quant/blockwise_quantizer.h"
#include "quant/calib_activations.h"
#include "quant/quantize_job.h"
#include "runtime/open_model.h"
#include "test_forward_model.h"
#include "test_util.h"
#include "train/quantized_linear_param.h"

namespace elutq {
namespace {

namespace fs = std::filesystem;

QuantizedMatrix random_fit(QuantKind kind, int bits, int group, int64_t rows, int64_t cols,
                           uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  QuantizedMatrix q;
  q.spec = {kind, bits, group};
  q.rows = rows;
  q.cols = cols;
  q.codes.resize(size_t(rows * cols));
  for (uint8_t& c : q.codes) c = uint8_t(rng() % (1u << bits));
  q.params.resize(size_t(rows * q.spec.groups_per_row(cols) * q.spec.params_per_group()));
  for (float& p : q.params) p = u(rng);
  // HLQC: s_0 > 0 and m fp16, ratio codes into an ascending codebook whose plane-1 ratios
  // (2..2.6) sum with 1 below every plane-2 ratio (4..5.2), so no two of a group's levels meet.
  if (kind == QuantKind::HLQC) {
    const int64_t groups = rows * q.spec.groups_per_row(cols);
    q.ratio_codebook.resize(size_t((bits - 1) * kHlqcRatios));
    for (int b = 1; b < bits; ++b)
      for (int k = 0; k < kHlqcRatios; ++k)
        q.ratio_codebook[size_t((b - 1) * kHlqcRatios + k)] = float(1 << b) * (1.0f + 0.02f * k);
    q.ratio_codes.resize(size_t(groups * (bits - 1)));
    for (uint8_t& k : q.ratio_codes) k = uint8_t(rng() % kHlqcRatios);
    round_params_to_fp16(q.params);
    for (int64_t g = 0; g < groups; ++g) {
      float* p = q.params.data() + g * (bits + 1);
      hlqc_expand(bits, std::fabs(p[0]) + 0.05f, p[bits], q.ratio_codes.data() + g * (bits - 1),
                  q.ratio_codebook.data(), p);
    }
    round_params_to_fp16(q.params);  // s_0 + 0.05 back onto fp16
    for (int64_t g = 0; g < groups; ++g) {
      float* p = q.params.data() + g * (bits + 1);
      hlqc_expand(bits, p[0], p[bits], q.ratio_codes.data() + g * (bits - 1),
                  q.ratio_codebook.data(), p);
    }
    check_hlqc(q);
  }
  return q;
}

// L = 0.5 ||W_eff(params) - T||^2 with the codes frozen: smooth in the parameters, so its
// central differences must match accumulate_grads.
TEST(QuantizedLinearParam, ParameterGradientsMatchFiniteDifferences) {
  ThreadPool pool(2);
  for (QuantKind kind : {QuantKind::HLQ, QuantKind::Uniform, QuantKind::HLQC}) {
    QuantizedLinearParam p(random_fit(kind, 3, 8, 5, 24, 11));
    // HLQC trains s_0 and m per group; its s_1, s_2 follow s_0 through the frozen ratios.
    EXPECT_EQ(p.params().size(), size_t(5 * 3 * (kind == QuantKind::HLQC ? 2 : kind == QuantKind::HLQ ? 4 : 2)));
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> T(5 * 24);
    for (float& t : T) t = nd(rng);
    auto loss = [&] {
      p.update_effective(false, pool);
      double l = 0;
      for (size_t i = 0; i < T.size(); ++i) l += 0.5 * std::pow(double(p.effective()[i]) - T[i], 2);
      return l;
    };
    loss();
    std::vector<float> d(T.size());
    for (size_t i = 0; i < T.size(); ++i) d[i] = p.effective()[i] - T[i];
    p.zero_grads();
    p.accumulate_grads(d.data(), true, pool);
    for (size_t k = 0; k < p.params().size(); ++k) {
      const float keep = p.params()[k], h = 1e-2f;
      p.params()[k] = keep + h;
      const double up = loss();
      p.params()[k] = keep - h;
      const double down = loss();
      p.params()[k] = keep;
      EXPECT_NEAR(p.grad_params()[k], (up - down) / (2 * h), 1e-3 * (1 + std::fabs(up - down) / h))
          << "kind " << int(kind) << " parameter " << k;
    }
    // Straight through: the latent gradient is dL/dW_eff itself.
    for (size_t i = 0; i < d.size(); ++i) EXPECT_EQ(p.grad_latent()[i], d[i]);
  }
}

TEST(QuantizedLinearParam, StartsOnItsOwnCodesAndRefusesOtherFormats) {
  ThreadPool pool(2);
  QuantizedMatrix q = random_fit(QuantKind::HLQ, 2, 8, 4, 16, 3);
  for (float& v : q.params) v = std::fabs(v) + 0.1f;  // distinct levels: nearest is unambiguous
  round_params_to_fp16(q.params);
  QuantizedLinearParam p(q);
  p.update_effective(true, pool);
  EXPECT_EQ(p.current().codes, q.codes);
  const QuantizedMatrix f = p.finish(true, pool);
  EXPECT_EQ(f.codes, q.codes);
  EXPECT_EQ(f.params, q.params);
  EXPECT_THROW(QuantizedLinearParam(random_fit(QuantKind::Codebook, 2, 0, 4, 16, 3)), Error);

  // HLQC: the same, and what it finishes is a valid HLQC matrix (s_b = s_0 * ratio exactly).
  const QuantizedMatrix c = random_fit(QuantKind::HLQC, 3, 8, 4, 16, 4);
  QuantizedLinearParam pc(c);
  pc.update_effective(true, pool);
  EXPECT_EQ(pc.current().codes, c.codes);  // each latent weight sits on its own level
  for (float& v : pc.params()) v *= 1.01f;  // a step off fp16
  pc.update_effective(false, pool);
  const QuantizedMatrix fc = pc.finish(true, pool);
  EXPECT_NO_THROW(check_hlqc(fc));
  EXPECT_EQ(fc.ratio_codes, c.ratio_codes);
  EXPECT_EQ(fc.ratio_codebook, c.ratio_codebook);
}

// A tiny model quantized with HLQ-GPTQ w2g16, with and without Block-AP.
struct TinyRun {
  ModelConfig cfg = test::tiny("llama");
  test::MemorySource src{cfg, 7};
  std::vector<std::vector<int>> seqs;
  TinyRun() {
    std::mt19937 rng(9);
    for (int i = 0; i < 10; ++i) {
      std::vector<int> s(16);
      for (int& t : s) t = int(rng() % uint32_t(cfg.vocab_size));
      seqs.push_back(s);
    }
  }
  std::unique_ptr<test::RebuiltModel> quantize(std::optional<BlockApOptions> ft,
                                               QuantReport* report = nullptr,
                                               bool compact = false) {
    BlockwiseOptions opt;
    opt.layer.method = QuantMethod::HlqGptq;
    opt.layer.hlq_compact = compact;
    opt.layer.bits = 2;
    opt.layer.group = 16;
    opt.n_threads = 2;
    opt.block_ap = ft;
    BlockwiseQuantizer bq(src, opt);
    MemoryCalibActivations store(int64_t(seqs.size()), 16, cfg.dim);
    bq.embed_calibration(seqs, store);
    auto out = std::make_unique<test::RebuiltModel>(src);
    QuantReport r = bq.run(&store, *out);
    if (report) *report = r;
    return out;
  }
  // Mean squared error of block 0 of `model` against the fp block on every sequence's embeddings.
  double block0_error(const ModelSource& model) {
    ModelOptions mo;
    mo.n_threads = 2;
    mo.max_ctx = 16;
    Model fp(src, mo);
    Model q(model, mo);
    double se = 0;
    int64_t n = 0;
    std::vector<float> a(16 * size_t(cfg.dim)), b(a.size());
    for (const auto& s : seqs) {
      fp.embed(s.data(), 16, a.data());
      b = a;
      fp.forward_block(0, a.data(), 16, 0);
      q.forward_block(0, b.data(), 16, 0);
      for (size_t i = 0; i < a.size(); ++i) se += std::pow(double(a[i]) - b[i], 2);
      n += int64_t(a.size());
    }
    return se / double(n);
  }
};

TEST(BlockAp, LowersTheBlockOutputErrorBelowHlqGptq) {
  TinyRun run;
  auto gptq = run.quantize(std::nullopt);
  BlockApOptions ft;
  ft.epochs = 6;
  ft.lr_weights = 2e-3f;
  ft.lr_params = 2e-3f;
  QuantReport rep;
  auto tuned = run.quantize(ft, &rep);
  const double e_gptq = run.block0_error(*gptq), e_ft = run.block0_error(*tuned);
  EXPECT_LT(e_ft, 0.9 * e_gptq) << "Block-AP: " << e_ft << " vs HLQ-GPTQ " << e_gptq;
  std::printf("block 0 mse: HLQ-GPTQ %.4g, + Block-AP %.4g\n", e_gptq, e_ft);
  // Each block says what it did.
  ASSERT_GE(rep.notes.size(), 2u);
  EXPECT_NE(rep.notes[0].find("block-ap"), std::string::npos) << rep.notes[0];
  // Still an HLQ w2g16 file whose parameters are fp16 values.
  const QuantizedMatrix& q = tuned->quantized.at("blk.0.attn_q.weight");
  EXPECT_EQ(q.spec.name(), "hlq-w2g16");
  std::vector<float> rounded = q.params;
  round_params_to_fp16(rounded);
  EXPECT_EQ(rounded, q.params);
}

// HLQC (compact parameters): Block-AP trains s_0, the midpoint and the weights, the ratio codes
// and codebook frozen, and the file stays HLQC.
TEST(BlockAp, LowersTheBlockOutputErrorOfHlqc) {
  TinyRun run;
  auto gptq = run.quantize(std::nullopt, nullptr, /*compact=*/true);
  BlockApOptions ft;
  ft.epochs = 6;
  ft.lr_weights = 2e-3f;
  ft.lr_params = 2e-3f;
  auto tuned = run.quantize(ft, nullptr, /*compact=*/true);
  const double e_gptq = run.block0_error(*gptq), e_ft = run.block0_error(*tuned);
  EXPECT_LT(e_ft, 0.9 * e_gptq) << "Block-AP: " << e_ft << " vs HLQC-GPTQ " << e_gptq;
  std::printf("block 0 mse: HLQC-GPTQ %.4g, + Block-AP %.4g\n", e_gptq, e_ft);
  const QuantizedMatrix& q = tuned->quantized.at("blk.0.attn_q.weight");
  EXPECT_EQ(q.spec.name(), "hlqc-w2g16");
  EXPECT_NO_THROW(check_hlqc(q));
  EXPECT_EQ(q.ratio_codes, gptq->quantized.at("blk.0.attn_q.weight").ratio_codes);
}

TEST(BlockAp, KeepsTheStartWhenTrainingOnlyMakesItWorse) {
  TinyRun run;
  auto gptq = run.quantize(std::nullopt);
  BlockApOptions wild;  // steps far too large: every epoch ends worse than it began
  wild.epochs = 2;
  wild.lr_weights = 5.0f;
  wild.lr_params = 5.0f;
  QuantReport rep;
  auto tuned = run.quantize(wild, &rep);
  for (const auto& [name, q] : gptq->quantized) {
    if (block_index(name) != 0) continue;  // later blocks see block 0's (equal) outputs too
    EXPECT_EQ(tuned->quantized.at(name).codes, q.codes) << name;
    EXPECT_EQ(tuned->quantized.at(name).params, q.params) << name;
  }
  EXPECT_NE(rep.notes[0].find("start kept"), std::string::npos) << rep.notes[0];
}

TEST(BlockAp, RefusesFormatsItCannotTrain) {
  TinyRun run;
  BlockwiseOptions opt;
  opt.layer.group = 16;
  opt.block_ap = BlockApOptions{};
  opt.layer.method = QuantMethod::Ganq;
  EXPECT_THROW(BlockwiseQuantizer(run.src, opt), Error);
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct SimulatedCrash {};

QuantizeJob stories_ft_job(const std::string& model, const std::string& out, bool e2e) {
  QuantizeJob job;
  job.source_path = model;
  job.out_path = out;
  job.method = QuantMethod::HlqGptq;
  job.bits = 2;
  job.group = 32;
  job.nsamples = 4;
  job.seqlen = 32;
  job.n_threads = 2;
  job.block_ap = BlockApOptions{};
  job.block_ap->epochs = 2;
  job.block_ap->lr_weights = 1e-3f;
  job.block_ap->lr_params = 1e-3f;
  if (e2e) {
    job.e2e_qp = E2eQpOptions{};
    job.e2e_qp->epochs = 2;
    job.e2e_qp->lr = 1e-3f;
  }
  return job;
}

// Crashes at the first update whose stage and status satisfy crash_at, then reruns it; returns the
// rerun's result.
QuantizeResult crash_and_resume(
    const QuantizeJob& job,
    const std::function<bool(const std::string&, int64_t, const std::string&)>& crash_at) {
  QuantizeCallbacks cb;
  std::string stage;
  cb.stage_begin = [&](const std::string& s, int64_t) { stage = s; };
  cb.stage_update = [&](int64_t done, const std::string& status) {
    if (crash_at(stage, done, status)) throw SimulatedCrash{};
  };
  EXPECT_THROW(run_quantize_job(job, open_model(job.source_path), cb), SimulatedCrash);
  EXPECT_FALSE(fs::exists(job.out_path));
  return run_quantize_job(job, open_model(job.source_path));
}

TEST(BlockAp, InterruptedFinetuningResumesToTheSameFile) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  test::TempDir dir;
  const QuantizeJob whole = stories_ft_job(model, dir.file("whole.gguf"), false);
  run_quantize_job(whole, open_model(model));
  const QuantizeJob job = stories_ft_job(model, dir.file("resumed.gguf"), false);
  crash_and_resume(job, [](const std::string& stage, int64_t done, const std::string& status) {
    return stage == "quantize" && done == 2 && status.empty();  // after block 1's checkpoint
  });
  EXPECT_TRUE(read_bytes(job.out_path) == read_bytes(whole.out_path));
  // And Block-AP changed something: plain HLQ-GPTQ writes another file.
  QuantizeJob plain = whole;
  plain.out_path = dir.file("plain.gguf");
  plain.block_ap.reset();
  run_quantize_job(plain, open_model(model));
  EXPECT_FALSE(read_bytes(plain.out_path) == read_bytes(whole.out_path));
}

TEST(BlockAp, InterruptedE2eStageResumesFromTheBlockStageFile) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  test::TempDir dir;
  const QuantizeJob whole = stories_ft_job(model, dir.file("whole.gguf"), true);
  const QuantizeResult whole_result = run_quantize_job(whole, open_model(model));
  EXPECT_FALSE(fs::exists(whole.out_path + ".stage1.gguf")) << "stage-1 file left behind";
  const QuantizeJob job = stories_ft_job(model, dir.file("resumed.gguf"), true);
  const QuantizeResult r =
      crash_and_resume(job, [](const std::string& stage, int64_t, const std::string&) {
        return stage.rfind("e2e-qp", 0) == 0;
      });
  EXPECT_TRUE(read_bytes(job.out_path) == read_bytes(whole.out_path));
  // The resumed run reports the whole file, from stage 1's kept report.
  ASSERT_FALSE(whole_result.report.layers.empty());
  EXPECT_EQ(r.report.layers.size(), whole_result.report.layers.size());
  EXPECT_EQ(r.report.quantized_weights, whole_result.report.quantized_weights);
  EXPECT_DOUBLE_EQ(r.bits_per_weight, whole_result.bits_per_weight);
  for (const char* left : {".stage1.gguf", ".stage1.gguf.manifest", ".stage1.gguf.report"})
    EXPECT_FALSE(fs::exists(job.out_path + left)) << left << " left behind";
}

#ifdef ELUTQ_CLI_PATH
double ppl_in(const std::string& out) {
  const size_t at = out.rfind("\nppl ");
  return at == std::string::npos ? -1 : std::stod(out.substr(at + 5));
}

// The CLI's hlq-ft writes an ordinary HLQ file: it loads, and its perplexity through the LUT
// kernels stays within 0.5% of the exactly dequantized weights, as for any HLQ file.
TEST(BlockAp, CliHlqFtFileRunsThroughTheLutKernels) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  const std::string text = test::shared_file("data/tinystories/validation_head.txt");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  ELUTQ_REQUIRE_FILE(text, "TinyStories validation text");
  test::TempDir dir;
  const std::string out = dir.file("ft.gguf");
  const test::CommandResult q = test::run_elutq(
      "quantize " + model + " " + out + " --method hlq-ft --bits 2 --group 32 --calib " + text +
      " --nsamples 6 --seqlen 64 --ft-epochs 1 --e2e-epochs 1 --ft-lr-weights 1e-3 "
      "--ft-lr-params 1e-3 --e2e-lr 1e-3 -t 2 -q");
  ASSERT_EQ(q.code, 0) << q.out;
  EXPECT_NE(q.out.find("block-ap: held-out mse"), std::string::npos) << q.out;
  EXPECT_NE(q.out.find("e2e-qp: held-out cross-entropy"), std::string::npos) << q.out;
  EXPECT_FALSE(fs::exists(out + ".stage1.gguf"));
  const std::string eval = " -f " + text + " -c 64 --max-windows 8 -t 2 -q";
  const test::CommandResult lut = test::run_elutq("perplexity -m " + out + eval + " --kernel lut");
  const test::CommandResult deq = test::run_elutq("perplexity -m " + out + eval + " --kernel dequant");
  ASSERT_EQ(lut.code, 0) << lut.out;
  ASSERT_EQ(deq.code, 0) << deq.out;
  const double a = ppl_in(lut.out), b = ppl_in(deq.out);
  ASSERT_GT(b, 1.0) << deq.out;
  EXPECT_LT(std::fabs(a - b) / b, 0.005) << "LUT " << a << " vs dequant " << b;

  // E2E-QP's memory is checked against --mem-budget before the first stage, not after it.
  const std::string tight = dir.file("tight.gguf");
  const test::CommandResult over = test::run_elutq(
      "quantize " + model + " " + tight + " --method hlq-ft --bits 2 --group 32 --calib " + text +
      " --nsamples 6 --seqlen 64 --mem-budget 1M -t 2 -q");
  EXPECT_NE(over.code, 0);
  EXPECT_NE(over.out.find("E2E-QP would need about"), std::string::npos) << over.out;
  EXPECT_FALSE(fs::exists(tight + ".stage1.gguf")) << "refused before Block-AP ran";
  EXPECT_FALSE(fs::exists(tight));
}

// `elutq finetune` trains an existing HLQ file's parameters and refuses a model that is not one.
TEST(E2eQpCli, FinetunesAnExistingFileAndRefusesAnUnquantizedOne) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  const std::string text = test::shared_file("data/tinystories/validation_head.txt");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  ELUTQ_REQUIRE_FILE(text, "TinyStories validation text");
  test::TempDir dir;
  const std::string hlq = dir.file("hlq.gguf"), out = dir.file("ft.gguf");
  ASSERT_EQ(test::run_elutq("quantize " + model + " " + hlq + " --method hlq --bits 2 --group 32 -q")
                .code, 0);
  const test::CommandResult r = test::run_elutq("finetune " + hlq + " " + out + " --calib " + text +
                                                " --nsamples 10 --seqlen 64 --lr 1e-3 --epochs 2 -t 2 -q");
  ASSERT_EQ(r.code, 0) << r.out;
  double before = 0, after = 0;
  ASSERT_EQ(std::sscanf(r.out.c_str() + r.out.find("held-out cross-entropy"),
                        "held-out cross-entropy %lf -> %lf", &before, &after), 2) << r.out;
  EXPECT_LT(after, before) << r.out;
  ASSERT_TRUE(fs::exists(out));
  const test::CommandResult bad = test::run_elutq("finetune " + model + " " + dir.file("no.gguf") +
                                                  " --calib " + text + " --nsamples 4 --seqlen 64 -q");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.out.find("quantize it first"), std::string::npos) << bad.out;
  EXPECT_FALSE(fs::exists(dir.file("no.gguf")));
}

TEST(BlockAp, CliRefusesFinetuningFlagsWithoutTheirStage) {
  const test::CommandResult r = test::run_elutq("quantize in.gguf out.gguf --method hlq-gptq --ft-epochs 3");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("--ft-stages block"), std::string::npos) << r.out;
  const test::CommandResult c = test::run_elutq(
      "quantize in.gguf out.gguf --method ganq --ft-stages block");
  EXPECT_NE(c.code, 0);
  EXPECT_NE(c.out.find("HLQ, HLQC or uniform"), std::string::npos) << c.out;
}
#endif

}  // namespace
}  // namespace elutq
