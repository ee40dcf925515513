// E2E-QP (train/e2e_qp.h) on small quantized models: training lowers the cross-entropy that the
// runtime measures on the written file, changes parameters only (codes and every other tensor are
// kept), the parameter gradient of the whole model agrees with central differences, the best
// epoch on the holdout is kept (the start too), and models it cannot train are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "format/quantized_model_writer.h"
#include "format/synthetic_model.h"
#include "model/model.h"
#include "quant/quantize_job.h"
#include "runtime/open_model.h"
#include "tensor/quantized_matrix_codec.h"
#include "tensor/tensor_names.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "train/e2e_qp.h"
#include "train/e2e_qp_model.h"

namespace elutq {
namespace {

// A small synthetic model (2 blocks, GQA) written as GGUF.
std::string write_tiny_model(const test::TempDir& dir) {
  SyntheticModelOptions so;
  so.dim = 64;
  so.n_layers = 2;
  so.hidden_dim = 96;
  so.vocab_size = 300;
  so.n_heads = 4;
  so.n_kv_heads = 2;
  so.context = 64;
  so.seed = 7;
  const std::string path = dir.file("tiny.gguf");
  write_synthetic_model(path, so);
  return path;
}

// The source quantized with HLQ (data-free, no calibration), or as asked.
std::string quantize(const std::string& model, const std::string& out, int bits, int group,
                     bool compact = false, bool quantize_output = false) {
  QuantizeJob job;
  job.source_path = model;
  job.out_path = out;
  job.method = QuantMethod::Hlq;
  job.bits = bits;
  job.group = group;
  job.hlq_compact = compact;
  job.quantize_output = quantize_output;
  job.n_threads = 2;
  run_quantize_job(job, open_model(model));
  return out;
}

// What the trained file declares: the block projections quantized in their own formats; the
// rest (a quantized head included) copied as it is.
QuantizedFilePlan plan_for(const ModelSource& q) {
  QuantizedFilePlan plan;
  for (const std::string& name : q.tensor_names())
    if (linear_slot_of(name)) {
      const TensorInfo* t = q.find(name);
      plan.quantized[name] = inspect_quantized_blob(t->data, t->nbytes).spec;
      plan.default_spec = plan.quantized[name];
    }
  plan.method = "e2e-qp";
  return plan;
}

E2eQpResult train_to_file(const ModelSource& q, const std::vector<std::vector<int>>& seqs,
                          const E2eQpOptions& opt, const std::string& out,
                          const E2eQpProgress& progress = {}) {
  QuantizedModelWriter w(out, q, plan_for(q));
  E2eQpResult r = e2e_qp(q, seqs, opt, w, progress);
  w.finish();
  return r;
}

std::vector<std::vector<int>> random_seqs(int n, int len, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> tok(0, vocab - 1);
  std::vector<std::vector<int>> seqs(static_cast<size_t>(n),
                                     std::vector<int>(static_cast<size_t>(len)));
  for (auto& s : seqs)
    for (int& t : s) t = tok(rng);
  return seqs;
}

// Mean next-token cross-entropy of the model file on seqs, through the runtime's own forward.
double runtime_cross_entropy(const std::string& path, const std::vector<std::vector<int>>& seqs) {
  auto src = open_model(path);
  const int len = int(seqs[0].size()) - 1, vocab = src->config().vocab_size;
  ModelOptions mo;
  mo.n_threads = 2;
  mo.max_ctx = len;
  Model m(*src, mo);
  std::vector<float> hidden(size_t(len * src->config().dim)), logits(size_t(len) * vocab);
  double sum = 0;
  for (const auto& s : seqs) {
    m.forward(s.data(), len, 0, hidden.data());
    m.logits(hidden.data(), len, logits.data());
    for (int t = 0; t < len; ++t) {
      const float* row = logits.data() + size_t(t) * vocab;
      double mx = row[0], z = 0;
      for (int v = 1; v < vocab; ++v) mx = std::max(mx, double(row[v]));
      for (int v = 0; v < vocab; ++v) z += std::exp(double(row[v]) - mx);
      sum += mx + std::log(z) - row[s[size_t(t + 1)]];
    }
  }
  return sum / (double(seqs.size()) * len);
}

std::string tensor_bytes(const TensorInfo& t) {
  return std::string(reinterpret_cast<const char*>(t.data), t.nbytes);
}

QuantizedMatrix decoded(const ModelSource& src, const std::string& name) {
  const TensorInfo* t = src.find(name);
  return decode_quantized_blob(t->data, t->nbytes);
}

TEST(E2eQp, LowersTheRuntimeCrossEntropyAndKeepsCodes) {
  test::TempDir dir;
  const std::string qpath = quantize(write_tiny_model(dir), dir.file("q.gguf"), 2, 32);
  const auto seqs = random_seqs(6, 24, 300, 1);
  auto q = open_model(qpath);
  E2eQpOptions opt;
  opt.epochs = 4;
  opt.lr = 1e-3f;
  opt.holdout_seqs = 0;  // the best epoch is then chosen on the training sequences
  opt.batch_seqs = 2;
  opt.n_threads = 2;
  int calls = 0;
  const E2eQpResult r =
      train_to_file(*q, seqs, opt, dir.file("t.gguf"), [&](int, int, int steps, double loss) {
        EXPECT_EQ(steps, 3);
        EXPECT_TRUE(std::isfinite(loss));
        ++calls;
      });
  EXPECT_EQ(calls, 12);
  ASSERT_EQ(r.holdout_loss.size(), 4u);
  EXPECT_LT(r.best_loss, r.start_loss);
  EXPECT_GT(r.best_epoch, 0);
  // Groups of 32 per block: q 64x2, k and v 32x2, o 64x2, gate and up 96x2, down 64x3 = 960;
  // w2: s_0, s_1, z each.
  EXPECT_EQ(r.trained_params, 2 * 960 * 3);

  // (a) The runtime's cross-entropy on the training sequences, trained file against untrained.
  const double before = runtime_cross_entropy(qpath, seqs);
  const double after = runtime_cross_entropy(dir.file("t.gguf"), seqs);
  EXPECT_NEAR(before, r.start_loss, 1e-3) << "the trainer's loss is the runtime's";
  EXPECT_LT(after, before - 1e-3);

  // (b) Codes identical, parameters changed (fp16 values), every other tensor byte-identical.
  auto t = open_model(dir.file("t.gguf"));
  ASSERT_EQ(t->tensor_names(), q->tensor_names());
  int changed = 0;
  for (const std::string& name : q->tensor_names()) {
    if (!linear_slot_of(name)) {
      EXPECT_EQ(tensor_bytes(*t->find(name)), tensor_bytes(*q->find(name))) << name;
      continue;
    }
    const QuantizedMatrix a = decoded(*q, name), b = decoded(*t, name);
    EXPECT_EQ(a.spec.name(), b.spec.name()) << name;
    EXPECT_EQ(a.codes, b.codes) << name;
    ASSERT_EQ(a.params.size(), b.params.size()) << name;
    if (a.params != b.params) ++changed;
  }
  EXPECT_EQ(changed, 14) << "every projection's parameters move";
}

// The gradient of the mean cross-entropy of the whole model with respect to single parameters,
// against central differences of the loss in float: steps of 1e-3 on parameters of about 0.1 keep
// the truncation error below the loss's rounding noise over the step (about 1e-7 / 1e-3), and the
// largest gradients of a projection are about 0.1, so they must agree to 0.2 %.
// HLQC trains s_0 and the midpoint per group (its other plane scales follow s_0 through frozen
// ratios): the same check on an HLQC file.
TEST(E2eQp, ParameterGradientMatchesCentralDifferences) {
  for (bool compact : {false, true}) {
  SCOPED_TRACE(compact ? "hlqc-w3g32" : "hlq-w3g32");
  test::TempDir dir;
  const std::string qpath = quantize(write_tiny_model(dir), dir.file("q.gguf"), 3, 32, compact);
  auto q = open_model(qpath);
  ThreadPool pool(2);
  E2eQpModel m(*q, pool);
  const auto seqs = random_seqs(2, 12, 300, 3);
  const std::vector<const std::vector<int>*> batch = {&seqs[0], &seqs[1]};
  m.zero_grads();
  const double loss = m.loss_and_grad(batch);
  EXPECT_NEAR(loss, m.loss(batch), 1e-6) << "the forward with checkpoints is the plain forward";

  int checked = 0;
  for (int layer : {0, 1})
    for (LinearSlot s : {LinearSlot::Q, LinearSlot::V, LinearSlot::O, LinearSlot::Down}) {
      std::vector<float>& p = m.params(layer, s);
      const std::vector<float>& g = m.grad(layer, s);
      // The parameter with the largest gradient: its difference stands out of the noise.
      size_t k = 0;
      for (size_t i = 1; i < g.size(); ++i)
        if (std::fabs(g[i]) > std::fabs(g[k])) k = i;
      const float keep = p[k], h = 1e-3f;
      p[k] = keep + h;
      const double up = m.loss(batch);
      p[k] = keep - h;
      const double down = m.loss(batch);
      p[k] = keep;
      const double fd = (up - down) / (2.0 * double(h));
      EXPECT_NEAR(g[k], fd, 2e-3 * std::fabs(fd) + 5e-5)
          << "layer " << layer << " " << linear_slot_name(s) << " parameter " << k;
      ++checked;
    }
  EXPECT_EQ(checked, 8);
  }
}

// E2E-QP on an HLQC file: the runtime's cross-entropy falls, codes and ratio codes stay, and
// every projection is still a valid HLQC matrix (s_b = s_0 * ratio exactly, fp16 s_0 and m).
TEST(E2eQp, TrainsHlqcScalesAndMidpoints) {
  test::TempDir dir;
  const std::string qpath =
      quantize(write_tiny_model(dir), dir.file("q.gguf"), 2, 32, /*compact=*/true);
  const auto seqs = random_seqs(6, 24, 300, 1);
  auto q = open_model(qpath);
  E2eQpOptions opt;
  opt.epochs = 4;
  opt.lr = 1e-3f;
  opt.holdout_seqs = 0;
  opt.batch_seqs = 2;
  opt.n_threads = 2;
  const E2eQpResult r = train_to_file(*q, seqs, opt, dir.file("t.gguf"), nullptr);
  EXPECT_LT(r.best_loss, r.start_loss);
  EXPECT_EQ(r.trained_params, 2 * 960 * 2);  // 960 groups a block (as above), s_0 and m each
  EXPECT_LT(runtime_cross_entropy(dir.file("t.gguf"), seqs),
            runtime_cross_entropy(qpath, seqs) - 1e-3);
  auto t = open_model(dir.file("t.gguf"));
  int changed = 0;
  for (const std::string& name : q->tensor_names()) {
    if (!linear_slot_of(name)) continue;
    const QuantizedMatrix a = decoded(*q, name), b = decoded(*t, name);
    EXPECT_EQ(b.spec.name(), "hlqc-w2g32") << name;
    EXPECT_EQ(a.codes, b.codes) << name;
    EXPECT_EQ(a.ratio_codes, b.ratio_codes) << name;
    EXPECT_EQ(a.ratio_codebook, b.ratio_codebook) << name;
    EXPECT_NO_THROW(check_hlqc(b)) << name;
    if (a.params != b.params) ++changed;
  }
  EXPECT_EQ(changed, 14);
}

// An absurd learning rate only makes the holdout worse: the start is kept, and the file written
// is the input file's tensors exactly (the parameters were fp16 values already).
TEST(E2eQp, KeepsTheStartWhenTrainingOnlyHurts) {
  test::TempDir dir;
  const std::string qpath = quantize(write_tiny_model(dir), dir.file("q.gguf"), 2, 32);
  auto q = open_model(qpath);
  E2eQpOptions opt;
  opt.epochs = 2;
  opt.lr = 100.0f;  // steps of 100 times the parameters' size
  opt.schedule = LrSchedule::Constant;
  opt.n_threads = 2;
  const auto seqs = random_seqs(5, 16, 300, 5);  // a tenth held out: 1 sequence
  const E2eQpResult r = train_to_file(*q, seqs, opt, dir.file("t.gguf"));
  ASSERT_EQ(r.holdout_loss.size(), 2u);
  for (double h : r.holdout_loss) ASSERT_GT(h, r.start_loss);  // the premise
  EXPECT_EQ(r.best_epoch, 0);
  EXPECT_EQ(r.best_loss, r.start_loss);
  auto t = open_model(dir.file("t.gguf"));
  for (const std::string& name : q->tensor_names())
    EXPECT_EQ(tensor_bytes(*t->find(name)), tensor_bytes(*q->find(name))) << name;
}

// A quantized output head is used dequantized and frozen, and written back as it was.
TEST(E2eQp, TrainsAroundAQuantizedHead) {
  test::TempDir dir;
  const std::string qpath = quantize(write_tiny_model(dir), dir.file("q.gguf"), 2, 32,
                                     /*compact=*/false, /*quantize_output=*/true);
  auto q = open_model(qpath);
  ASSERT_EQ(q->find(kOutputName)->dtype, DType::ELUTQ);
  const auto seqs = random_seqs(4, 16, 300, 11);
  E2eQpOptions opt;
  opt.epochs = 2;
  opt.lr = 1e-3f;
  opt.holdout_seqs = 0;
  opt.n_threads = 2;
  const E2eQpResult r = train_to_file(*q, seqs, opt, dir.file("t.gguf"));
  const double before = runtime_cross_entropy(qpath, seqs);
  EXPECT_NEAR(r.start_loss, before, 1e-3);
  EXPECT_LT(runtime_cross_entropy(dir.file("t.gguf"), seqs), before - 1e-3);
  auto t = open_model(dir.file("t.gguf"));
  EXPECT_EQ(tensor_bytes(*t->find(kOutputName)), tensor_bytes(*q->find(kOutputName)));
}

// Records what reaches the sink, in order.
struct RecordingSink : QuantizedTensorSink {
  std::vector<std::string> names;
  void add_quantized(const std::string& name, const QuantizedMatrix&) override {
    names.push_back(name);
  }
  void add_unchanged(const TensorInfo& t) override { names.push_back(t.name); }
};

TEST(E2eQp, RefusesWhatItCannotTrain) {
  test::TempDir dir;
  const std::string model = write_tiny_model(dir);
  const auto seqs = random_seqs(3, 8, 300, 9);
  E2eQpOptions opt;
  opt.n_threads = 2;
  RecordingSink sink;

  // An unquantized model.
  const std::string plain = test::error_of([&] { e2e_qp(*open_model(model), seqs, opt, sink); });
  EXPECT_NE(plain.find("elutq quantized model"), std::string::npos) << plain;
  EXPECT_NE(plain.find("blk.0.attn_q.weight"), std::string::npos) << plain;

  // Codebook parameters are not trained.
  QuantizeJob ganq;
  ganq.source_path = model;
  ganq.out_path = dir.file("g.gguf");
  ganq.method = QuantMethod::Ganq;
  ganq.bits = 2;
  ganq.nsamples = 1;  // sampled from the model: GANQ needs calibration
  ganq.seqlen = 16;
  ganq.n_threads = 2;
  run_quantize_job(ganq, open_model(model));
  const std::string codebook =
      test::error_of([&] { e2e_qp(*open_model(ganq.out_path), seqs, opt, sink); });
  EXPECT_NE(codebook.find("codebook-w2"), std::string::npos) << codebook;

  // Bad sequences and options.
  auto q = open_model(quantize(model, dir.file("q.gguf"), 2, 32));
  EXPECT_NE(test::error_of([&] { e2e_qp(*q, {{1, 2, 3}, {4, 5}}, opt, sink); }), "");
  EXPECT_NE(test::error_of([&] { e2e_qp(*q, {{1}}, opt, sink); }), "");
  const std::string bad_token = test::error_of([&] { e2e_qp(*q, {{1, 2, 300}}, opt, sink); });
  EXPECT_NE(bad_token.find("vocabulary"), std::string::npos) << bad_token;
  E2eQpOptions all_held = opt;
  all_held.holdout_seqs = 3;
  EXPECT_NE(test::error_of([&] { e2e_qp(*q, seqs, all_held, sink); }).find("none to train"),
            std::string::npos);
  // A memory budget below the estimate is refused before anything is loaded; the estimate of
  // the written file is the one a quantize job plans with before writing it.
  const uint64_t need = E2eQpModel::estimate_bytes(*q, 7, 2);
  EXPECT_EQ(need, E2eQpModel::estimate_bytes(
                      *q, [](int, LinearSlot) { return QuantSpec{QuantKind::HLQ, 2, 32}; }, 7, 2));
  E2eQpOptions tight = opt;
  tight.mem_budget = need - 1;
  const std::string over = test::error_of([&] { e2e_qp(*q, seqs, tight, sink); });
  EXPECT_NE(over.find("memory budget"), std::string::npos) << over;
  EXPECT_TRUE(sink.names.empty()) << "nothing reaches the sink from a refused run";

  // And a good run (within its budget) hands every tensor over, in model-file order.
  tight.mem_budget = need;
  const E2eQpResult r = e2e_qp(*q, seqs, tight, sink);
  EXPECT_EQ(r.estimated_bytes, need);
  EXPECT_EQ(sink.names, model_file_order(q->tensor_names()));
}

// stories260K (a real model, 5 blocks, tied head) on TinyStories text: training on 6 sequences
// lowers the runtime's cross-entropy on them.
TEST(E2eQp, LowersStories260KCrossEntropyOnText) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  const std::string text_path = test::shared_file("data/tinystories/validation_head.txt");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  ELUTQ_REQUIRE_FILE(text_path, "TinyStories text");
  test::TempDir dir;
  const std::string qpath = quantize(model, dir.file("q.gguf"), 2, 32);
  auto q = open_model(qpath);
  std::ifstream in(text_path);
  std::string text(20000, '\0');
  in.read(text.data(), std::streamsize(text.size()));
  const std::vector<int> ids = Tokenizer(q->tokenizer()).encode(text);
  std::vector<std::vector<int>> seqs;
  for (int i = 0; i < 7; ++i) seqs.emplace_back(ids.begin() + i * 64, ids.begin() + (i + 1) * 64);
  E2eQpOptions opt;
  opt.epochs = 3;
  opt.lr = 5e-4f;
  opt.n_threads = 2;  // holdout: the last sequence
  const E2eQpResult r = train_to_file(*q, seqs, opt, dir.file("t.gguf"));
  const std::vector<std::vector<int>> trained(seqs.begin(), seqs.end() - 1);
  EXPECT_LE(r.best_loss, r.start_loss);
  EXPECT_LT(runtime_cross_entropy(dir.file("t.gguf"), trained),
            runtime_cross_entropy(qpath, trained) - 1e-3);
}

}  // namespace
}  // namespace elutq

namespace elutq {
namespace {

// The schedules with and without a linear warmup: the warmup rises to just below the peak, the
// decay then runs over the steps that remain.
TEST(LrSchedule, WarmupRisesThenTheScheduleRunsOverTheRest) {
  EXPECT_FLOAT_EQ(lr_scale_at(LrSchedule::Cosine, 0, 10), 1.0f);
  EXPECT_FLOAT_EQ(lr_scale_at(LrSchedule::Linear, 5, 10), 0.5f);
  EXPECT_FLOAT_EQ(lr_scale_at(LrSchedule::Cosine, 0, 10, 3), 0.25f);
  EXPECT_FLOAT_EQ(lr_scale_at(LrSchedule::Cosine, 2, 10, 3), 0.75f);
  EXPECT_FLOAT_EQ(lr_scale_at(LrSchedule::Cosine, 3, 10, 3), 1.0f);
  EXPECT_NEAR(lr_scale_at(LrSchedule::Cosine, 9, 10, 3), 0.5 * (1 + std::cos(M_PI * 6 / 7)), 1e-6);
  EXPECT_FLOAT_EQ(lr_scale_at(LrSchedule::Linear, 6, 8, 4), 0.5f);
  EXPECT_FLOAT_EQ(lr_scale_at(LrSchedule::Constant, 1, 8, 4), 0.4f);
  EXPECT_FLOAT_EQ(lr_scale_at(LrSchedule::Constant, 7, 8, 4), 1.0f);
}

}  // namespace
}  // namespace elutq
