// GGUF reader, model mapping and dequantization: files built byte by byte in the test
// (test_gguf_util.h), every kind of malformed input, and the real SmolLM2 GGUF when present.
#include <cmath>
#include <functional>

#include "core/error.h"
#include "core/fp16.h"
#include "format/dequant.h"
#include "format/gguf_file.h"
#include "format/gguf_model.h"
#include "runtime/open_model.h"
#include "test_gguf_util.h"
#include "test_util.h"

namespace elutq {
namespace {

using test::GgufBytes;

std::vector<float> iota_f32(size_t n, float scale = 0.25f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>(i) - 1.0f;
  return v;
}

// A tiny llama-architecture model with a byte-level BPE vocabulary.
GgufBytes tiny_llama(bool with_output = false, bool with_bias = false) {
  GgufBytes g;
  g.kv_string("general.architecture", "llama");
  g.kv_u32("llama.block_count", 1);
  g.kv_u32("llama.embedding_length", 8);
  g.kv_u32("llama.feed_forward_length", 16);
  g.kv_u32("llama.attention.head_count", 2);
  g.kv_u32("llama.attention.head_count_kv", 1);
  g.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  g.kv_u32("llama.context_length", 128);
  g.kv_f32("llama.rope.freq_base", 500000.0f);
  g.kv_string("tokenizer.ggml.model", "gpt2");
  g.kv_string("tokenizer.ggml.pre", "smollm");
  g.kv_str_array("tokenizer.ggml.tokens", {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "a", "b", "ab"});
  g.kv_i32_array("tokenizer.ggml.token_type", {3, 3, 3, 1, 1, 1});
  g.kv_str_array("tokenizer.ggml.merges", {"a b"});
  g.kv_u32("tokenizer.ggml.bos_token_id", 1);
  g.kv_u32("tokenizer.ggml.eos_token_id", 2);
  g.kv_string("tokenizer.chat_template", "{{ messages }}");
  g.add_f32("token_embd.weight", {8, 6}, iota_f32(48));
  g.add_f32("blk.0.attn_q.weight", {8, 8}, iota_f32(64));
  if (with_bias) g.add_f32("blk.0.attn_q.bias", {8}, iota_f32(8));
  if (with_output) g.add_f32("output.weight", {8, 6}, iota_f32(48));
  return g;
}

void expect_error(const std::string& bytes, const std::string& needle,
                  const std::function<void(const std::string&)>& open) {
  test::TempDir dir;
  const std::string p = dir.file("bad.gguf");
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  try {
    open(p);
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "error was: " << e.what() << "; expected it to mention '" << needle << "'";
  }
}

void expect_file_error(const GgufBytes& g, const std::string& needle) {
  expect_error(g.build(), needle, [](const std::string& p) { GgufFile f(p); });
}

TEST(Gguf, ParsesMetadataAndTensors) {
  test::TempDir dir;
  GgufBytes g;
  g.kv_u32("general.alignment", 64);
  g.kv_string("s", "hello");
  g.kv_f32("f", 1.5f);
  g.kv_bool("b", true);
  g.kv_i32("neg", -7);
  g.kv_u64("big", 1ull << 40);
  g.kv_f32_array("fa", {1.0f, -2.5f});
  g.kv_str_array("sa", {"x", "", "yz"});
  g.alignment = 64;
  const auto v = iota_f32(24);
  g.add_f32("t", {4, 3, 2}, v);  // innermost 4: outermost-first shape [2, 3, 4]
  g.add_f32("u", {5}, iota_f32(5));
  g.write(dir.file("a.gguf"));

  GgufFile f(dir.file("a.gguf"));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.get_string("s"), "hello");
  EXPECT_EQ(f.get_f32("f"), 1.5f);
  EXPECT_TRUE(f.get_bool("b"));
  EXPECT_EQ(f.get_i32("neg"), -7);
  EXPECT_EQ(f.get_u64("big"), 1ull << 40);
  EXPECT_EQ(f.get_u32("general.alignment"), 64u);
  EXPECT_EQ(f.get_f32_array("fa"), (std::vector<float>{1.0f, -2.5f}));
  auto sa = f.get_string_array("sa");
  ASSERT_EQ(sa.size(), 3u);
  EXPECT_EQ(sa[0], "x");
  EXPECT_EQ(sa[1], "");
  EXPECT_EQ(sa[2], "yz");
  EXPECT_EQ(f.get_u32_or("absent", 9u), 9u);
  EXPECT_THROW(f.get_u32("neg"), Error);       // negative into unsigned
  EXPECT_THROW(f.get_u32("big"), Error);       // does not fit 32 bits
  EXPECT_THROW(f.get_string("f"), Error);      // wrong type
  try {
    f.get_u32("llama.block_count");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("llama.block_count"), std::string::npos);
  }

  ASSERT_EQ(f.tensors().size(), 2u);
  const TensorInfo* t = f.find_tensor("t");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(t->nbytes, 96u);
  EXPECT_EQ(static_cast<uint64_t>(t->data - f.tensors()[1].data + 1000 * 64) % 64, 0u);
  std::vector<float> out(24);
  tensor_to_f32(*t, out.data());
  EXPECT_EQ(out, v);
  std::vector<float> rows(8);  // rows 2..3 of the 6 x 4 view
  tensor_rows_to_f32(*t, 2, 4, rows.data());
  EXPECT_EQ(rows, std::vector<float>(v.begin() + 8, v.begin() + 16));
  EXPECT_THROW(tensor_rows_to_f32(*t, 5, 7, rows.data()), Error);
}

TEST(Gguf, AcceptsVersion2) {
  GgufBytes g = tiny_llama();
  g.version = 2;
  test::TempDir dir;
  g.write(dir.file("v2.gguf"));
  EXPECT_EQ(GgufFile(dir.file("v2.gguf")).version(), 2u);
}

TEST(Gguf, EveryTruncationIsAnError) {
  const std::string full = tiny_llama(true, true).build();
  test::TempDir dir;
  const std::string p = dir.file("t.gguf");
  size_t checked = 0;
  // Every 3rd cut inside the header and metadata (so every field is cut somewhere), then every
  // 17th byte through the tensor directory and data.
  for (size_t n = 0; n < full.size(); n += (n < 600 ? 3 : 17)) {
    std::ofstream(p, std::ios::binary | std::ios::trunc).write(full.data(), static_cast<std::streamsize>(n));
    EXPECT_THROW(open_gguf(p), Error) << "cut at " << n << " of " << full.size();
    ++checked;
  }
  EXPECT_GT(checked, 200u);
}

// A cut inside a string array names the element (those labels are built only on failure).
TEST(Gguf, TruncatedArrayElementIsNamed) {
  const std::string full = tiny_llama().build();
  const std::string tok = std::string("\x0a\0\0\0\0\0\0\0", 8) + "<|im_end|>";
  const size_t at = full.find(tok);
  ASSERT_NE(at, std::string::npos);
  expect_error(full.substr(0, at + 8 + 3), "metadata 'tokenizer.ggml.tokens' element 2 needs 10 bytes",
               [](const std::string& p) { GgufFile f(p); });
  const size_t at5 = full.find(std::string("\x02\0\0\0\0\0\0\0", 8) + "ab", at);
  ASSERT_NE(at5, std::string::npos);
  expect_error(full.substr(0, at5 + 4), "metadata 'tokenizer.ggml.tokens' element 5 length needs 8",
               [](const std::string& p) { GgufFile f(p); });
}

TEST(Gguf, BadHeaderFields) {
  std::string b = tiny_llama().build();
  b[0] = 'X';
  expect_error(b, "not a GGUF", [](const std::string& p) { GgufFile f(p); });
  for (uint32_t v : {1u, 4u, 0xffffffffu}) {
    GgufBytes g = tiny_llama();
    g.version = v;
    expect_file_error(g, "unsupported GGUF version");
  }
  // Counts that cannot fit in the file.
  std::string c = tiny_llama().build();
  const uint64_t huge = 1ull << 60;
  std::memcpy(&c[8], &huge, 8);
  expect_error(c, "tensor count", [](const std::string& p) { GgufFile f(p); });
  c = tiny_llama().build();
  std::memcpy(&c[16], &huge, 8);
  expect_error(c, "metadata count", [](const std::string& p) { GgufFile f(p); });
}

TEST(Gguf, BadMetadata) {
  GgufBytes g;
  g.raw_kv("k", 13, "");
  expect_file_error(g, "unknown value type 13");
  GgufBytes h;
  std::string s;
  GgufBytes::put_u64(s, 1ull << 50);  // a string longer than the file
  h.raw_kv("k", 8, s);
  expect_file_error(h, "truncated");
  GgufBytes a;
  std::string arr;
  GgufBytes::put_u32(arr, 8);
  GgufBytes::put_u64(arr, 1ull << 40);  // array of strings longer than the file
  a.raw_kv("k", 9, arr);
  expect_file_error(a, "array length");
  GgufBytes d;
  d.kv_u32("k", 1);
  d.kv_u32("k", 2);
  expect_file_error(d, "appears twice");
  for (uint32_t al : {0u, 3u, 48u}) {
    GgufBytes b;
    b.kv_u32("general.alignment", al);
    expect_file_error(b, "general.alignment");
  }
}

TEST(Gguf, BadTensors) {
  {
    GgufBytes g;
    g.add_raw("w", {32, 2}, 99, std::string(100, '\0'));
    expect_file_error(g, "tensor 'w' has tensor type 99");
  }
  {
    GgufBytes g;
    g.add_f32("w", {4}, iota_f32(4));
    g.add_f32("w", {4}, iota_f32(4));
    expect_file_error(g, "appears twice");
  }
  {
    GgufBytes g;
    g.add_f32("w", {4}, iota_f32(4));
    g.tensors[0].offset_override = 1 << 20;  // aligned but past the end
    expect_file_error(g, "past the end");
  }
  {
    GgufBytes g;
    g.add_f32("w", {4}, iota_f32(4));
    g.tensors[0].offset_override = 4;  // not aligned
    expect_file_error(g, "not a multiple of the alignment");
  }
  {
    GgufBytes g;
    g.add_f32("w", {4}, iota_f32(4));
    g.tensors[0].dims = {4, 1000};  // size past the end
    expect_file_error(g, "past the end");
  }
  {
    GgufBytes g;
    g.add_f32("w", {}, {});
    expect_file_error(g, "0 dimensions");
  }
  {
    GgufBytes g;
    g.add_f32("w", {1, 1, 1, 1, 1}, iota_f32(1));
    expect_file_error(g, "5 dimensions");
  }
  {
    GgufBytes g;
    g.add_f32("w", {4, 0}, {});
    expect_file_error(g, "dimension 1 is 0");
  }
  {
    GgufBytes g;
    g.add_f32("w", {1ull << 30, 1ull << 30, 1ull << 30}, {});  // element count overflows
    expect_file_error(g, "too many elements");
  }
  {
    GgufBytes g;
    g.add_raw("w", {16}, 8, std::string(34, '\0'));  // Q8_0 rows must be multiples of 32
    expect_file_error(g, "blocks");
  }
}

TEST(Gguf, TinyLlamaModel) {
  test::TempDir dir;
  tiny_llama(false, true).write(dir.file("m.gguf"));
  ASSERT_TRUE(is_gguf_file(dir.file("m.gguf")));
  auto m = open_model(dir.file("m.gguf"));
  const ModelConfig& c = m->config();
  EXPECT_EQ(m->format_name(), "gguf");
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.rope_style, RopeStyle::Interleaved);
  EXPECT_EQ(c.n_layers, 1);
  EXPECT_EQ(c.dim, 8);
  EXPECT_EQ(c.hidden_dim, 16);
  EXPECT_EQ(c.n_heads, 2);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.vocab_size, 6);
  EXPECT_EQ(c.max_seq_len, 128);
  EXPECT_EQ(c.rope_theta, 500000.0f);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_TRUE(c.attn_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.rope_scaling.type, "none");
  const TokenizerSpec& t = m->tokenizer();
  EXPECT_EQ(t.kind, TokenizerKind::ByteLevelBPE);
  EXPECT_EQ(t.tokens.size(), 6u);
  ASSERT_EQ(t.merges.size(), 1u);
  EXPECT_EQ(t.merges[0], (std::pair<std::string, std::string>{"a", "b"}));
  EXPECT_EQ(t.pre, "smollm");
  EXPECT_EQ(t.bos_id, 1);
  EXPECT_EQ(t.eos_id, 2);
  EXPECT_FALSE(t.add_bos);  // byte-level default
  EXPECT_EQ(t.types[0], TokenType::Control);
  EXPECT_EQ(t.stop_ids, (std::vector<int>{2, 0}));  // eos (<|im_end|>) then <|endoftext|>
  EXPECT_EQ(t.chat_template, "{{ messages }}");
  EXPECT_EQ(m->get("token_embd.weight", {6, 8}).shape, (std::vector<int64_t>{6, 8}));
  EXPECT_EQ(m->find("rope_freqs.weight"), nullptr);
}

TEST(Gguf, Llama3FreqsAndQwen) {
  test::TempDir dir;
  GgufBytes g = tiny_llama(true);
  g.add_f32("rope_freqs.weight", {2}, {1.0f, 8.0f});
  g.write(dir.file("l3.gguf"));
  auto m = open_gguf(dir.file("l3.gguf"));
  EXPECT_EQ(m->config().rope_scaling.type, "llama3-freqs");
  EXPECT_FALSE(m->config().tied_embeddings);
  EXPECT_NE(m->find("rope_freqs.weight"), nullptr);

  GgufBytes q;
  q.kv_string("general.architecture", "qwen3");
  q.kv_u32("qwen3.block_count", 2);
  q.kv_u32("qwen3.embedding_length", 8);
  q.kv_u32("qwen3.feed_forward_length", 16);
  q.kv_u32("qwen3.attention.head_count", 2);
  q.kv_u32("qwen3.attention.key_length", 6);
  q.kv_f32("qwen3.attention.layer_norm_rms_epsilon", 1e-6f);
  q.kv_u32("qwen3.context_length", 64);
  q.add_f32("token_embd.weight", {8, 5}, iota_f32(40));
  q.add_f32("blk.0.attn_q_norm.weight", {6}, iota_f32(6));
  q.write(dir.file("q.gguf"));
  auto mq = open_gguf(dir.file("q.gguf"));
  EXPECT_EQ(mq->config().arch, "qwen3");
  EXPECT_EQ(mq->config().rope_style, RopeStyle::HalfSplit);
  EXPECT_EQ(mq->config().head_dim, 6);
  EXPECT_EQ(mq->config().n_kv_heads, 2);
  EXPECT_EQ(mq->config().vocab_size, 5);  // from token_embd without a token list
  EXPECT_TRUE(mq->config().qk_norm);
  EXPECT_EQ(mq->tokenizer().kind, TokenizerKind::None);
}

TEST(Gguf, ModelErrors) {
  auto open = [](const std::string& p) { open_gguf(p); };
  {
    GgufBytes h;  // an architecture but no block_count
    h.kv_string("general.architecture", "llama");
    h.kv_u32("llama.embedding_length", 8);
    expect_error(h.build(), "llama.block_count", open);
  }
  {
    GgufBytes g;
    g.kv_string("general.architecture", "gptneox");
    expect_error(g.build(), "llama, mistral, qwen2, qwen3", open);
  }
  {
    GgufBytes g;
    expect_error(g.build(), "general.architecture", open);
  }
  {
    GgufBytes g = tiny_llama();
    g.kv_u32("tokenizer.ggml.unknown_token_id", 600);
    expect_error(g.build(), "outside the vocabulary", open);
  }
}

// Hand-built blocks, values worked out from the format description.
TEST(Gguf, DequantHandBlocks) {
  std::string q8(34, '\0');
  const uint16_t half = f32_to_fp16(0.5f);
  std::memcpy(&q8[0], &half, 2);
  for (int i = 0; i < 32; ++i) q8[2 + i] = static_cast<char>(i - 16);
  TensorInfo t{"q8", {1, 32}, DType::Q8_0, reinterpret_cast<const uint8_t*>(q8.data()), 34};
  std::vector<float> y(32);
  tensor_to_f32(t, y.data());
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], 0.5f * (i - 16));

  std::string q4(18, '\0');
  const uint16_t two = f32_to_fp16(2.0f);
  std::memcpy(&q4[0], &two, 2);
  for (int j = 0; j < 16; ++j) q4[2 + j] = static_cast<char>((j & 0xF) | ((15 - j) << 4));
  TensorInfo t4{"q4", {32}, DType::Q4_0, reinterpret_cast<const uint8_t*>(q4.data()), 18};
  tensor_to_f32(t4, y.data());
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 2.0f * (j - 8));            // low nibbles: weights 0..15
    EXPECT_EQ(y[j + 16], 2.0f * (15 - j - 8));  // high nibbles: weights 16..31
  }
  TensorInfo short_t = t4;
  short_t.nbytes = 10;
  EXPECT_THROW(tensor_to_f32(short_t, y.data()), Error);
}

TEST(Gguf, SmolLM2Config) {
  const std::string path = test::smollm2_path();
  ELUTQ_REQUIRE_FILE(path, "SmolLM2-135M-Instruct Q4_1 GGUF");
  auto m = open_model(path);
  const ModelConfig& c = m->config();
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.dim, 576);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.hidden_dim, 1536);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(c.rope_style, RopeStyle::Interleaved);
  const TokenizerSpec& t = m->tokenizer();
  EXPECT_EQ(t.kind, TokenizerKind::ByteLevelBPE);
  EXPECT_EQ(t.tokens.size(), 49152u);
  EXPECT_GT(t.merges.size(), 40000u);
  EXPECT_EQ(t.tokens[t.eos_id], "<|im_end|>");
  EXPECT_FALSE(t.chat_template.empty());
  const TensorInfo& q = m->get("blk.0.attn_q.weight", {576, 576});
  EXPECT_EQ(q.dtype, DType::Q4_1);
  std::vector<float> row(576);
  tensor_rows_to_f32(q, 100, 101, row.data());
  for (float x : row) ASSERT_TRUE(std::isfinite(x));
}

}  // namespace
}  // namespace elutq
