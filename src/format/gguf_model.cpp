// GGUF files as a ModelSource: {arch}.* metadata -> ModelConfig, tokenizer.ggml.* -> TokenizerSpec.
// GGUF tensor names for LLaMA-family models already are our canonical names.
#include "format/gguf_model.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>

#include "core/error.h"
#include "format/gguf_file.h"
#include "format/model_metadata_gguf.h"
#include "format/quantized_model_reader.h"

namespace elutq {
namespace {

ModelConfig read_config(const GgufFile& g) {
  ModelConfig c;
  const std::string garch = g.get_string("general.architecture");
  if (garch == "llama") {
    // Also Mistral, TinyLlama and SmolLM GGUFs. The converter permutes q/k rows so that RoPE
    // rotates adjacent pairs.
    c.arch = "llama";
    c.rope_style = RopeStyle::Interleaved;
  } else if (garch == "qwen2" || garch == "qwen3") {
    c.arch = garch;
    c.rope_style = RopeStyle::HalfSplit;
  } else {
    fail("'", g.path(), "': GGUF architecture '", garch, "' is not supported; supported: ",
         supported_architectures());
  }
  const std::string a = garch + ".";
  c.n_layers = static_cast<int>(g.get_u32(a + "block_count"));
  c.dim = static_cast<int>(g.get_u32(a + "embedding_length"));
  c.hidden_dim = static_cast<int>(g.get_u32(a + "feed_forward_length"));
  c.n_heads = static_cast<int>(g.get_u32(a + "attention.head_count"));
  c.n_kv_heads = static_cast<int>(g.get_u32_or(a + "attention.head_count_kv", c.n_heads));
  c.norm_eps = g.get_f32(a + "attention.layer_norm_rms_epsilon");
  c.max_seq_len = static_cast<int>(g.get_u32(a + "context_length"));
  c.rope_theta = g.get_f32_or(a + "rope.freq_base", 10000.0f);
  c.head_dim = static_cast<int>(
      g.get_u32_or(a + "attention.key_length", c.n_heads > 0 ? c.dim / c.n_heads : 0));

  const std::string scaling = g.get_string_or(a + "rope.scaling.type", "none");
  if (scaling == "linear") {
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = g.get_f32(a + "rope.scaling.factor");
  } else if (scaling != "none") {
    fail("'", g.path(), "': rope scaling '", scaling,
         "' is not supported; supported: none, linear (and llama3 frequency factors)");
  } else if (g.has(a + "rope.scale_linear")) {  // older converters
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = g.get_f32(a + "rope.scale_linear");
  }
  if (c.rope_scaling.type == "linear" && c.rope_scaling.factor == 1.0f) c.rope_scaling.type = "none";
  if (g.find_tensor("rope_freqs.weight")) {
    // Llama-3.1-style GGUFs store the llama3 per-frequency divisors as a tensor.
    c.rope_scaling.type = "llama3-freqs";
    c.rope_scaling.original_max_position = static_cast<int>(
        g.get_u32_or(a + "rope.scaling.original_context_length", c.max_seq_len));
  }

  if (g.has("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int>(g.array_length("tokenizer.ggml.tokens"));
  } else if (const TensorInfo* e = g.find_tensor("token_embd.weight")) {
    c.vocab_size = static_cast<int>(e->shape[0]);
  }
  c.tied_embeddings = g.find_tensor("output.weight") == nullptr;
  c.attn_bias = g.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.qk_norm = g.find_tensor("blk.0.attn_q_norm.weight") != nullptr;
  try {
    validate_config(c);
  } catch (const Error& e) {
    fail("'", g.path(), "': ", e.what());
  }
  return c;
}

int token_id(const GgufFile& g, const std::string& key, int vocab) {
  if (!g.has(key)) return -1;
  const int64_t id = g.get_i64(key);
  require(id >= 0 && id < vocab, "'", g.path(), "': ", key, " = ", id,
          " is outside the vocabulary of ", vocab, " tokens");
  return static_cast<int>(id);
}

TokenizerSpec read_tokenizer(const GgufFile& g) {
  TokenizerSpec t;
  if (!g.has("tokenizer.ggml.model")) return t;
  const std::string model = g.get_string("tokenizer.ggml.model");
  if (model == "llama") {
    t.kind = TokenizerKind::SentencePieceBPE;
  } else if (model == "gpt2") {
    t.kind = TokenizerKind::ByteLevelBPE;
  } else {
    fail("'", g.path(), "': tokenizer model '", model,
         "' is not supported; supported: llama (SentencePiece BPE), gpt2 (byte-level BPE)");
  }
  for (std::string_view s : g.get_string_array("tokenizer.ggml.tokens")) t.tokens.emplace_back(s);
  const size_t n = t.tokens.size();
  require(n > 0, "'", g.path(), "': tokenizer.ggml.tokens is empty");
  if (g.has("tokenizer.ggml.scores")) {
    t.scores = g.get_f32_array("tokenizer.ggml.scores");
    require(t.scores.size() == n, "'", g.path(), "': tokenizer.ggml.scores has ", t.scores.size(),
            " entries but there are ", n, " tokens");
  }
  t.types.assign(n, TokenType::Normal);
  if (g.has("tokenizer.ggml.token_type")) {
    const std::vector<int64_t> ty = g.get_int_array("tokenizer.ggml.token_type");
    require(ty.size() == n, "'", g.path(), "': tokenizer.ggml.token_type has ", ty.size(),
            " entries but there are ", n, " tokens");
    for (size_t i = 0; i < n; ++i) {
      require(ty[i] >= 0 && ty[i] <= 6, "'", g.path(), "': token ", i, " has unknown type ", ty[i]);
      if (ty[i] != 0) t.types[i] = static_cast<TokenType>(ty[i]);  // 0: undefined -> Normal
    }
  }
  if (g.has("tokenizer.ggml.merges")) {
    for (std::string_view m : g.get_string_array("tokenizer.ggml.merges")) {
      const size_t sp = m.find(' ');
      require(sp != std::string_view::npos && sp > 0 && sp + 1 < m.size(), "'", g.path(),
              "': merge '", std::string(m), "' is not two tokens separated by a space");
      t.merges.emplace_back(std::string(m.substr(0, sp)), std::string(m.substr(sp + 1)));
    }
  }
  require(t.kind != TokenizerKind::ByteLevelBPE || !t.merges.empty(), "'", g.path(),
          "': a gpt2 (byte-level BPE) tokenizer needs tokenizer.ggml.merges");
  t.pre = g.get_string_or("tokenizer.ggml.pre", "default");
  const int vocab = static_cast<int>(n);
  t.bos_id = token_id(g, "tokenizer.ggml.bos_token_id", vocab);
  t.eos_id = token_id(g, "tokenizer.ggml.eos_token_id", vocab);
  t.unk_id = token_id(g, "tokenizer.ggml.unknown_token_id", vocab);
  t.pad_id = token_id(g, "tokenizer.ggml.padding_token_id", vocab);
  const bool spm = t.kind == TokenizerKind::SentencePieceBPE;
  t.add_bos = g.get_bool_or("tokenizer.ggml.add_bos_token", spm);
  t.add_eos = g.get_bool_or("tokenizer.ggml.add_eos_token", false);
  t.add_space_prefix = g.get_bool_or("tokenizer.ggml.add_space_prefix", spm);
  t.chat_template = g.get_string_or("tokenizer.chat_template", "");

  // Generation stops at eos, the end-of-turn / end-of-message ids, and the usual end markers.
  auto add_stop = [&t](int id) {
    if (id >= 0 && std::find(t.stop_ids.begin(), t.stop_ids.end(), id) == t.stop_ids.end())
      t.stop_ids.push_back(id);
  };
  add_stop(t.eos_id);
  add_stop(token_id(g, "tokenizer.ggml.eot_token_id", vocab));
  add_stop(token_id(g, "tokenizer.ggml.eom_token_id", vocab));
  static const char* kEndMarkers[] = {"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|endoftext|>",
                                      "<|end|>", "<end_of_turn>"};
  for (const char* marker : kEndMarkers) {
    for (size_t i = 0; i < n; ++i) {
      if (t.tokens[i] == marker && (t.types[i] == TokenType::Control ||
                                    t.types[i] == TokenType::UserDefined)) {
        add_stop(static_cast<int>(i));
        break;
      }
    }
  }
  return t;
}

class GgufModel : public ModelSource {
 public:
  explicit GgufModel(const std::string& path) : file_(path) {
    config_ = read_config(file_);
    tokenizer_ = read_tokenizer(file_);
    if (is_elutq_model_file(file_)) {  // our quantized files: exact config, quantized tensors
      elutq_ = true;
      apply_elutq_model_metadata(file_, config_, tokenizer_);
      quantized_ = read_elutq_quantized_tensors(file_, config_);
    }
    if (!file_.has("tokenizer.ggml.tokens")) {
      require(config_.vocab_size > 0, "'", path, "': no token list and no token_embd.weight");
    }
  }
  const ModelConfig& config() const override { return config_; }
  const TokenizerSpec& tokenizer() const override { return tokenizer_; }
  std::vector<std::string> tensor_names() const override {
    std::vector<std::string> names;
    for (const auto& t : file_.tensors()) names.push_back(t.name);
    return names;
  }
  const TensorInfo* find(const std::string& name) const override {
    if (!quantized_.empty()) {
      const auto it = quantized_.find(name);
      if (it != quantized_.end()) return &it->second;
    }
    return file_.find_tensor(name);
  }
  std::string format_name() const override { return elutq_ ? "elutq" : "gguf"; }
  void release_pages(const TensorInfo& t) const override {
    file_.mapping().release_pages(t.data, t.nbytes);
  }

 private:
  GgufFile file_;
  bool elutq_ = false;
  std::map<std::string, TensorInfo> quantized_;  // elutq files: name -> blob with logical shape
  ModelConfig config_;
  TokenizerSpec tokenizer_;
};

}  // namespace

bool is_gguf_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

std::unique_ptr<ModelSource> open_gguf(const std::string& path) {
  return std::make_unique<GgufModel>(path);
}

}  // namespace elutq
