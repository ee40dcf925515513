// Calibrated block-by-block quantization on the real stories260K model: calibration sampling,
// AWQ folds that keep the fp32 function, GPTQ beating RTN on the same inputs and end to end, later
// blocks calibrated on the outputs of the already-quantized ones, and the calibration-free path
// matching each layer quantized alone.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "calib_test_util.h"
#include "core/error.h"
#include "eval/perplexity.h"
#include "model/dense_linear.h"
#include "model/model.h"
#include "quant/blockwise_quantizer.h"
#include "quant/calib_data.h"
#include "quant/hessian.h"
#include "runtime/open_model.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace elutq {
namespace {

struct Stories {
  std::unique_ptr<ModelSource> src;
  std::unique_ptr<Tokenizer> tok;
  std::string text;  // TinyStories validation head
};

// Loads stories260K and the TinyStories text, or returns false (the test then skips).
bool load_stories(Stories& s) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  const std::string text = test::shared_file("data/tinystories/validation_head.txt");
  if (model.empty() || text.empty()) return false;
  s.src = open_model(model);
  s.tok = std::make_unique<Tokenizer>(s.src->tokenizer());
  std::ifstream f(text, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  s.text = ss.str();
  return true;
}

#define REQUIRE_STORIES(s)                                                          \
  Stories s;                                                                        \
  if (!load_stories(s))                                                             \
    GTEST_SKIP() << "stories260K or TinyStories text not found; set ELUTQ_SHARED";

// Calibration from the first 200 KB of the text, evaluation on text after 400 KB (held out).
std::vector<std::vector<int>> calib_seqs(const Stories& s, int n, int len, uint64_t seed = 0) {
  CalibDataOptions o;
  o.nsamples = n;
  o.seqlen = len;
  o.seed = seed;
  return calibration_from_documents({s.text.substr(0, 200000)}, *s.tok, o);
}

std::vector<int> eval_tokens(const Stories& s) {
  return s.tok->encode(s.text.substr(400000, 25000), true);
}

double ppl(const ModelSource& src, const std::vector<int>& ids) {
  ModelOptions mo;
  mo.n_threads = 1;
  mo.max_ctx = 256;
  Model m(src, mo);
  return perplexity(m, ids, 256, 0).ppl();
}

// Quantizes stories260K with calibration and returns the rebuilt fp32 model.
std::unique_ptr<test::RebuiltModel> quantize(const Stories& s, const BlockwiseOptions& opt,
                                             const std::vector<std::vector<int>>& seqs,
                                             QuantReport* rep = nullptr) {
  auto out = std::make_unique<test::RebuiltModel>(*s.src);
  BlockwiseQuantizer bq(*s.src, opt);
  std::unique_ptr<MemoryCalibActivations> store;
  if (!seqs.empty()) {
    store = std::make_unique<MemoryCalibActivations>(int64_t(seqs.size()),
                                                     int64_t(seqs[0].size()), s.src->config().dim);
    bq.embed_calibration(seqs, *store);
  }
  QuantReport r = bq.run(store.get(), *out);
  if (rep) *rep = r;
  return out;
}

TEST(CalibData, DocumentsGiveSlicesOfTheTokenStreamChosenBySeed) {
  REQUIRE_STORIES(s);
  const std::string doc = s.text.substr(0, 20000);
  const std::vector<int> all = s.tok->encode(doc, true);
  CalibDataOptions o;
  o.nsamples = 5;
  o.seqlen = 40;
  o.seed = 7;
  const auto a = calibration_from_documents({doc}, *s.tok, o);
  ASSERT_EQ(a.size(), 5u);
  for (const auto& seq : a) {
    ASSERT_EQ(seq.size(), 40u);
    // Each sequence is an aligned 40-token slot of the document's tokens.
    bool found = false;
    for (size_t p = 0; p + 40 <= all.size() && !found; p += 40)
      found = std::equal(seq.begin(), seq.end(), all.begin() + long(p));
    EXPECT_TRUE(found);
  }
  EXPECT_EQ(calibration_from_documents({doc}, *s.tok, o), a);  // same seed, same sequences
  o.seed = 8;
  EXPECT_NE(calibration_from_documents({doc}, *s.tok, o), a);
  // Several documents: every sequence is L tokens; too little text is a clear error.
  o.nsamples = 3;
  const auto b = calibration_from_documents({"One day a cat sat.", doc, "The end."}, *s.tok, o);
  EXPECT_EQ(b.size(), 3u);
  o.nsamples = 100000;
  try {
    calibration_from_documents({doc}, *s.tok, o);
    FAIL() << "too little text must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--nsamples"), std::string::npos) << e.what();
  }
  o.nsamples = 0;
  EXPECT_THROW(calibration_from_documents({doc}, *s.tok, o), Error);
}

TEST(CalibData, ModelSamplesStartAtBosAndFollowTheSeed) {
  REQUIRE_STORIES(s);
  ModelOptions mo;
  mo.n_threads = 1;
  mo.max_ctx = 64;
  Model m(*s.src, mo);
  CalibDataOptions o;
  o.nsamples = 3;
  o.seqlen = 48;
  o.seed = 3;
  const auto a = calibration_from_model(m, s.tok->bos_id(), o);
  ASSERT_EQ(a.size(), 3u);
  for (const auto& seq : a) {
    ASSERT_EQ(seq.size(), 48u);
    EXPECT_EQ(seq[0], s.tok->bos_id());
    for (int t : seq) EXPECT_TRUE(t >= 0 && t < s.src->config().vocab_size);
  }
  EXPECT_EQ(calibration_from_model(m, s.tok->bos_id(), o), a);
  EXPECT_NE(a[0], a[1]);
  // Samples of the model's own distribution read like its training data: the model finds them
  // far more likely than random tokens (perplexity well below the vocabulary size).
  std::vector<int> joined;
  for (const auto& seq : a) joined.insert(joined.end(), seq.begin(), seq.end());
  EXPECT_LT(perplexity(m, std::vector<int>(a[0]), 48, 0).ppl(), 30.0);
  o.seqlen = 65;  // over the model's context
  EXPECT_THROW(calibration_from_model(m, s.tok->bos_id(), o), Error);
}

// Sampling sequences side by side (a cache for all three) draws the same sequences as one at a
// time (a cache for one): each sequence's sampler continues the one random stream.
TEST(CalibData, ModelSamplesDoNotDependOnHowManyRunSideBySide) {
  REQUIRE_STORIES(s);
  CalibDataOptions o;
  o.nsamples = 3;
  o.seqlen = 40;
  o.seed = 5;
  ModelOptions mo;
  mo.n_threads = 2;
  mo.max_ctx = 40;
  Model one(*s.src, mo);
  const auto a = calibration_from_model(one, s.tok->bos_id(), o);
  mo.max_ctx = 120;
  Model three(*s.src, mo);
  int64_t last = 0;
  const auto b = calibration_from_model(three, s.tok->bos_id(), o, [&](int64_t k) { last = k; });
  EXPECT_EQ(b, a);
  EXPECT_EQ(last, 3 * 39);  // progress counts every sampled token
  mo.max_ctx = 80;          // two side by side, then one
  Model two(*s.src, mo);
  EXPECT_EQ(calibration_from_model(two, s.tok->bos_id(), o), a);
}

TEST(CalibData, SamplingStreamsUnderABudgetOrWhenTheFp32ModelWouldNotFit) {
  EXPECT_TRUE(sampling_streams_blocks(1, 1000, 0));          // a budget: always
  EXPECT_TRUE(sampling_streams_blocks(1, 1000, 1u << 30));
  EXPECT_FALSE(sampling_streams_blocks(uint64_t(1) << 40, 0, 0));  // available unknown: hold it
  EXPECT_FALSE(sampling_streams_blocks(750, 0, 1000));       // 3/4 of what is available fits
  EXPECT_TRUE(sampling_streams_blocks(751, 0, 1000));
  // Blocks kept: what is left after the cache and the head, in whole blocks, at most all of them.
  EXPECT_EQ(sampling_blocks_kept(1000, 300, 100, 200, 10), 3);
  EXPECT_EQ(sampling_blocks_kept(1000, 300, 100, 200, 2), 2);
  EXPECT_EQ(sampling_blocks_kept(399, 300, 100, 200, 10), 0);
  EXPECT_EQ(sampling_blocks_kept(1000, 0, 0, 0, 10), 0);
}

TEST(Calib, AwqFoldsKeepTheFp32Function) {
  REQUIRE_STORIES(s);
  BlockwiseOptions opt;
  opt.layer.method = QuantMethod::Awq;
  opt.layer.bits = 2;
  opt.layer.group = 32;
  opt.fold_only = true;
  opt.n_threads = 1;
  auto folded = quantize(s, opt, calib_seqs(s, 4, 64));
  // The folds did something: some norm weights moved by more than 5%.
  int moved = 0;
  std::vector<float> orig(64);
  for (int l = 0; l < 5; ++l)
    for (const char* what : {"attn_norm", "ffn_norm"}) {
      const std::string n = "blk." + std::to_string(l) + "." + what + ".weight";
      load_tensor_f32(*s.src->find(n), orig.data());
      const std::vector<float>& now = folded->w(n);
      for (int j = 0; j < 64; ++j) moved += std::fabs(now[j] - orig[j]) > 0.05f * std::fabs(orig[j]);
    }
  EXPECT_GT(moved, 32);
  // Same logits as the original model on held-out text.
  const std::vector<int> ids = eval_tokens(s);
  ModelOptions mo;
  mo.n_threads = 1;
  mo.max_ctx = 128;
  Model a(*s.src, mo), b(*folded, mo);
  const float* la = a.prefill_logits(ids.data(), 128, 0);
  std::vector<float> ref(la, la + s.src->config().vocab_size);
  const float* lb = b.prefill_logits(ids.data(), 128, 0);
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    max_diff = std::max(max_diff, double(std::fabs(ref[i] - lb[i])));
    max_abs = std::max(max_abs, double(std::fabs(ref[i])));
  }
  EXPECT_LT(max_diff, 1e-4 * max_abs + 1e-4);
}

TEST(Calib, GptqAndAwqBeatRtnOnTheSameInputsAndEndToEnd) {
  REQUIRE_STORIES(s);
  const auto seqs = calib_seqs(s, 8, 128);
  BlockwiseOptions opt;
  opt.layer.bits = 3;
  opt.layer.group = 32;
  opt.n_threads = 1;
  opt.layer.method = QuantMethod::Rtn;
  QuantReport rtn_rep, gptq_rep;
  auto rtn = quantize(s, opt, seqs, &rtn_rep);  // with calibration: output errors reported
  opt.layer.method = QuantMethod::Gptq;
  auto gptq = quantize(s, opt, seqs, &gptq_rep);
  opt.layer.method = QuantMethod::Awq;
  auto awq = quantize(s, opt, seqs);
  ASSERT_EQ(rtn_rep.layers.size(), 35u);  // 5 blocks x 7 projections
  ASSERT_EQ(gptq_rep.layers.size(), 35u);
  // Block 0's q/k/v see the same inputs (the embeddings) in both runs.
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(gptq_rep.layers[i].name);
    ASSERT_GE(rtn_rep.layers[i].rel_output_error, 0);
    EXPECT_LT(gptq_rep.layers[i].rel_output_error, rtn_rep.layers[i].rel_output_error);
  }
  const std::vector<int> ids = eval_tokens(s);
  const double p_fp = ppl(*s.src, ids), p_rtn = ppl(*rtn, ids), p_gptq = ppl(*gptq, ids),
               p_awq = ppl(*awq, ids);
  std::printf("ppl fp %.3f rtn %.3f gptq %.3f awq %.3f\n", p_fp, p_rtn, p_gptq, p_awq);
  EXPECT_LT(p_awq, p_rtn);
  EXPECT_LT(p_gptq, p_rtn) << "fp " << p_fp << " rtn " << p_rtn << " gptq " << p_gptq;
}

// A Linear that keeps the rows it was given in a Hessian accumulator (test reference).
class Recorder : public Linear {
 public:
  Recorder(std::shared_ptr<const std::vector<float>> w, int64_t out, int64_t in,
           HessianAccumulator* h)
      : d_(std::move(w), out, in), h_(h) {}
  int64_t in_features() const override { return d_.in_features(); }
  int64_t out_features() const override { return d_.out_features(); }
  void forward(const float* x, int64_t n, float* y, ThreadPool& p) const override {
    d_.forward(x, n, y, p);
    h_->add(x, n);
  }
  std::string describe() const override { return "recorder"; }
  uint64_t weight_bytes() const override { return 0; }

 private:
  DenseLinear d_;
  HessianAccumulator* h_;
};

TEST(Calib, LaterBlocksAreCalibratedOnQuantizedPredecessors) {
  REQUIRE_STORIES(s);
  const auto seqs = calib_seqs(s, 4, 64);
  BlockwiseOptions opt;
  opt.layer.method = QuantMethod::Gptq;
  opt.layer.bits = 2;
  opt.layer.group = 32;
  opt.n_threads = 1;
  auto out = quantize(s, opt, seqs);
  const std::string name = "blk.1.attn_q.weight";
  const int dim = s.src->config().dim;

  // Reference: blk.1.attn_q's inputs through a model whose block 0 is (pred = quantized) the
  // quantizer's output or (pred = fp) the original, then GPTQ on their Hessian.
  auto reference = [&](const ModelSource& pred) {
    ModelOptions mo;
    mo.n_threads = 1;
    mo.max_ctx = 64;
    mo.max_batch = 64;
    Model m(*s.src, mo);
    for (int sl = 0; sl < kLinearSlots; ++sl) {
      const std::string n0 = std::string("blk.0.") + linear_slot_name(LinearSlot(sl)) + ".weight";
      const TensorInfo* t = pred.find(n0);
      auto w = std::make_shared<std::vector<float>>(size_t(t->numel()));
      load_tensor_f32(*t, w->data());
      m.set_linear(0, LinearSlot(sl), std::make_unique<DenseLinear>(w, t->shape[0], t->shape[1]));
    }
    HessianAccumulator acc(dim);
    auto wq = std::make_shared<std::vector<float>>(size_t(dim * dim));
    load_tensor_f32(*s.src->find(name), wq->data());
    m.set_linear(1, LinearSlot::Q, std::make_unique<Recorder>(wq, dim, dim, &acc));
    std::vector<float> x(size_t(64 * dim));
    for (const auto& seq : seqs) {
      m.embed(seq.data(), 64, x.data());
      m.forward_block(0, x.data(), 64, 0);
      m.forward_block(1, x.data(), 64, 0);
    }
    const std::vector<float> H = acc.hessian();
    return quantize_layer(wq->data(), dim, dim, opt.layer, &H, nullptr, &m.pool()).q;
  };
  const QuantizedMatrix with_quantized = reference(*out);
  const QuantizedMatrix with_fp = reference(*s.src);
  const QuantizedMatrix& got = out->quantized.at(name);
  EXPECT_EQ(got.codes, with_quantized.codes);
  EXPECT_EQ(got.params, with_quantized.params);
  EXPECT_NE(got.codes, with_fp.codes);  // the distinction is visible at all
}

TEST(Calib, WithoutCalibrationMatchesEachLayerQuantizedAloneInFileOrder) {
  REQUIRE_STORIES(s);
  BlockwiseOptions opt;
  opt.layer.method = QuantMethod::Hlq;
  opt.layer.bits = 2;
  opt.layer.group = 32;
  opt.n_threads = 1;
  auto out = quantize(s, opt, {});
  EXPECT_EQ(out->order, model_file_order(s.src->tensor_names()));
  EXPECT_EQ(out->order.front(), "token_embd.weight");
  EXPECT_EQ(out->quantized.size(), 35u);
  for (const auto& [n, q] : out->quantized) {
    SCOPED_TRACE(n);
    ASSERT_TRUE(is_quantizable_linear(n, false));
    const TensorInfo& t = *s.src->find(n);
    std::vector<float> w(size_t(t.numel()));  // (rows, cols)
    load_tensor_f32(t, w.data());
    const QuantizedMatrix alone =
        quantize_layer(w.data(), t.shape[0], t.shape[1], opt.layer, nullptr).q;
    EXPECT_EQ(q.codes, alone.codes);
    EXPECT_EQ(q.params, alone.params);
  }
}

TEST(Calib, RefusesWhatItCannotDo) {
  REQUIRE_STORIES(s);
  BlockwiseOptions opt;
  opt.layer.method = QuantMethod::Gptq;
  opt.layer.group = 32;  // stories260K's rows are 64 weights long
  test::RebuiltModel sink(*s.src);
  BlockwiseQuantizer bq(*s.src, opt);
  try {
    bq.run(nullptr, sink);
    FAIL() << "gptq without calibration must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("calibration"), std::string::npos) << e.what();
  }
  opt.quantize_output = true;  // stories260K ties its head to the embedding
  EXPECT_THROW(BlockwiseQuantizer(*s.src, opt), Error);
  opt.quantize_output = false;
  opt.layer.bits = 9;
  EXPECT_THROW(BlockwiseQuantizer(*s.src, opt), Error);
  opt.layer.bits = 2;
  opt.layer.group = 128;  // longer than the rows
  EXPECT_THROW(BlockwiseQuantizer(*s.src, opt), Error);
}

}  // namespace
}  // namespace elutq
