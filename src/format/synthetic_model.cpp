// Writes synthetic LLaMA GGUF models with random F16 weights; see synthetic_model.h.
#include "format/synthetic_model.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "tensor/tensor_names.h"
#include "core/fp16.h"
#include "format/gguf_writer.h"

namespace elutq {
namespace {

struct TensorPlan {
  std::string name;
  std::vector<int64_t> shape;  // outermost first
  DType dtype;
  double std_dev;  // of the uniform weights; 0 for norms
};

void check_options(const SyntheticModelOptions& o) {
  require(o.dim > 0 && o.n_layers > 0 && o.hidden_dim > 0 && o.context > 0,
          "synthetic model: dim, layers, ffn and context must be positive");
  require(o.vocab_size >= 260, "synthetic model: the vocabulary needs at least 260 tokens (3 "
          "special + 256 byte tokens + 1), got ", o.vocab_size);
  require(o.dim % 32 == 0 && o.hidden_dim % 32 == 0,
          "synthetic model: dim and ffn must be multiples of 32 (quantization groups), got ", o.dim,
          " and ", o.hidden_dim);
}

int heads(const SyntheticModelOptions& o) { return o.n_heads > 0 ? o.n_heads : std::max(1, o.dim / 64); }
int kv_heads(const SyntheticModelOptions& o) { return o.n_kv_heads > 0 ? o.n_kv_heads : heads(o); }

std::vector<TensorPlan> plan(const SyntheticModelOptions& o) {
  const int h = heads(o), kvh = kv_heads(o);
  require(o.n_heads >= 0 && o.n_kv_heads >= 0, "synthetic model: head counts must be positive");
  require(o.dim % h == 0, "synthetic model: dim ", o.dim, " is not a multiple of the ", h,
          " heads (each head gets dim / heads)");
  require(h % kvh == 0, "synthetic model: the ", h, " heads are not a multiple of the ", kvh,
          " key/value heads (each key/value head serves heads / kv-heads)");
  const int64_t dim = o.dim, hd = dim / h, kv = hd * kvh, ffn = o.hidden_dim, V = o.vocab_size;
  const double s_dim = 1.0 / std::sqrt(double(dim)), s_ffn = 1.0 / std::sqrt(double(ffn));
  std::vector<TensorPlan> p;
  p.push_back({"token_embd.weight", {V, dim}, DType::F16, 1.0});
  for (int l = 0; l < o.n_layers; ++l) {
    const std::string b = block_prefix(l);
    p.push_back({b + "attn_norm.weight", {dim}, DType::F32, 0});
    p.push_back({b + "attn_q.weight", {dim, dim}, DType::F16, s_dim});
    p.push_back({b + "attn_k.weight", {kv, dim}, DType::F16, s_dim});
    p.push_back({b + "attn_v.weight", {kv, dim}, DType::F16, s_dim});
    p.push_back({b + "attn_output.weight", {dim, dim}, DType::F16, s_dim});
    p.push_back({b + "ffn_norm.weight", {dim}, DType::F32, 0});
    p.push_back({b + "ffn_gate.weight", {ffn, dim}, DType::F16, s_dim});
    p.push_back({b + "ffn_up.weight", {ffn, dim}, DType::F16, s_dim});
    p.push_back({b + "ffn_down.weight", {dim, ffn}, DType::F16, s_ffn});
  }
  p.push_back({"output_norm.weight", {dim}, DType::F32, 0});
  if (!o.tied_embeddings) p.push_back({"output.weight", {V, dim}, DType::F16, s_dim});
  return p;
}

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The tokenizer: specials, byte tokens, then distinct printable pieces ("a", "▁a", "ab", ...).
void add_tokenizer(GgufWriter& w, int vocab) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};  // Unknown, Control, Control
  char buf[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    tokens.push_back(buf);
    types.push_back(6);  // Byte
  }
  const std::string space = "\xE2\x96\x81";  // "▁", SentencePiece's space
  std::vector<std::string> alphabet;
  for (char c = 'a'; c <= 'z'; ++c) alphabet.emplace_back(1, c);
  for (char c = 'A'; c <= 'Z'; ++c) alphabet.emplace_back(1, c);
  for (const char* s : {",", ".", "'", "-", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"})
    alphabet.emplace_back(s);
  std::vector<std::string> pieces = {space};
  for (const auto& a : alphabet) pieces.push_back(a);
  for (const auto& a : alphabet) pieces.push_back(space + a);
  for (size_t i = 0; pieces.size() < size_t(vocab) && i < alphabet.size(); ++i)
    for (const auto& b : alphabet) pieces.push_back(alphabet[i] + b), pieces.push_back(space + alphabet[i] + b);
  for (size_t i = 0; pieces.size() < size_t(vocab); ++i)  // three letters, enough for 200k+
    for (const auto& b : alphabet)
      for (const auto& c : alphabet) pieces.push_back(alphabet[i % alphabet.size()] + b + c);
  std::vector<float> scores(3 + 256, 0.0f);
  for (size_t i = 0; tokens.size() < size_t(vocab); ++i) {
    tokens.push_back(pieces[i]);
    types.push_back(1);  // Normal
    scores.push_back(-float(i));  // shorter, earlier pieces merge first
  }
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_f32_array("tokenizer.ggml.scores", scores);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
}

}  // namespace

uint64_t synthetic_model_bytes(const SyntheticModelOptions& opt) {
  check_options(opt);
  uint64_t n = 0;
  for (const TensorPlan& t : plan(opt)) {
    uint64_t e = 1;
    for (int64_t d : t.shape) e *= uint64_t(d);
    n += e * (t.dtype == DType::F16 ? 2 : 4);
  }
  return n;
}

void write_synthetic_model(const std::string& path, const SyntheticModelOptions& opt) {
  check_options(opt);
  const std::vector<TensorPlan> tensors = plan(opt);
  GgufWriter w(path);
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "elutq synthetic " + std::to_string(opt.dim) + "x" +
                                   std::to_string(opt.n_layers) + " seed " +
                                   std::to_string(opt.seed));
  w.set_u32("llama.block_count", uint32_t(opt.n_layers));
  w.set_u32("llama.context_length", uint32_t(opt.context));
  w.set_u32("llama.embedding_length", uint32_t(opt.dim));
  w.set_u32("llama.feed_forward_length", uint32_t(opt.hidden_dim));
  w.set_u32("llama.attention.head_count", uint32_t(heads(opt)));
  w.set_u32("llama.attention.head_count_kv", uint32_t(kv_heads(opt)));
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  add_tokenizer(w, opt.vocab_size);
  for (const TensorPlan& t : tensors) w.add_tensor(t.name, t.shape, t.dtype);
  w.write_header();

  // 16 random bits -> one fp16 weight through a table per distinct std_dev: uniform on
  // [-a, a] with a = sqrt(3) * std_dev (the uniform distribution of that standard deviation).
  std::vector<uint16_t> table(65536);  // random bits -> fp16 weight
  double table_std = -1;
  uint64_t state = opt.seed * 0x2545F4914F6CDD1Dull + 12345;
  std::vector<uint16_t> chunk(1 << 20);  // (1M) fp16 values per write
  std::vector<float> norm;               // (dim)
  for (const TensorPlan& t : tensors) {
    uint64_t n = 1;
    for (int64_t d : t.shape) n *= uint64_t(d);
    if (t.dtype == DType::F32) {  // norm weights: 1 + small noise
      norm.resize(size_t(n));
      for (float& v : norm) v = 1.0f + 0.1f * (float(splitmix64(state) >> 40) / float(1 << 24) - 0.5f);
      w.write_data(norm.data(), n * 4);
      continue;
    }
    if (t.std_dev != table_std) {
      const double a = std::sqrt(3.0) * t.std_dev;
      for (int u = 0; u < 65536; ++u)
        table[size_t(u)] = f32_to_fp16(float(a * ((u + 0.5) / 32768.0 - 1.0)));
      table_std = t.std_dev;
    }
    for (uint64_t done = 0; done < n;) {
      const uint64_t m = std::min<uint64_t>(chunk.size(), n - done);
      for (uint64_t i = 0; i < m; i += 4) {
        const uint64_t r = splitmix64(state);
        for (uint64_t k = 0; k < 4 && i + k < m; ++k) chunk[i + k] = table[(r >> (16 * k)) & 0xFFFF];
      }
      w.write_data(chunk.data(), m * 2);
      done += m;
    }
  }
  w.finish();
}

}  // namespace elutq
