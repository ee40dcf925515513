// Quantizing an in-memory one-block model without calibration (BlockwiseQuantizer, as `elutq
// quantize --method hlq` runs it): which tensors are quantized, that the sink sees every tensor
// once in order, that results match quantizing each layer alone, and that calibrated methods are
// refused with a clear error.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "core/error.h"
#include "quant/blockwise_quantizer.h"
#include "quant_test_util.h"

namespace elutq {
namespace {

class FakeModel : public ModelSource {
 public:
  // One LLaMA block: dim 64, 4 heads of 16 (2 KV heads), feed-forward 96, vocabulary 32.
  FakeModel() {
    cfg_.arch = "llama";
    cfg_.n_layers = 1;
    cfg_.dim = 64;
    cfg_.hidden_dim = 96;
    cfg_.n_heads = 4;
    cfg_.n_kv_heads = 2;
    cfg_.head_dim = 16;
    cfg_.vocab_size = 32;
    cfg_.max_seq_len = 16;
    std::mt19937 rng(41);
    add("token_embd.weight", {32, 64}, rng);
    add("blk.0.attn_norm.weight", {64}, rng);
    add("blk.0.attn_q.weight", {64, 64}, rng);
    add("blk.0.attn_k.weight", {32, 64}, rng);
    add("blk.0.attn_v.weight", {32, 64}, rng);
    add("blk.0.attn_output.weight", {64, 64}, rng);
    add("blk.0.ffn_norm.weight", {64}, rng);
    add("blk.0.ffn_gate.weight", {96, 64}, rng);
    add("blk.0.ffn_up.weight", {96, 64}, rng);
    add("blk.0.ffn_down.weight", {64, 96}, rng);
    add("output_norm.weight", {64}, rng);
    add("output.weight", {32, 64}, rng);
  }
  const ModelConfig& config() const override { return cfg_; }
  const TokenizerSpec& tokenizer() const override { return tok_; }
  std::vector<std::string> tensor_names() const override { return order_; }
  const TensorInfo* find(const std::string& n) const override {
    auto it = infos_.find(n);
    return it == infos_.end() ? nullptr : &it->second;
  }
  std::string format_name() const override { return "fake"; }
  const std::vector<float>& data(const std::string& n) const { return data_.at(n); }

 private:
  void add(const std::string& name, std::vector<int64_t> shape, std::mt19937& rng) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    data_[name] = test::random_group(rng, int(n), 0);
    TensorInfo t;
    t.name = name;
    t.shape = shape;
    t.dtype = DType::F32;
    t.data = reinterpret_cast<const uint8_t*>(data_[name].data());
    t.nbytes = uint64_t(n) * 4;
    infos_[name] = t;
    order_.push_back(name);
  }
  ModelConfig cfg_;
  TokenizerSpec tok_;
  std::map<std::string, std::vector<float>> data_;
  std::map<std::string, TensorInfo> infos_;
  std::vector<std::string> order_;
};

struct RecordingSink : QuantizedTensorSink {
  std::vector<std::string> order;
  std::map<std::string, QuantizedMatrix> quantized;
  void add_quantized(const std::string& n, const QuantizedMatrix& q) override {
    order.push_back(n);
    quantized[n] = q;
  }
  void add_unchanged(const TensorInfo& t) override { order.push_back(t.name); }
};

TEST(QuantPipeline, WhichTensorsAreQuantized) {
  EXPECT_TRUE(is_quantizable_linear("blk.3.attn_k.weight", false));
  EXPECT_TRUE(is_quantizable_linear("blk.12.ffn_gate.weight", false));
  EXPECT_FALSE(is_quantizable_linear("blk.3.attn_q.bias", false));
  EXPECT_FALSE(is_quantizable_linear("blk.3.ffn_norm.weight", false));
  EXPECT_FALSE(is_quantizable_linear("token_embd.weight", true));
  EXPECT_FALSE(is_quantizable_linear("output.weight", false));
  EXPECT_TRUE(is_quantizable_linear("output.weight", true));
}

TEST(QuantPipeline, DataFreeHlqOverAModel) {
  FakeModel m;
  BlockwiseOptions opt;
  opt.layer.method = QuantMethod::Hlq;
  opt.layer.bits = 2;
  opt.layer.group = 32;
  opt.n_threads = 1;
  RecordingSink sink;
  int64_t calls = 0;
  BlockwiseQuantizer bq(m, opt);
  bq.set_progress([&](int, int, const std::string&) { ++calls; });
  QuantReport rep = bq.run(nullptr, sink);
  EXPECT_EQ(calls, 7);  // one per quantized layer
  EXPECT_EQ(sink.order, m.tensor_names());
  ASSERT_EQ(sink.quantized.size(), 7u);
  ASSERT_EQ(rep.layers.size(), 7u);
  const std::vector<float>& w = m.data("blk.0.ffn_down.weight");
  QuantizedMatrix alone = quantize_layer(w.data(), 64, 96, opt.layer, nullptr).q;
  EXPECT_EQ(sink.quantized["blk.0.ffn_down.weight"].codes, alone.codes);
  EXPECT_EQ(sink.quantized["blk.0.ffn_down.weight"].params, alone.params);
  EXPECT_NEAR(rep.quantized_bits / rep.quantized_weights, 2.0 + 16.0 * 3 / 32, 1e-9);

  opt.layer.method = QuantMethod::Gptq;
  try {
    BlockwiseQuantizer(m, opt).run(nullptr, sink);
    FAIL() << "gptq without calibration must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("calibration"), std::string::npos);
  }
}

}  // namespace
}  // namespace elutq
