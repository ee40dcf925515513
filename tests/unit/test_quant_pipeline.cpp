// Quantizing an in-memory one-block model without calibration (BlockwiseQuantizer, as `elutq
// quantize --method hlq` runs it): which tensors are quantized, that the sink sees every tensor
// once in order, that results match quantizing each layer alone, and that calibrated methods are
// refused with a clear error.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "quant/blockwise_quantizer.h"
#include "test_forward_model.h"

namespace elutq {
namespace {

// One LLaMA block: dim 64, 4 heads of 16 (2 KV heads), feed-forward 96, vocabulary 40.
ModelConfig one_block() {
  ModelConfig c = test::tiny("llama");
  c.n_layers = 1;
  c.dim = 64;
  c.hidden_dim = 96;
  c.head_dim = 16;
  return c;
}

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
  const test::MemorySource m(one_block(), 41);
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
  EXPECT_EQ(sink.order, model_file_order(m.tensor_names()));
  ASSERT_EQ(sink.quantized.size(), 7u);
  ASSERT_EQ(rep.layers.size(), 7u);
  QuantizedMatrix alone =
      quantize_layer(m.w("blk.0.ffn_down.weight"), 64, 96, opt.layer, nullptr).q;
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
