// SyntheticSource (`bench --synthetic ARCH --full`): a model at real shapes without weights runs
// the whole forward pass once a factory supplies the projections, deterministically, and a model
// built over it without such a factory is refused instead of reading bytes that do not exist.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "format/synthetic_source.h"
#include "kernels/packed_matrix.h"
#include "model/lut_linear.h"
#include "model/model.h"
#include "test_util.h"

namespace elutq {
namespace {

ModelConfig small_config() {
  ModelConfig c;
  c.arch = "qwen2";
  c.n_layers = 2;
  c.dim = 128;
  c.hidden_dim = 256;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 32;
  c.vocab_size = 300;
  c.max_seq_len = 64;
  c.attn_bias = true;
  return c;
}

std::vector<float> run(const SyntheticSource& src) {
  const QuantSpec spec = parse_quant_spec("hlq-w2g64");
  uint64_t seed = 1;
  ModelOptions mo;
  mo.n_threads = 1;
  mo.max_ctx = 16;
  mo.linear_factory = [&](const ModelSource&, const TensorInfo& t) -> std::unique_ptr<Linear> {
    EXPECT_TRUE(SyntheticSource::weightless(t)) << t.name;
    return std::make_unique<LutLinear>(
        PackedMatrix::synthetic(spec, t.shape[0], t.shape[1], seed++, lut_unit_layout(active_isa())),
        active_isa(), LutTables::Int16);
  };
  Model m(src, mo);
  const std::vector<int> ids = {1, 5, 9, 200, 7};
  const float* l = m.prefill_logits(ids.data(), int(ids.size()), 0);
  return std::vector<float>(l, l + src.config().vocab_size);
}

TEST(SyntheticSource, RunsTheWholeModelThroughAFactory) {
  const SyntheticSource a(small_config(), 7), b(small_config(), 7);
  ASSERT_NE(a.find("blk.1.attn_q.bias"), nullptr);
  EXPECT_TRUE(SyntheticSource::weightless(*a.find("output.weight")));
  EXPECT_FALSE(SyntheticSource::weightless(*a.find("token_embd.weight")));
  const std::vector<float> la = run(a), lb = run(b);
  for (float v : la) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(la, lb);
  double spread = 0;
  for (float v : la) spread += std::fabs(v - la[0]);
  EXPECT_GT(spread, 0.0);  // not a constant: the random weights reach the logits
}

TEST(SyntheticSource, WithoutAFactoryTheWeightlessTensorsAreRefused) {
  const SyntheticSource s(small_config(), 7);
  ModelOptions mo;
  mo.n_threads = 1;
  mo.max_ctx = 16;
  EXPECT_THROW(Model(s, mo), Error);
}

}  // namespace
}  // namespace elutq
