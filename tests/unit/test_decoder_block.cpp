// The one decoder block: its halves and observer taps give exactly what the whole block
// computes, and canonical tensor names round-trip.
#include <gtest/gtest.h>

#include <random>

#include "model/decoder_block.h"
#include "model/model.h"
#include "tensor/tensor_names.h"
#include "test_forward_model.h"

namespace elutq {
namespace {

using test::MemorySource;
using test::tiny;

std::vector<float> random_rows(int64_t n, int dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(size_t(n * dim));
  for (float& v : x) v = d(rng);
  return x;
}

TEST(DecoderBlock, HalvesEqualTheWholeBlockAndTapsSeeEachSubLayerInput) {
  for (const char* arch : {"llama", "qwen2", "qwen3"}) {
    ModelConfig c = tiny(arch);
    c.attn_bias = std::string(arch) == "qwen2";
    c.qk_norm = std::string(arch) == "qwen3";
    MemorySource src(c, 7);
    Model whole(src, {.n_threads = 2, .max_ctx = 32});
    Model halves(src, {.n_threads = 2, .max_ctx = 32});
    const int n = 6, dim = c.dim, q_dim = c.n_heads * c.head_dim;
    std::vector<float> x = random_rows(n, dim, 3), y = x;

    std::vector<BlockTap> seen;
    std::vector<float> ffn_in;  // the FfnIn rows the whole pass observed
    whole.forward_block(1, x.data(), n, 0, [&](BlockTap t, const float* r, int64_t m, int64_t w) {
      seen.push_back(t);
      EXPECT_EQ(m, n);
      EXPECT_EQ(w, t == BlockTap::OIn ? q_dim : t == BlockTap::DownIn ? c.hidden_dim : dim);
      if (t == BlockTap::FfnIn) ffn_in.assign(r, r + m * w);
    });
    EXPECT_EQ(seen, (std::vector<BlockTap>{BlockTap::AttnIn, BlockTap::OIn, BlockTap::FfnIn,
                                           BlockTap::DownIn}));

    const float* att = halves.attention_half(1, y.data(), n, 0);
    const std::vector<float> att_copy(att, att + int64_t(n) * q_dim);
    // Stopping after FfnIn sees the same rows and does not run the rest.
    std::vector<float> partial = y;
    std::vector<float> ffn_in_partial;
    halves.ffn_half(1, partial.data(), att_copy.data(), n,
                    [&](BlockTap t, const float* r, int64_t m, int64_t w) {
                      EXPECT_NE(t, BlockTap::DownIn);
                      ffn_in_partial.assign(r, r + m * w);
                    },
                    BlockTap::FfnIn);
    EXPECT_EQ(ffn_in_partial, ffn_in) << arch;
    halves.ffn_half(1, y.data(), att_copy.data(), n);
    EXPECT_EQ(x, y) << arch << ": attention_half + ffn_half differ from forward_block";

    // AttnIn is the block's input norm.
    std::vector<float> xn(size_t(n) * dim);
    const std::vector<float> in = random_rows(n, dim, 3);
    halves.block(1).attn_input(in.data(), n, xn.data());
    std::vector<float> tapped;
    Model again(src, {.n_threads = 1, .max_ctx = 32});
    std::vector<float> in2 = in;
    again.forward_block(1, in2.data(), n, 0, [&](BlockTap t, const float* r, int64_t m, int64_t w) {
      if (t == BlockTap::AttnIn) tapped.assign(r, r + m * w);
    });
    EXPECT_EQ(tapped, xn) << arch;
  }
}

TEST(TensorNames, BuildAndParseCanonicalNames) {
  EXPECT_EQ(linear_weight_name(12, LinearSlot::Down), "blk.12.ffn_down.weight");
  EXPECT_EQ(block_tensor_name(3, "attn_norm.weight"), "blk.3.attn_norm.weight");
  EXPECT_EQ(block_index("blk.12.ffn_down.weight"), 12);
  EXPECT_EQ(block_index("blk.x.ffn_down.weight"), -1);
  EXPECT_EQ(block_index("blk.3"), -1);
  EXPECT_EQ(block_index("output.weight"), -1);
  for (LinearSlot s : kAllLinearSlots) EXPECT_EQ(linear_slot_of(linear_weight_name(4, s)), s);
  EXPECT_FALSE(linear_slot_of("blk.4.attn_q.bias").has_value());
  EXPECT_FALSE(linear_slot_of("blk.4.attn_norm.weight").has_value());
}

TEST(TensorNames, FileOrderIsEmbeddingThenBlocksAscendingThenTheRest) {
  const std::vector<std::string> names = {"output_norm.weight",     "blk.10.attn_q.weight",
                                          "blk.2.ffn_up.weight",    "token_embd.weight",
                                          "blk.2.attn_norm.weight", "output.weight",
                                          "blk.10.attn_norm.weight"};
  EXPECT_EQ(model_file_order(names),
            (std::vector<std::string>{"token_embd.weight", "blk.2.ffn_up.weight",
                                      "blk.2.attn_norm.weight", "blk.10.attn_q.weight",
                                      "blk.10.attn_norm.weight", "output_norm.weight",
                                      "output.weight"}));
}

}  // namespace
}  // namespace elutq
