// Loaders on real and test-made files: the llama2.c stories260K checkpoint and its tok512.bin,
// and tiny Hugging Face folders (plain and sharded safetensors) written by the tests themselves.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <vector>

#include "core/error.h"
#include "format/hf_model_config.h"
#include "format/llama2c_model.h"
#include "format/safetensors_file.h"
#include "runtime/open_model.h"
#include "tensor/model_source.h"
#include "test_loaders_util.h"
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

// The canonical name each HF name must get (tensor/model_source.h), written out independently of
// the loader's own table.
std::string expected_canonical(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const char* pairs[][2] = {{"input_layernorm.weight", "attn_norm.weight"},
                            {"self_attn.q_proj.weight", "attn_q.weight"},
                            {"self_attn.k_proj.weight", "attn_k.weight"},
                            {"self_attn.v_proj.weight", "attn_v.weight"},
                            {"self_attn.o_proj.weight", "attn_output.weight"},
                            {"self_attn.q_proj.bias", "attn_q.bias"},
                            {"self_attn.k_proj.bias", "attn_k.bias"},
                            {"self_attn.v_proj.bias", "attn_v.bias"},
                            {"self_attn.q_norm.weight", "attn_q_norm.weight"},
                            {"self_attn.k_norm.weight", "attn_k_norm.weight"},
                            {"post_attention_layernorm.weight", "ffn_norm.weight"},
                            {"mlp.gate_proj.weight", "ffn_gate.weight"},
                            {"mlp.up_proj.weight", "ffn_up.weight"},
                            {"mlp.down_proj.weight", "ffn_down.weight"}};
  for (int l = 0; l < 2; ++l)
    for (const auto& p : pairs)
      if (hf == "model.layers." + std::to_string(l) + "." + p[0])
        return "blk." + std::to_string(l) + "." + p[1];
  return "";  // ignored (rotary inv_freq)
}

// Decodes a stored tensor to floats by hand, for comparing with the values written.
std::vector<float> decode(const TensorInfo& t) {
  std::vector<float> out(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (t.dtype == DType::F32) {
      std::memcpy(&out[i], t.data + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, t.data + 2 * i, 2);
      out[i] = t.dtype == DType::F16 ? fp16_to_f32(h) : bf16_to_f32(h);
    }
  }
  return out;
}

DType dtype_of(const std::string& s) {
  return s == "F32" ? DType::F32 : s == "F16" ? DType::F16 : DType::BF16;
}

// Every HF tensor written is found under its canonical name with its shape, dtype and values, and
// nothing else is there.
void expect_tensors_match(const ModelSource& m, const std::vector<test::StTensor>& written,
                          bool tied) {
  size_t mapped = 0;
  for (const auto& w : written) {
    const std::string name = expected_canonical(w.name);
    if (name.empty() || (tied && name == "output.weight")) continue;
    ++mapped;
    const TensorInfo* t = m.find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->shape, w.shape) << name;
    EXPECT_EQ(t->dtype, dtype_of(w.dtype)) << name;
    EXPECT_EQ(t->nbytes, w.bytes.size()) << name;
    EXPECT_EQ(decode(*t), w.values) << name;
  }
  EXPECT_EQ(m.tensor_names().size(), mapped);
}

TEST(HfFolder, LoadsEachArchitecture) {
  for (const std::string arch : {"llama", "mistral", "qwen2", "qwen3"}) {
    SCOPED_TRACE(arch);
    test::TempDir dir;
    const auto written = test::write_tiny_hf_folder(dir.path(), arch, false);
    auto m = open_model(dir.path());
    EXPECT_EQ(m->format_name(), "safetensors");
    const ModelConfig& c = m->config();
    EXPECT_EQ(c.arch, arch);
    EXPECT_EQ(c.dim, 8);
    EXPECT_EQ(c.hidden_dim, 12);
    EXPECT_EQ(c.n_layers, 2);
    EXPECT_EQ(c.n_heads, 2);
    EXPECT_EQ(c.n_kv_heads, 1);
    EXPECT_EQ(c.head_dim, 4);
    EXPECT_EQ(c.vocab_size, 16);
    EXPECT_EQ(c.max_seq_len, 64);
    EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
    EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
    EXPECT_EQ(c.rope_style, RopeStyle::HalfSplit);
    EXPECT_EQ(c.rope_scaling.type, "none");
    EXPECT_FALSE(c.tied_embeddings);
    EXPECT_EQ(c.attn_bias, arch == "qwen2");
    EXPECT_EQ(c.qk_norm, arch == "qwen3");
    // MistralConfig's default window applies when the key is absent.
    EXPECT_EQ(c.sliding_window, arch == "mistral" ? 4096 : 0);
    EXPECT_EQ(m->tokenizer().kind, TokenizerKind::None);  // no tokenizer.json
    expect_tensors_match(*m, written, false);
  }
}

TEST(HfFolder, AFileInTheFolderOpensTheFolder) {
  test::TempDir dir;
  const auto written = test::write_tiny_hf_folder(dir.path(), "llama", false);
  for (const char* f : {"config.json", "model.safetensors"}) {
    auto m = open_model(dir.file(f));
    EXPECT_EQ(m->format_name(), "safetensors");
    expect_tensors_match(*m, written, false);
  }
}

TEST(HfFolder, TiedEmbeddingsHaveNoOutputTensor) {
  test::TempDir dir;
  const auto written = test::write_tiny_hf_folder(dir.path(), "llama", true);
  auto m = open_model(dir.path());
  EXPECT_TRUE(m->config().tied_embeddings);
  EXPECT_EQ(m->find("output.weight"), nullptr);
  expect_tensors_match(*m, written, true);
  // A tied checkpoint that stores lm_head anyway still uses the embedding.
  test::TempDir dir2;
  test::write_bytes(dir2.file("config.json"), test::tiny_config("llama", true).dump());
  auto ts = test::tiny_tensors("llama", false);
  test::write_bytes(dir2.file("model.safetensors"), test::safetensors_bytes(ts));
  EXPECT_EQ(open_model(dir2.path())->find("output.weight"), nullptr);
}

TEST(HfFolder, ShardedFolderLoadsLikeOneFile) {
  test::TempDir dir;
  test::write_bytes(dir.file("config.json"), test::tiny_config("qwen2", false).dump());
  const auto ts = test::tiny_tensors("qwen2", false);
  const size_t half = ts.size() / 2;
  const std::vector<test::StTensor> a(ts.begin(), ts.begin() + half),
      b(ts.begin() + half, ts.end());
  test::write_bytes(dir.file("model-00001-of-00002.safetensors"), test::safetensors_bytes(a));
  test::write_bytes(dir.file("model-00002-of-00002.safetensors"), test::safetensors_bytes(b));
  nlohmann::json index = {{"metadata", {{"total_size", 0}}},
                          {"weight_map", nlohmann::json::object()}};
  for (const auto& t : a) index["weight_map"][t.name] = "model-00001-of-00002.safetensors";
  for (const auto& t : b) index["weight_map"][t.name] = "model-00002-of-00002.safetensors";
  test::write_bytes(dir.file("model.safetensors.index.json"), index.dump(2));
  auto m = open_model(dir.path());
  expect_tensors_match(*m, ts, false);
}

TEST(Safetensors, ReadsNamesShapesDtypesInDataOrder) {
  test::TempDir dir;
  const std::vector<test::StTensor> ts = {
      test::make_tensor("z", "F32", {3, 5}, 1), test::make_tensor("a", "F16", {7}, 2),
      test::make_tensor("m", "BF16", {2, 0, 4}, 3), test::make_tensor("s", "F32", {}, 4)};
  test::write_bytes(dir.file("x.safetensors"), test::safetensors_bytes(ts));
  SafetensorsFile f(dir.file("x.safetensors"));
  ASSERT_EQ(f.tensors().size(), 4u);
  // "m" has no bytes and shares its offset with "s"; the empty span sorts first.
  EXPECT_EQ(f.tensors()[0].name, "z");
  EXPECT_EQ(f.tensors()[1].name, "a");
  EXPECT_EQ(f.tensors()[2].name, "m");
  EXPECT_EQ(f.tensors()[3].name, "s");
  for (const auto& w : ts) {
    const TensorInfo* t = nullptr;
    for (const auto& x : f.tensors())
      if (x.name == w.name) t = &x;
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->shape, w.shape);
    EXPECT_EQ(t->dtype, dtype_of(w.dtype));
    EXPECT_EQ(decode(*t), w.values) << w.name;
  }
}

TEST(HfConfig, DefaultsFollowTheTransformersClasses) {
  test::TempDir dir;
  auto read = [&](nlohmann::json j) {
    test::write_bytes(dir.file("config.json"), j.dump());
    return read_hf_config(dir.file("config.json"));
  };
  nlohmann::json j = test::tiny_config("llama", false);
  for (const char* k : {"num_key_value_heads", "head_dim", "max_position_embeddings",
                        "rms_norm_eps", "rope_theta", "tie_word_embeddings"})
    j.erase(k);
  ModelConfig c = read(j);
  EXPECT_EQ(c.n_kv_heads, 2);  // = heads
  EXPECT_EQ(c.head_dim, 4);    // hidden / heads
  EXPECT_EQ(c.max_seq_len, 2048);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-6f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_FALSE(c.tied_embeddings);
  // model_type absent: the architectures list decides.
  nlohmann::json k = test::tiny_config("llama", false);
  k.erase("model_type");
  EXPECT_EQ(read(k).arch, "llama");
  // Qwen3Config: head_dim 128 and 32 KV heads by default.
  j = test::tiny_config("qwen3", false);
  j.erase("head_dim");
  j.erase("num_key_value_heads");
  j["hidden_size"] = 256;
  j["num_attention_heads"] = 32;
  c = read(j);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.n_kv_heads, 32);
  EXPECT_EQ(c.max_seq_len, 64);
  // An explicit null KV-head count means "as many as heads".
  j["num_key_value_heads"] = nullptr;
  EXPECT_EQ(read(j).n_kv_heads, 32);
}

TEST(HfConfig, RopeScalingAndSlidingWindow) {
  test::TempDir dir;
  auto read = [&](nlohmann::json j) {
    test::write_bytes(dir.file("config.json"), j.dump());
    return read_hf_config(dir.file("config.json"));
  };
  nlohmann::json j = test::tiny_config("llama", false);
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 32.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  ModelConfig c = read(j);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 32.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope_scaling.original_max_position, 8192);
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  c = read(j);
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 2.0f);
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(read(j).rope_scaling.type, "none");
  // transformers 5 writes rope_parameters instead of rope_theta / rope_scaling.
  j.erase("rope_scaling");
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
  c = read(j);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
  EXPECT_EQ(c.rope_scaling.type, "none");
  // Mistral: the window as given, none for null; Qwen2 only with use_sliding_window on all layers.
  j = test::tiny_config("mistral", false);
  j["sliding_window"] = 32;
  EXPECT_EQ(read(j).sliding_window, 32);
  j["sliding_window"] = nullptr;
  EXPECT_EQ(read(j).sliding_window, 0);
  j = test::tiny_config("qwen2", false);
  j["sliding_window"] = 32;
  EXPECT_EQ(read(j).sliding_window, 0);
  j["use_sliding_window"] = true;
  EXPECT_EQ(read(j).sliding_window, 0);  // max_window_layers 28 >= 2 layers: no layer slides
  j["max_window_layers"] = 0;
  EXPECT_EQ(read(j).sliding_window, 32);
}

}  // namespace
}  // namespace elutq
