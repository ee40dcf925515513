// The GGUF block types beyond the classic and K-quants (IQ*, TQ*, MXFP4, NVFP4, Q8_K): their
// sizes, hand-built blocks with values worked out from the format description, unknown type ids,
// and a model whose projections are stored in these types running like its fp32 copy.
// (Bit-exactness against the gguf package on random blocks: tests/reference/test_gguf_dequant.py.)
#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "core/fp16.h"
#include "format/dequant.h"
#include "format/gguf_file.h"
#include "model/model.h"
#include "runtime/open_model.h"
#include "tensor/dtype.h"
#include "test_gguf_util.h"
#include "test_util.h"

namespace elutq {
namespace {

using test::GgufBytes;

std::vector<float> dequant(DType t, const std::string& bytes, int64_t n) {
  TensorInfo info{"w", {n}, t, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
  std::vector<float> y(static_cast<size_t>(n));
  tensor_to_f32(info, y.data());
  return y;
}

void put_half(std::string& b, size_t off, float v) {
  const uint16_t h = f32_to_fp16(v);
  std::memcpy(&b[off], &h, 2);
}

TEST(GgufTypes, Sizes) {
  struct Row {
    DType t;
    uint32_t id;
    const char* name;
    int64_t elems, bytes;
  };
  // Ids, names and block layouts as the GGUF specification (and the gguf package) give them.
  const Row rows[] = {
      {DType::Q8_K, 15, "Q8_K", 256, 292},     {DType::IQ2_XXS, 16, "IQ2_XXS", 256, 66},
      {DType::IQ2_XS, 17, "IQ2_XS", 256, 74},  {DType::IQ3_XXS, 18, "IQ3_XXS", 256, 98},
      {DType::IQ1_S, 19, "IQ1_S", 256, 50},    {DType::IQ4_NL, 20, "IQ4_NL", 32, 18},
      {DType::IQ3_S, 21, "IQ3_S", 256, 110},   {DType::IQ2_S, 22, "IQ2_S", 256, 82},
      {DType::IQ4_XS, 23, "IQ4_XS", 256, 136}, {DType::IQ1_M, 29, "IQ1_M", 256, 56},
      {DType::TQ1_0, 34, "TQ1_0", 256, 54},    {DType::TQ2_0, 35, "TQ2_0", 256, 66},
      {DType::MXFP4, 39, "MXFP4", 32, 17},     {DType::NVFP4, 40, "NVFP4", 64, 36},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    EXPECT_EQ(static_cast<uint32_t>(r.t), r.id);
    EXPECT_TRUE(dtype_known(r.id));
    EXPECT_EQ(dtype_name(r.t), r.name);
    EXPECT_EQ(dtype_block_elems(r.t), r.elems);
    EXPECT_EQ(dtype_block_bytes(r.t), r.bytes);
    EXPECT_EQ(dtype_row_bytes(r.t, 4 * r.elems), uint64_t(4 * r.bytes));
    EXPECT_THROW(dtype_row_bytes(r.t, r.elems + 1), Error);
    EXPECT_NE(dtype_known_names().find(r.name), std::string::npos);
  }
  // Ids the specification left unassigned or retired, Q8_1 (never stored), Q1_0 (41, which the
  // gguf package cannot dequantize to check against), and beyond the list.
  for (uint32_t id : {4u, 5u, 9u, 31u, 32u, 33u, 36u, 37u, 38u, 41u, 99u, 1000u}) {
    EXPECT_FALSE(dtype_known(id)) << id;
  }
}

// Every known block type widens to fp32: the loader accepts no type the dequantizer lacks.
TEST(GgufTypes, EveryKnownBlockTypeDequantizes) {
  for (uint32_t id = 0; id < 100; ++id) {
    if (!dtype_known(id)) continue;
    const DType t = static_cast<DType>(id);
    if (t == DType::I8 || t == DType::I16 || t == DType::I32 || t == DType::I64 || t == DType::F64)
      continue;  // integer / double tensors are metadata-like, never weights
    SCOPED_TRACE(dtype_name(t));
    const int64_t n = 2 * dtype_block_elems(t);
    const std::vector<float> y = dequant(t, std::string(2 * dtype_block_bytes(t), '\0'), n);
    for (float v : y) EXPECT_TRUE(std::isfinite(v));
  }
}

TEST(GgufTypes, UnknownTypeIsAClearError) {
  // In a file: the reader names the tensor, the type id and what is supported.
  GgufBytes g;
  g.add_raw("w", {32, 2}, 31, std::string(64, '\0'));
  test::TempDir dir;
  g.write(dir.file("t31.gguf"));
  const std::string msg = test::error_of([&] { GgufFile f(dir.file("t31.gguf")); });
  EXPECT_NE(msg.find("tensor 'w' has tensor type 31"), std::string::npos) << msg;
  EXPECT_NE(msg.find("IQ2_XXS"), std::string::npos) << msg;  // the supported list
  // In memory: a type id that is no DType, and a known type that is not a weight type.
  std::string bytes(64, '\0');
  const std::string unknown = test::error_of([&] { dequant(static_cast<DType>(31), bytes, 16); });
  EXPECT_NE(unknown.find("unknown(31)"), std::string::npos) << unknown;
  const std::string i32 = test::error_of([&] { dequant(DType::I32, bytes, 16); });
  EXPECT_NE(i32.find("cannot be converted to fp32"), std::string::npos) << i32;
}

TEST(GgufTypes, Iq4NlHandBlock) {
  // The 16 non-uniform levels of the format.
  const int levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  std::string b(18, '\0');
  put_half(b, 0, 0.5f);
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<char>(j | (15 - j) << 4);
  const std::vector<float> y = dequant(DType::IQ4_NL, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * levels[j]);            // low nibbles: weights 0..15
    EXPECT_EQ(y[j + 16], 0.5f * levels[15 - j]);  // high nibbles: weights 16..31
  }
}

TEST(GgufTypes, Iq4XsHandBlock) {
  // Group g's 6-bit scale is g + 30 (so d * (g - 2)); every weight uses level index 8 (value 1).
  std::string b(136, '\0');
  put_half(b, 0, 0.25f);
  uint16_t high = 0;
  for (int g = 0; g < 8; ++g) {
    const int sc = g + 30;
    b[4 + g / 2] = static_cast<char>(b[4 + g / 2] | (sc & 0xF) << (4 * (g % 2)));
    high = static_cast<uint16_t>(high | (sc >> 4) << (2 * g));
  }
  std::memcpy(&b[2], &high, 2);
  for (int j = 0; j < 128; ++j) b[8 + j] = static_cast<char>(0x88);
  const std::vector<float> y = dequant(DType::IQ4_XS, b, 256);
  for (int w = 0; w < 256; ++w) EXPECT_EQ(y[w], 0.25f * float(w / 32 - 2)) << w;
}

TEST(GgufTypes, Tq2HandBlock) {
  // Weight w = 128c + 32k + l is bits 2k..2k+1 of qs[32c + l]; value q - 1 with q = w % 3.
  std::string b(66, '\0');
  for (int w = 0; w < 256; ++w) {
    const int c = w / 128, k = (w / 32) % 4, l = w % 32;
    b[32 * c + l] = static_cast<char>(b[32 * c + l] | (w % 3) << (2 * k));
  }
  put_half(b, 64, 0.75f);
  const std::vector<float> y = dequant(DType::TQ2_0, b, 256);
  for (int w = 0; w < 256; ++w) EXPECT_EQ(y[w], 0.75f * float(w % 3 - 1)) << w;
}

TEST(GgufTypes, Tq1HandBlock) {
  // Ternary digits t packed 5 (or 4) to a byte, most significant first, the byte being
  // ceil(v * 256 / 243) of the base-3 number v. Byte l < 32 holds weights l + 32p, byte 32 + l
  // weights 160 + l + 16p, qh[l] weights 240 + l + 4p.
  auto t = [](int w) { return (w * 7 + w / 5) % 3; };
  auto pack = [](const int* digits, int n) {
    int v = 0;
    for (int p = 0; p < 5; ++p) v = 3 * v + (p < n ? digits[p] : 0);
    return static_cast<char>((v * 256 + 242) / 243);
  };
  std::string b(54, '\0');
  int d[5];
  for (int l = 0; l < 32; ++l) {
    for (int p = 0; p < 5; ++p) d[p] = t(l + 32 * p);
    b[l] = pack(d, 5);
  }
  for (int l = 0; l < 16; ++l) {
    for (int p = 0; p < 5; ++p) d[p] = t(160 + l + 16 * p);
    b[32 + l] = pack(d, 5);
  }
  for (int l = 0; l < 4; ++l) {
    for (int p = 0; p < 4; ++p) d[p] = t(240 + l + 4 * p);
    b[48 + l] = pack(d, 4);
  }
  put_half(b, 52, -2.0f);
  const std::vector<float> y = dequant(DType::TQ1_0, b, 256);
  for (int w = 0; w < 256; ++w) EXPECT_EQ(y[w], -2.0f * float(t(w) - 1)) << w;
}

TEST(GgufTypes, Mxfp4AndQ8KHandBlocks) {
  // MXFP4: exponent 127 is a scale of 1, so weights are the FP4 (E2M1) values themselves.
  const float e2m1[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
  std::string m(17, '\0');
  m[0] = static_cast<char>(127);
  for (int j = 0; j < 16; ++j) m[1 + j] = static_cast<char>(j | (15 - j) << 4);
  std::vector<float> y = dequant(DType::MXFP4, m, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], e2m1[j]);
    EXPECT_EQ(y[j + 16], e2m1[15 - j]);
  }
  m[0] = static_cast<char>(130);  // scale 8
  y = dequant(DType::MXFP4, m, 32);
  EXPECT_EQ(y[7], 48.0f);
  EXPECT_EQ(y[16], -48.0f);  // weight 16: high nibble 15 of byte 0, -6
  EXPECT_EQ(y[18], -24.0f);  // weight 18: high nibble 13 of byte 2, -3

  // Q8_K: an fp32 scale and int8 values.
  std::string q(292, '\0');
  const float d = 0.125f;
  std::memcpy(&q[0], &d, 4);
  for (int j = 0; j < 256; ++j) q[4 + j] = static_cast<char>(j - 128);
  y = dequant(DType::Q8_K, q, 256);
  for (int j = 0; j < 256; ++j) EXPECT_EQ(y[j], 0.125f * float(j - 128)) << j;
}

// n_blocks random blocks of t with the scale fields set to small finite values.
std::string random_blocks(DType t, int64_t n_blocks, std::mt19937& rng) {
  const int64_t bb = dtype_block_bytes(t);
  std::string s(static_cast<size_t>(bb * n_blocks), '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xFF);
  std::uniform_real_distribution<float> small(-0.02f, 0.02f);
  for (int64_t i = 0; i < n_blocks; ++i) {
    char* b = &s[static_cast<size_t>(i * bb)];
    switch (t) {
      case DType::TQ1_0:
        put_half(s, i * bb + 52, small(rng));
        break;
      case DType::TQ2_0:
        put_half(s, i * bb + 64, small(rng));
        break;
      case DType::Q8_K: {
        const float d = small(rng) * 0.1f;
        std::memcpy(b, &d, 4);
        break;
      }
      case DType::IQ1_M: {  // the fp16 scale is the top nibbles of the four u16s at byte 48
        const uint16_t h = f32_to_fp16(small(rng));
        for (int k = 0; k < 4; ++k) {
          uint16_t w;
          std::memcpy(&w, b + 48 + 2 * k, 2);
          w = static_cast<uint16_t>((w & 0x0FFF) | ((h >> (4 * k)) & 0xF) << 12);
          std::memcpy(b + 48 + 2 * k, &w, 2);
        }
        break;
      }
      case DType::MXFP4:
        b[0] = static_cast<char>(118 + rng() % 4);
        break;            // scale 2^-9..2^-6
      case DType::NVFP4:  // E4M3 exponents 1..4: scales 2^-6 .. 2^-3
        for (int k = 0; k < 4; ++k) b[k] = static_cast<char>(8 + rng() % 32);
        break;
      default:
        put_half(s, i * bb, small(rng));
        break;  // IQ types: fp16 d first
    }
  }
  return s;
}

// A 2-layer llama (dim 256) whose projections and embedding are stored in the newer block types
// opens and runs, and gives the same logits as the same model with its weights widened to F32.
TEST(GgufTypes, ModelWithTheseTypesRunsLikeItsF32Copy) {
  const uint64_t dim = 256, vocab = 6;
  const DType types[2][7] = {
      {DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S,
       DType::IQ1_M},
      {DType::TQ1_0, DType::TQ2_0, DType::MXFP4, DType::NVFP4, DType::IQ4_NL, DType::Q8_K,
       DType::IQ4_XS},
  };
  const char* proj[7] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                         "ffn_gate", "ffn_up", "ffn_down"};
  auto metadata = [&](GgufBytes& g) {
    g.kv_string("general.architecture", "llama");
    g.kv_u32("llama.block_count", 2);
    g.kv_u32("llama.embedding_length", dim);
    g.kv_u32("llama.feed_forward_length", dim);
    g.kv_u32("llama.attention.head_count", 4);
    g.kv_u32("llama.attention.head_count_kv", 2);
    g.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    g.kv_u32("llama.context_length", 64);
    g.kv_string("tokenizer.ggml.model", "gpt2");
    g.kv_string("tokenizer.ggml.pre", "smollm");
    g.kv_str_array("tokenizer.ggml.tokens",
                   {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "a", "b", "ab"});
    g.kv_i32_array("tokenizer.ggml.token_type", {3, 3, 3, 1, 1, 1});
    g.kv_str_array("tokenizer.ggml.merges", {"a b"});
    g.kv_u32("tokenizer.ggml.bos_token_id", 1);
    g.kv_u32("tokenizer.ggml.eos_token_id", 2);
  };
  std::mt19937 rng(5);
  GgufBytes q;
  metadata(q);
  const std::vector<float> ones(dim, 1.0f);
  q.add_raw("token_embd.weight", {dim, vocab}, uint32_t(DType::IQ4_XS),
            random_blocks(DType::IQ4_XS, vocab, rng));
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    q.add_f32(b + "attn_norm.weight", {dim}, ones);
    q.add_f32(b + "ffn_norm.weight", {dim}, ones);
    for (int p = 0; p < 7; ++p) {
      const uint64_t rows =
          std::string(proj[p]) == "attn_k" || std::string(proj[p]) == "attn_v" ? dim / 2 : dim;
      const DType t = types[l][p];
      q.add_raw(b + proj[p] + ".weight", {dim, rows}, uint32_t(t),
                random_blocks(t, int64_t(rows * dim) / dtype_block_elems(t), rng));
    }
  }
  q.add_f32("output_norm.weight", {dim}, ones);
  test::TempDir dir;
  q.write(dir.file("q.gguf"));

  // The F32 copy: every tensor widened by our own dequantization.
  GgufBytes f;
  metadata(f);
  {
    GgufFile qf(dir.file("q.gguf"));
    for (const TensorInfo& t : qf.tensors()) {
      std::vector<float> v(size_t(t.numel()));
      tensor_to_f32(t, v.data());
      std::vector<uint64_t> dims(t.shape.rbegin(), t.shape.rend());  // innermost first
      f.add_f32(t.name, dims, v);
    }
  }
  f.write(dir.file("f.gguf"));

  const std::vector<int> ids = {3, 4, 5, 3};
  std::vector<std::vector<float>> logits;
  for (const char* file : {"q.gguf", "f.gguf"}) {
    auto src = open_model(dir.file(file));
    ModelOptions o;
    o.n_threads = 1;
    o.max_ctx = 16;
    Model m(*src, o);
    const float* lg = m.prefill_logits(ids.data(), int(ids.size()), 0);
    logits.emplace_back(lg, lg + vocab);
  }
  for (uint64_t i = 0; i < vocab; ++i) {
    EXPECT_TRUE(std::isfinite(logits[0][i]));
    EXPECT_EQ(logits[0][i], logits[1][i]) << i;
  }
}

}  // namespace
}  // namespace elutq
