// The elutq quantized model file: every format round-trips through it bit for bit; config and
// tokenizer come back as they were; a data-free HLQ model written and loaded back gives the same
// logits as the in-memory dequantized model (dequant path) and close ones (LUT path); the writer
// enforces its order and leaves nothing behind on failure; corrupt files give one clear Error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "format/dequant.h"
#include "format/gguf_file.h"
#include "format/quantized_model_writer.h"
#include "kernels/packed_matrix.h"
#include "model/dense_linear.h"
#include "model/model.h"
#include "quant/blockwise_quantizer.h"
#include "runtime/open_model.h"
#include "runtime/quantized_linear_factory.h"
#include "tensor/model_source.h"
#include "tensor/quantized_matrix_codec.h"
#include "test_forward_model.h"
#include "test_util.h"

namespace elutq {
namespace {

// A random quantized matrix: codes uniform in [0, 2^B), fp16-representable parameters.
QuantizedMatrix random_quantized(const QuantSpec& spec, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  QuantizedMatrix q;
  q.spec = spec;
  q.rows = rows;
  q.cols = cols;
  q.codes.resize(size_t(rows * cols));
  for (auto& c : q.codes) c = uint8_t(rng() % (1u << spec.bits));
  const int64_t per_row = spec.kind == QuantKind::Codebook
                              ? (int64_t(1) << spec.bits)
                              : spec.groups_per_row(cols) * spec.params_per_group();
  q.params.resize(size_t(rows * per_row));
  std::normal_distribution<float> nd(0.0f, 0.05f);
  for (auto& p : q.params) p = nd(rng);
  round_params_to_fp16(q.params);
  if (spec.kind == QuantKind::HLQC) {  // a codebook, ratio codes, parameters expanded from them
    const int B = spec.bits;
    std::uniform_real_distribution<float> ratio(0.5f, 1.5f);
    q.ratio_codebook.resize(size_t((B - 1) * kHlqcRatios));
    for (size_t i = 0; i < q.ratio_codebook.size(); ++i)
      q.ratio_codebook[i] = float(2 << (i / kHlqcRatios)) * ratio(rng);
    const int64_t groups = rows * spec.groups_per_row(cols);
    q.ratio_codes.resize(size_t(groups * (B - 1)));
    for (auto& k : q.ratio_codes) k = uint8_t(rng() % kHlqcRatios);
    for (int64_t g = 0; g < groups; ++g) {
      float* p = q.params.data() + g * (B + 1);
      hlqc_expand(B, p[0], p[B], q.ratio_codes.data() + g * (B - 1), q.ratio_codebook.data(), p);
    }
  }
  return q;
}

std::vector<QuantSpec> every_format() {
  std::vector<QuantSpec> specs;
  for (int b = 1; b <= 4; ++b)
    for (int g : {32, 64, 128, 0}) specs.push_back({QuantKind::Uniform, b, g});
  for (int b : {5, 8}) specs.push_back({QuantKind::Uniform, b, 64});  // plain layout
  for (int b = 1; b <= 4; ++b)
    for (int g : {32, 128, 0}) specs.push_back({QuantKind::HLQ, b, g});
  for (int b = 1; b <= 4; ++b)
    for (int g : {32, 128, 0}) specs.push_back({QuantKind::HLQC, b, g});
  for (int b = 2; b <= 4; ++b) specs.push_back({QuantKind::Codebook, b, 0});
  specs.push_back({QuantKind::Codebook, 8, 0});
  return specs;
}

// Ragged shapes: rows not a multiple of the 32-row tile, columns not a multiple of 16 or of the
// group.
const int64_t kShapes[][2] = {{37, 100}, {64, 128}, {5, 200}};

void expect_same_matrix(const QuantizedMatrix& a, const QuantizedMatrix& b,
                        const std::string& what) {
  EXPECT_EQ(a.spec.name(), b.spec.name()) << what;
  EXPECT_EQ(a.rows, b.rows) << what;
  EXPECT_EQ(a.cols, b.cols) << what;
  EXPECT_TRUE(a.codes == b.codes) << what << ": codes differ";
  ASSERT_EQ(a.params.size(), b.params.size()) << what;
  EXPECT_EQ(std::memcmp(a.params.data(), b.params.data(), a.params.size() * 4), 0)
      << what << ": parameters differ";
  EXPECT_TRUE(a.ratio_codes == b.ratio_codes) << what << ": ratio codes differ";
  EXPECT_TRUE(a.ratio_codebook == b.ratio_codebook) << what << ": ratio codebooks differ";
}

TEST(QuantizedBlob, EveryFormatRoundTripsBitExactly) {
  uint32_t seed = 1;
  for (const QuantSpec& spec : every_format()) {
    for (const auto& shape : kShapes) {
      const QuantizedMatrix q = random_quantized(spec, shape[0], shape[1], ++seed);
      const std::string what =
          spec.name() + " " + std::to_string(shape[0]) + "x" + std::to_string(shape[1]);
      const std::vector<uint8_t> blob = encode_quantized_blob(q);
      EXPECT_EQ(blob.size(), quantized_blob_bytes(spec, q.rows, q.cols)) << what;
      const QuantizedBlobInfo info = inspect_quantized_blob(blob.data(), blob.size());
      EXPECT_EQ(info.lut, quantized_blob_is_lut(spec)) << what;
      const QuantizedMatrix back = decode_quantized_blob(blob.data(), blob.size());
      expect_same_matrix(q, back, what);
      // One encoding: what comes back encodes to the same bytes (a resume checkpoint replays
      // tensors that way), and the LUT kernels' packed matrix is the same blob.
      EXPECT_TRUE(encode_quantized_blob(back) == blob) << what;
      if (info.lut) {
        const PackedMatrix packed = PackedMatrix::pack(q);
        EXPECT_TRUE(std::equal(blob.begin(), blob.end(), packed.data(),
                               packed.data() + packed.size_bytes()))
            << what;
      }
      // Dequantized values equal the reference dequantization of the original, for a row range.
      std::vector<float> ref(size_t(q.rows * q.cols)), got(size_t((q.rows - 2) * q.cols));
      dequantize(q, ref.data());
      quantized_blob_rows_to_f32(blob.data(), blob.size(), 1, q.rows - 1, got.data());
      EXPECT_EQ(std::memcmp(got.data(), ref.data() + q.cols, got.size() * 4), 0) << what;
    }
  }
}

// A ModelSource over another with a chosen config and tokenizer and extra tensors appended.
class OverlaySource : public ModelSource {
 public:
  explicit OverlaySource(const ModelSource& base)
      : base_(base), cfg_(base.config()), tok_(base.tokenizer()) {}
  ModelConfig& cfg() { return cfg_; }
  TokenizerSpec& tok() { return tok_; }
  // Adds an fp32 tensor; the source keeps the data.
  void add(const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float>& v = data_[name];
    v.assign(size_t(n), 0.5f);
    TensorInfo t;
    t.name = name;
    t.shape = std::move(shape);
    t.dtype = DType::F32;
    t.data = reinterpret_cast<const uint8_t*>(v.data());
    t.nbytes = uint64_t(n) * 4;
    extra_[name] = t;
    extra_order_.push_back(name);
  }
  const ModelConfig& config() const override { return cfg_; }
  const TokenizerSpec& tokenizer() const override { return tok_; }
  std::vector<std::string> tensor_names() const override {
    std::vector<std::string> n = base_.tensor_names();
    n.insert(n.end(), extra_order_.begin(), extra_order_.end());
    return n;
  }
  const TensorInfo* find(const std::string& name) const override {
    const auto it = extra_.find(name);
    return it != extra_.end() ? &it->second : base_.find(name);
  }
  std::string format_name() const override { return "overlay"; }

 private:
  const ModelSource& base_;
  ModelConfig cfg_;
  TokenizerSpec tok_;
  std::map<std::string, std::vector<float>> data_;
  std::map<std::string, TensorInfo> extra_;
  std::vector<std::string> extra_order_;
};

TEST(QuantizedFile, EveryFormatRoundTripsThroughTheFile) {
  test::TempDir dir;
  const test::MemorySource base(test::tiny("llama"));
  OverlaySource src(base);
  QuantizedFilePlan plan;
  std::vector<std::pair<std::string, QuantizedMatrix>> mats;
  uint32_t seed = 100;
  for (const QuantSpec& spec : every_format()) {
    for (const auto& shape : kShapes) {
      const std::string name = "test." + std::to_string(mats.size()) + ".weight";
      src.add(name, {shape[0], shape[1]});
      plan.quantized[name] = spec;
      mats.push_back({name, random_quantized(spec, shape[0], shape[1], ++seed)});
    }
  }
  const std::string path = dir.file("all.gguf");
  {
    QuantizedModelWriter w(path, src, plan);
    for (const auto& [name, q] : mats) w.add_quantized(name, q);
    w.finish();
  }
  auto loaded = open_model(path);
  EXPECT_EQ(loaded->format_name(), "elutq");
  for (const auto& [name, q] : mats) {
    const TensorInfo* t = loaded->find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->dtype, DType::ELUTQ);
    EXPECT_EQ(t->shape, (std::vector<int64_t>{q.rows, q.cols}));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t->data) % 64, 0u) << name << " is not 64-byte aligned";
    expect_same_matrix(q, decode_quantized_blob(t->data, t->nbytes), q.spec.name());
    std::vector<float> ref(size_t(q.rows * q.cols)), got(ref.size());
    dequantize(q, ref.data());
    tensor_to_f32(*t, got.data());
    EXPECT_EQ(std::memcmp(got.data(), ref.data(), ref.size() * 4), 0) << q.spec.name();
  }
  // Unchanged tensors come back byte for byte.
  for (const std::string& name : base.tensor_names()) {
    const TensorInfo* a = base.find(name);
    const TensorInfo* b = loaded->find(name);
    ASSERT_NE(b, nullptr) << name;
    EXPECT_EQ(a->shape, b->shape);
    ASSERT_EQ(a->nbytes, b->nbytes);
    EXPECT_EQ(std::memcmp(a->data, b->data, a->nbytes), 0) << name;
  }
}

void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.arch, b.arch);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.dim, b.dim);
  EXPECT_EQ(a.hidden_dim, b.hidden_dim);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.max_seq_len, b.max_seq_len);
  EXPECT_EQ(a.norm_eps, b.norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.rope_scaling.type, b.rope_scaling.type);
  EXPECT_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
  if (a.rope_scaling.type == "llama3") {
    EXPECT_EQ(a.rope_scaling.low_freq_factor, b.rope_scaling.low_freq_factor);
    EXPECT_EQ(a.rope_scaling.high_freq_factor, b.rope_scaling.high_freq_factor);
    EXPECT_EQ(a.rope_scaling.original_max_position, b.rope_scaling.original_max_position);
  }
  EXPECT_EQ(a.rope_style, b.rope_style);
  EXPECT_EQ(a.attn_bias, b.attn_bias);
  EXPECT_EQ(a.qk_norm, b.qk_norm);
  EXPECT_EQ(a.tied_embeddings, b.tied_embeddings);
  EXPECT_EQ(a.sliding_window, b.sliding_window);
}

void expect_same_tokenizer(const TokenizerSpec& a, const TokenizerSpec& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.scores, b.scores);
  EXPECT_EQ(a.types, b.types);
  EXPECT_EQ(a.merges, b.merges);
  EXPECT_EQ(a.pre, b.pre);
  EXPECT_EQ(a.pre_regexes, b.pre_regexes);
  EXPECT_EQ(a.ignore_merges, b.ignore_merges);
  EXPECT_EQ(a.bos_id, b.bos_id);
  EXPECT_EQ(a.eos_id, b.eos_id);
  EXPECT_EQ(a.unk_id, b.unk_id);
  EXPECT_EQ(a.pad_id, b.pad_id);
  EXPECT_EQ(a.stop_ids, b.stop_ids);
  EXPECT_EQ(a.add_bos, b.add_bos);
  EXPECT_EQ(a.add_eos, b.add_eos);
  EXPECT_EQ(a.add_space_prefix, b.add_space_prefix);
  EXPECT_EQ(a.remove_extra_whitespaces, b.remove_extra_whitespaces);
  EXPECT_EQ(a.chat_template, b.chat_template);
}

// Writes src with nothing quantized and opens it again.
std::unique_ptr<ModelSource> round_trip(const ModelSource& src, const std::string& path) {
  QuantizedModelWriter w(path, src, QuantizedFilePlan{});
  w.finish();
  return open_model(path);
}

TEST(QuantizedFile, ConfigAndTokenizerComeBackAsWritten) {
  test::TempDir dir;
  // Qwen2-like: half-split RoPE, q/k/v biases, tied embeddings, a sliding window, a byte-level
  // tokenizer with everything GGUF's standard keys cannot carry.
  ModelConfig qc = test::tiny("qwen2");
  qc.attn_bias = true;
  qc.tied_embeddings = true;
  qc.sliding_window = 16;
  qc.rope_style = RopeStyle::HalfSplit;
  qc.rope_scaling.type = "llama3";
  qc.rope_scaling.factor = 8.0f;
  qc.rope_scaling.low_freq_factor = 1.5f;
  qc.rope_scaling.high_freq_factor = 3.0f;
  qc.rope_scaling.original_max_position = 32;
  const test::MemorySource qbase(qc);
  OverlaySource q(qbase);
  TokenizerSpec& t = q.tok();
  t.kind = TokenizerKind::ByteLevelBPE;
  for (int i = 0; i < 38; ++i) t.tokens.push_back(std::string(1, 't') += std::to_string(i));
  t.tokens.push_back("<|im_end|>");
  t.types.assign(t.tokens.size(), TokenType::Normal);
  t.types.back() = TokenType::Control;
  t.merges = {{"t", "1"}, {"t1", "2"}};
  t.pre = "qwen2";
  t.pre_regexes = {"\\p{L}+", "\\s+"};
  t.ignore_merges = true;
  t.bos_id = 3;
  t.eos_id = 38;
  t.stop_ids = {38, 4};
  t.add_bos = false;
  t.add_space_prefix = false;
  t.chat_template = "{{ messages }}";
  auto back = round_trip(q, dir.file("q.gguf"));
  expect_same_config(q.config(), back->config());
  expect_same_tokenizer(q.tokenizer(), back->tokenizer());

  // Mistral: GGUF calls it llama; the file keeps the name.
  ModelConfig mc = test::tiny("mistral");
  mc.rope_style = RopeStyle::HalfSplit;
  const test::MemorySource mbase(mc);
  auto mback = round_trip(mbase, dir.file("m.gguf"));
  expect_same_config(mc, mback->config());
}

TEST(QuantizedFile, Stories260KConfigAndTokenizerComeBack) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  test::TempDir dir;
  auto src = open_model(model);
  auto back = round_trip(*src, dir.file("s.gguf"));
  expect_same_config(src->config(), back->config());
  expect_same_tokenizer(src->tokenizer(), back->tokenizer());
}

// Records what the quantizer quantized, and forwards everything to the file writer.
struct TeeSink : QuantizedTensorSink {
  QuantizedTensorSink* next = nullptr;
  std::map<std::string, QuantizedMatrix> quantized;
  void add_quantized(const std::string& name, const QuantizedMatrix& q) override {
    quantized[name] = q;
    next->add_quantized(name, q);
  }
  void add_unchanged(const TensorInfo& t) override { next->add_unchanged(t); }
};

// Quantizes src data-free with HLQ w4g32 into path; returns the quantized matrices.
std::map<std::string, QuantizedMatrix> quantize_to_file(const ModelSource& src,
                                                        const std::string& path) {
  BlockwiseOptions opt;
  opt.layer.method = QuantMethod::Hlq;
  opt.layer.bits = 4;
  opt.layer.group = 32;
  opt.n_threads = 1;
  QuantizedFilePlan plan = plan_quantized_file(src, method_spec(opt.layer), false);
  plan.method = "hlq";
  QuantizedModelWriter w(path, src, plan);
  TeeSink tee;
  tee.next = &w;
  BlockwiseQuantizer(src, opt).run(nullptr, tee);
  w.finish();
  return tee.quantized;
}

// Largest |a - b| relative to the largest |b|.
double rel_max_diff(const float* a, const float* b, size_t n) {
  double d = 0, m = 0;
  for (size_t i = 0; i < n; ++i) {
    d = std::max(d, std::fabs(double(a[i]) - double(b[i])));
    m = std::max(m, std::fabs(double(b[i])));
  }
  return d / m;
}

// Logits (n, vocab) of a prefill with a given factory.
std::vector<float> prefill(const ModelSource& src, const std::vector<int>& ids,
                           LinearFactory factory) {
  ModelOptions o;
  o.n_threads = 1;
  o.linear_factory = std::move(factory);
  Model m(src, o);
  const int n = int(ids.size()), vocab = m.config().vocab_size, dim = m.config().dim;
  std::vector<float> hidden(size_t(n * dim)), logits(size_t(n * vocab));
  m.forward(ids.data(), n, 0, hidden.data());
  m.logits(hidden.data(), n, logits.data());
  return logits;
}

// The LUT kernels round activations to int8 tables; across a whole model that stays well within
// this (relative to the largest logit).
constexpr double kLutLogitTolerance = 0.05;

// Logits from the file: dequant equals the in-memory dequantized model (same fp32 weights, same
// code path: only float rounding could differ, and here nothing does); lut is close.
void check_file_logits(const ModelSource& src, const std::string& path,
                       const std::vector<int>& ids) {
  const std::map<std::string, QuantizedMatrix> qs = quantize_to_file(src, path);
  ASSERT_FALSE(qs.empty());
  // In memory: every quantized projection replaced by its exact dequantization.
  ModelOptions o;
  o.n_threads = 1;
  Model ref(src, o);
  for (int l = 0; l < ref.config().n_layers; ++l) {
    for (int s = 0; s < kLinearSlots; ++s) {
      const std::string name =
          "blk." + std::to_string(l) + "." + linear_slot_name(LinearSlot(s)) + ".weight";
      const QuantizedMatrix& q = qs.at(name);
      auto w = std::make_shared<std::vector<float>>(size_t(q.rows * q.cols));
      dequantize(q, w->data());
      ref.set_linear(l, LinearSlot(s), std::make_unique<DenseLinear>(w, q.rows, q.cols));
    }
  }
  const int n = int(ids.size()), vocab = ref.config().vocab_size, dim = ref.config().dim;
  std::vector<float> hidden(size_t(n * dim)), want(size_t(n * vocab));
  ref.forward(ids.data(), n, 0, hidden.data());
  ref.logits(hidden.data(), n, want.data());

  auto file = open_model(path);
  const std::vector<float> deq = prefill(*file, ids, make_linear_factory(KernelChoice::Dequant));
  EXPECT_LE(rel_max_diff(deq.data(), want.data(), want.size()), 1e-6);
  const std::vector<float> lut = prefill(*file, ids, make_linear_factory(KernelChoice::Lut));
  const double lut_err = rel_max_diff(lut.data(), want.data(), want.size());
  std::printf("lut vs dequant logits: max |diff| / max |logit| = %.5f\n", lut_err);
  EXPECT_LE(lut_err, kLutLogitTolerance);
  EXPECT_GT(lut_err, 0.0) << "the lut factory did not run the LUT kernels";
}

TEST(QuantizedFile, TinyModelLogitsMatchInMemoryDequantizedModel) {
  test::TempDir dir;
  ModelConfig c = test::tiny("llama");
  c.dim = 64;
  c.hidden_dim = 96;
  c.head_dim = 16;
  const test::MemorySource src(c, 7);
  check_file_logits(src, dir.file("tiny.gguf"), {1, 5, 9, 2, 33, 17, 4});
}

TEST(QuantizedFile, Stories260KLogitsMatchInMemoryDequantizedModel) {
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  test::TempDir dir;
  auto src = open_model(model);
  check_file_logits(*src, dir.file("s.gguf"), {1, 403, 407, 261, 378, 324, 426, 259});
}

TEST(QuantizedFile, TensorOrderPutsEmbeddingsFirstAndBlocksAscending) {
  struct Names : test::MemorySource {
    using MemorySource::MemorySource;
    std::vector<std::string> tensor_names() const override {
      return {"output_norm.weight",  "blk.10.ffn_up.weight",   "blk.2.attn_q.weight",
              "token_embd.weight",   "blk.2.attn_norm.weight", "rope_freqs.weight",
              "blk.10.attn_k.weight"};
    }
  };
  const Names src(test::tiny("llama"));
  EXPECT_EQ(model_file_order(src.tensor_names()),
            (std::vector<std::string>{"token_embd.weight", "blk.2.attn_q.weight",
                                      "blk.2.attn_norm.weight", "blk.10.ffn_up.weight",
                                      "blk.10.attn_k.weight", "output_norm.weight",
                                      "rope_freqs.weight"}));
}

TEST(QuantizedFile, WriterCopiesUnchangedTensorsItselfAndEnforcesOrder) {
  test::TempDir dir;
  const test::MemorySource src(test::tiny("llama"), 3);
  const QuantSpec spec = parse_quant_spec("hlq-w2g32");
  const QuantizedFilePlan plan = plan_quantized_file(src, spec, false);
  std::map<std::string, QuantizedMatrix> qs;
  uint32_t seed = 9;
  for (const auto& [name, s] : plan.quantized) {
    const TensorInfo* t = src.find(name);
    qs[name] = random_quantized(s, t->shape[0], t->shape[1], ++seed);
  }
  const std::vector<std::string> order = model_file_order(src.tensor_names());
  // Only add_quantized, in order.
  {
    QuantizedModelWriter w(dir.file("a.gguf"), src, plan);
    for (const std::string& n : order)
      if (plan.quantized.count(n)) w.add_quantized(n, qs[n]);
    w.finish();
  }
  // Every tensor explicitly.
  {
    QuantizedModelWriter w(dir.file("b.gguf"), src, plan);
    for (const std::string& n : order) {
      if (plan.quantized.count(n))
        w.add_quantized(n, qs[n]);
      else
        w.add_unchanged(*src.find(n));
    }
    w.finish();
  }
  auto slurp = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_EQ(slurp(dir.file("a.gguf")), slurp(dir.file("b.gguf")));

  // Out of order: the second quantized tensor before the first.
  {
    QuantizedModelWriter w(dir.file("c.gguf"), src, plan);
    std::vector<std::string> qnames;
    for (const std::string& n : order)
      if (plan.quantized.count(n)) qnames.push_back(n);
    EXPECT_THROW(w.add_quantized(qnames[1], qs[qnames[1]]), Error);
    // A wrong format is refused too.
    QuantizedMatrix wrong =
        random_quantized(parse_quant_spec("hlq-w3g32"), qs[qnames[0]].rows, qs[qnames[0]].cols, 1);
    EXPECT_THROW(w.add_quantized(qnames[0], wrong), Error);
    // Never finished: no file, no temporary left behind.
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("c.gguf")));
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) files += !e.is_directory();
  EXPECT_EQ(files, 2);
  // finish() with a quantized tensor missing fails and leaves no file.
  {
    QuantizedModelWriter w(dir.file("d.gguf"), src, plan);
    EXPECT_THROW(w.finish(), Error);
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("d.gguf")));
  // A plan naming a tensor the model lacks is refused up front.
  QuantizedFilePlan bad = plan;
  bad.quantized["blk.9.attn_q.weight"] = spec;
  EXPECT_THROW(QuantizedModelWriter(dir.file("e.gguf"), src, bad), Error);
}

TEST(QuantizedFile, ChangedAndRetypedUnquantizedTensors) {
  test::TempDir dir;
  const test::MemorySource src(test::tiny("llama"), 4);
  QuantizedFilePlan plan = plan_quantized_file(src, parse_quant_spec("uniform-w4g32"), false);
  plan.retyped["blk.1.ffn_norm.weight"] = DType::F16;   // auto-copied, converted
  plan.retyped["blk.0.ffn_norm.weight"] = DType::BF16;  // given changed, converted
  const std::string path = dir.file("f.gguf");
  const int64_t dim = src.config().dim;
  // (dim) changed values for the two norms of block 0
  std::vector<float> norm0(static_cast<size_t>(dim)), norm1(static_cast<size_t>(dim), -1.5f);
  for (int64_t i = 0; i < dim; ++i) norm0[size_t(i)] = 0.25f * float(i);
  {
    QuantizedModelWriter w(path, src, plan);
    for (const std::string& n : model_file_order(src.tensor_names())) {
      if (n == "blk.0.attn_norm.weight") w.add_f32(*src.find(n), norm0.data());
      if (n == "blk.0.ffn_norm.weight") w.add_f32(*src.find(n), norm1.data());
      const auto it = plan.quantized.find(n);
      if (it == plan.quantized.end()) continue;
      const TensorInfo* t = src.find(n);
      w.add_quantized(n, random_quantized(it->second, t->shape[0], t->shape[1], 5));
    }
    // A tensor already written cannot be changed afterwards.
    EXPECT_THROW(w.add_f32(*src.find("blk.0.attn_norm.weight"), norm0.data()), Error);
    w.finish();
  }
  auto back = open_model(path);
  std::vector<float> got(static_cast<size_t>(dim));
  const TensorInfo* a0 = back->find("blk.0.attn_norm.weight");
  EXPECT_EQ(a0->dtype, DType::F32);
  tensor_to_f32(*a0, got.data());
  EXPECT_EQ(got, norm0);
  const TensorInfo* f0 = back->find("blk.0.ffn_norm.weight");
  EXPECT_EQ(f0->dtype, DType::BF16);
  tensor_to_f32(*f0, got.data());
  EXPECT_EQ(got, norm1);  // -1.5 is exact in bf16
  const TensorInfo* f1 = back->find("blk.1.ffn_norm.weight");
  EXPECT_EQ(f1->dtype, DType::F16);
  tensor_to_f32(*f1, got.data());
  const float* want = src.w("blk.1.ffn_norm.weight");
  for (int64_t i = 0; i < dim; ++i) EXPECT_EQ(got[size_t(i)], fp16_to_f32(f32_to_fp16(want[i])));
}

TEST(QuantizedFile, AQuantizedFileAsSourceKeepsItsBlobs) {
  test::TempDir dir;
  const test::MemorySource src(test::tiny("llama"), 6);
  quantize_to_file(src, dir.file("a.gguf"));
  auto a = open_model(dir.file("a.gguf"));
  auto b = round_trip(*a, dir.file("b.gguf"));  // nothing re-quantized: blobs copied as they are
  for (const std::string& name : a->tensor_names()) {
    const TensorInfo* x = a->find(name);
    const TensorInfo* y = b->find(name);
    ASSERT_NE(y, nullptr) << name;
    EXPECT_EQ(x->dtype, y->dtype) << name;
    EXPECT_EQ(x->shape, y->shape) << name;
    ASSERT_EQ(x->nbytes, y->nbytes) << name;
    EXPECT_EQ(std::memcmp(x->data, y->data, x->nbytes), 0) << name;
  }
}

// ---- corrupt files ---------------------------------------------------------------------------

std::string read_all(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_all(const std::string& p, const std::string& s) {
  std::ofstream(p, std::ios::binary).write(s.data(), std::streamsize(s.size()));
}

// Opening (and loading both ways) must throw an Error whose message contains `expect`.
void expect_open_error(const std::string& path, const std::string& expect) {
  try {
    auto src = open_model(path);
    for (KernelChoice k : {KernelChoice::Dequant, KernelChoice::Lut}) {
      ModelOptions o;
      o.n_threads = 1;
      o.linear_factory = make_linear_factory(k);
      Model m(*src, o);
    }
    ADD_FAILURE() << "no error for " << expect;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "not one line: " << e.what();
  }
}

class QuantizedFileCorrupt : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = std::make_unique<test::MemorySource>(test::tiny("llama"), 5);
    good_ = dir_.file("good.gguf");
    quantize_to_file(*src_, good_);
    bytes_ = read_all(good_);
  }
  // Writes a modified copy and returns its path.
  std::string variant(const std::string& bytes) {
    const std::string p = dir_.file("bad" + std::to_string(n_++) + ".gguf");
    write_all(p, bytes);
    return p;
  }
  // Offset just past the first occurrence of key (a GGUF key string) in the file.
  size_t after(const std::string& s) const {
    const size_t at = bytes_.find(s);
    EXPECT_NE(at, std::string::npos) << s;
    return at + s.size();
  }
  test::TempDir dir_;
  std::unique_ptr<test::MemorySource> src_;
  std::string good_, bytes_;
  int n_ = 0;
};

TEST_F(QuantizedFileCorrupt, GoodFileOpens) {
  auto m = open_model(good_);
  EXPECT_EQ(m->find("blk.0.attn_q.weight")->dtype, DType::ELUTQ);
}

TEST_F(QuantizedFileCorrupt, Truncated) {
  expect_open_error(variant(bytes_.substr(0, bytes_.size() - 100)), "");
  expect_open_error(variant(bytes_.substr(0, bytes_.size() / 2)), "");
  expect_open_error(variant(bytes_.substr(0, 40)), "");
}

TEST_F(QuantizedFileCorrupt, UnknownFormatVersion) {
  std::string b = bytes_;
  const size_t at = after("elutq.format_version") + 4;  // past the u32 value type
  uint32_t v = 2;
  std::memcpy(&b[at], &v, 4);
  expect_open_error(variant(b), "format version 2");
}

TEST_F(QuantizedFileCorrupt, BlobHeaderBytesFlipped) {
  const size_t magic = bytes_.find("ELUTQLP1");
  ASSERT_NE(magic, std::string::npos);
  std::string b = bytes_;
  b[magic + 3] ^= 0x40;
  expect_open_error(variant(b), "unknown header");
  b = bytes_;
  b[magic + 13] = 9;  // bits
  expect_open_error(variant(b), "bad bits");
  b = bytes_;
  b[magic + 16] ^= 0x01;  // rows
  expect_open_error(variant(b), "");
}

TEST_F(QuantizedFileCorrupt, ShapeKeyDisagrees) {
  std::string b = bytes_;
  // elutq.tensor.<name>.shape: u32 ARRAY, u32 I64, u64 count, i64 rows, i64 cols.
  const size_t at = after("elutq.tensor.blk.0.attn_q.weight.shape") + 16;
  int64_t rows = 0;
  std::memcpy(&rows, &b[at], 8);
  rows += 1;
  std::memcpy(&b[at], &rows, 8);
  expect_open_error(variant(b), "shape says");
}

TEST_F(QuantizedFileCorrupt, FormatKeyDisagrees) {
  std::string b = bytes_;
  // The first format value "hlq-w4g32" (a u64 length precedes it) becomes "hlq-w3g32".
  const size_t at = after("elutq.tensor.blk.0.attn_q.weight.format") + 4 + 8;
  ASSERT_EQ(b.substr(at, 9), "hlq-w4g32");
  b[at + 5] = '3';
  expect_open_error(variant(b), "format says hlq-w3g32");
}

TEST_F(QuantizedFileCorrupt, ConfigShapeDisagrees) {
  std::string b = bytes_;
  // llama.feed_forward_length: u32 type, u32 value.
  const size_t at = after("llama.feed_forward_length") + 4;
  uint32_t v = 0;
  std::memcpy(&v, &b[at], 4);
  v += 16;
  std::memcpy(&b[at], &v, 4);
  expect_open_error(variant(b), "config implies");
}

// Writes stories260K with a different format on each projection (LUT and plain layouts, ragged
// groups) to $ELUTQ_QUANTIZED_SAMPLE, for tests/reference/test_quantized_file_gguf.py, which
// reads it with the gguf package and decodes the blobs independently. Skipped otherwise.
TEST(QuantizedFile, SampleForReference) {
  const char* out = std::getenv("ELUTQ_QUANTIZED_SAMPLE");
  if (out == nullptr) GTEST_SKIP() << "set ELUTQ_QUANTIZED_SAMPLE=PATH to write the sample";
  const std::string model = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(model, "stories260K");
  auto src = open_model(model);
  // Per projection slot: q, k, v, o, gate, up, down.
  const char* formats[kLinearSlots] = {"hlq-w2g64",     "uniform-w4g32", "hlq-w3grow",
                                       "uniform-w8g32", "codebook-w3",   "hlq-w4g32",
                                       "uniform-w2g128"};
  QuantizedFilePlan plan;
  plan.method = "mixed";
  plan.source_name = "stories260K";
  plan.default_spec = parse_quant_spec("hlq-w4g32");
  for (int l = 0; l < src->config().n_layers; ++l)
    for (int s = 0; s < kLinearSlots; ++s)
      plan.quantized["blk." + std::to_string(l) + "." + linear_slot_name(LinearSlot(s)) +
                     ".weight"] = parse_quant_spec(formats[s]);
  QuantizedModelWriter w(out, *src, plan);
  for (const std::string& name : model_file_order(src->tensor_names())) {
    const auto it = plan.quantized.find(name);
    if (it == plan.quantized.end()) continue;
    const TensorInfo* t = src->find(name);
    std::vector<float> W(size_t(t->numel()));  // (rows, cols)
    tensor_to_f32(*t, W.data());
    LayerQuantOptions o;
    const QuantSpec& spec = it->second;
    o.method = spec.kind == QuantKind::HLQ ? QuantMethod::Hlq : QuantMethod::Rtn;
    o.bits = spec.bits;
    o.group = spec.group;
    QuantizedMatrix q = quantize_layer(W.data(), t->shape[0], t->shape[1], o, nullptr).q;
    if (spec.kind == QuantKind::Codebook) {
      // A row-wise uniform grid is a codebook: c_k = zero + scale * k.
      QuantizedMatrix cb;
      cb.spec = spec;
      cb.rows = q.rows;
      cb.cols = q.cols;
      cb.codes = q.codes;
      for (int64_t r = 0; r < q.rows; ++r) {
        const float* p = q.group_params(r, 0);
        for (int k = 0; k < (1 << spec.bits); ++k)
          cb.params.push_back(dequant_code(q.spec, p, uint8_t(k)));
      }
      round_params_to_fp16(cb.params);
      q = std::move(cb);
    }
    w.add_quantized(name, q);
  }
  w.finish();
}

TEST(QuantizedFile, KernelChoiceParses) {
  EXPECT_EQ(parse_kernel_choice("lut"), KernelChoice::Lut);
  EXPECT_EQ(parse_kernel_choice("dequant"), KernelChoice::Dequant);
  EXPECT_THROW(parse_kernel_choice("fast"), Error);
}

}  // namespace
}  // namespace elutq
