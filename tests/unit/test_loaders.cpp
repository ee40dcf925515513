// Loaders on real and test-made files: the llama2.c stories260K checkpoint and its tok512.bin,
// and tiny Hugging Face folders (plain and sharded safetensors) written by the tests themselves.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <vector>

#include "core/error.h"
#include "format/llama2c_model.h"
#include "model/model_source.h"
#include "test_util.h"

namespace elutq {
namespace {

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

TEST(Llama2c, Stories260KConfigMatchesItsHeader) {
  const std::string path = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(path, "stories260K.bin");
  // The header read here by hand: 7 int32 (dim, hidden, layers, heads, kv_heads, vocab, seq).
  const std::vector<uint8_t> bytes = read_all(path);
  int32_t h[7];
  std::memcpy(h, bytes.data(), sizeof(h));
  auto m = open_model(path);
  const ModelConfig& c = m->config();
  EXPECT_EQ(m->format_name(), "llama2.c");
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.dim, h[0]);
  EXPECT_EQ(c.hidden_dim, h[1]);
  EXPECT_EQ(c.n_layers, h[2]);
  EXPECT_EQ(c.n_heads, h[3]);
  EXPECT_EQ(c.n_kv_heads, h[4]);
  EXPECT_EQ(c.vocab_size, h[5]);
  EXPECT_EQ(c.max_seq_len, h[6]);
  // And the figures shared/README.md gives for this model.
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_TRUE(c.tied_embeddings);  // vocab stored positive: classifier shared
  EXPECT_EQ(c.rope_style, RopeStyle::Interleaved);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
}

TEST(Llama2c, Stories260KTensorsHaveTheirShapesAndBytes) {
  const std::string path = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(path, "stories260K.bin");
  const std::vector<uint8_t> bytes = read_all(path);
  auto m = open_model(path);
  const int64_t dim = 64, hidden = 172, kv = 32, vocab = 512, layers = 5;
  EXPECT_EQ(m->tensor_names().size(), 2 + 9 * layers);
  EXPECT_EQ(m->find("output.weight"), nullptr);
  const TensorInfo& emb = m->get("token_embd.weight", {vocab, dim});
  EXPECT_EQ(emb.dtype, DType::F32);
  EXPECT_EQ(emb.nbytes, uint64_t(vocab * dim * 4));
  EXPECT_EQ(std::memcmp(emb.data, bytes.data() + 28, emb.nbytes), 0);
  for (int l = 0; l < layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    m->get(b + "attn_norm.weight", {dim});
    m->get(b + "attn_q.weight", {dim, dim});
    m->get(b + "attn_k.weight", {kv, dim});
    m->get(b + "attn_v.weight", {kv, dim});
    m->get(b + "attn_output.weight", {dim, dim});
    m->get(b + "ffn_norm.weight", {dim});
    m->get(b + "ffn_gate.weight", {hidden, dim});
    m->get(b + "ffn_up.weight", {hidden, dim});
    m->get(b + "ffn_down.weight", {dim, hidden});
  }
  // The final norm sits just before freq_cis (seq_len * head_size floats) at the end of the file.
  const TensorInfo& norm = m->get("output_norm.weight", {dim});
  const size_t norm_at = bytes.size() - 512 * 8 * 4 - dim * 4;
  EXPECT_EQ(norm.data - m->find("token_embd.weight")->data, int64_t(norm_at - 28));
  EXPECT_EQ(std::memcmp(norm.data, bytes.data() + norm_at, dim * 4), 0);
  // Layer 1's wq follows layer 0's: the stacked table is split per layer.
  EXPECT_EQ(m->find("blk.1.attn_q.weight")->data - m->find("blk.0.attn_q.weight")->data,
            dim * dim * 4);
}

TEST(Llama2c, Tok512VocabularyIsSentencePiece) {
  const std::string path = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(path, "stories260K.bin");
  auto m = open_model(path);  // finds tok512.bin beside the checkpoint
  const TokenizerSpec& t = m->tokenizer();
  ASSERT_EQ(t.kind, TokenizerKind::SentencePieceBPE);
  ASSERT_EQ(t.tokens.size(), 512u);
  ASSERT_EQ(t.scores.size(), 512u);
  ASSERT_EQ(t.types.size(), 512u);
  EXPECT_EQ(t.tokens[0], "<unk>");
  EXPECT_EQ(t.types[0], TokenType::Unknown);
  EXPECT_EQ(t.tokens[1], "<s>");
  EXPECT_EQ(t.types[1], TokenType::Control);
  EXPECT_EQ(t.tokens[2], "</s>");
  EXPECT_EQ(t.bos_id, 1);
  EXPECT_EQ(t.eos_id, 2);
  EXPECT_TRUE(t.add_bos);
  EXPECT_TRUE(t.add_space_prefix);
  EXPECT_EQ(t.tokens[3], "<0x00>");
  EXPECT_EQ(t.types[3], TokenType::Byte);
  EXPECT_EQ(t.tokens[3 + 0x0A], "<0x0A>");
  EXPECT_EQ(t.types[258], TokenType::Byte);  // <0xFF>
  // tok512.bin stores " t" with score 0 and "he" with score -1 right after the byte tokens.
  EXPECT_EQ(t.tokens[259], "\xE2\x96\x81t");
  EXPECT_EQ(t.types[259], TokenType::Normal);
  EXPECT_EQ(t.tokens[260], "he");
  EXPECT_FLOAT_EQ(t.scores[260], -1.0f);
}

TEST(Llama2c, ExplicitTokenizerPathWins) {
  const std::string path = test::shared_file("models/stories260K/stories260K.bin");
  ELUTQ_REQUIRE_FILE(path, "stories260K.bin");
  test::TempDir dir;
  EXPECT_THROW(open_model(path, dir.file("nope.bin")), Error);
  auto m = open_model(path, test::shared_file("models/stories260K/tok512.bin"));
  EXPECT_EQ(m->tokenizer().tokens.size(), 512u);
}

}  // namespace
}  // namespace elutq
