// GGUF files as a ModelSource: {arch}.* metadata -> ModelConfig, tokenizer.ggml.* -> TokenizerSpec.
// GGUF tensor names for LLaMA-family models already are our canonical names; fused projections
// (phi3's attn_qkv and double-height ffn_up) become row-range views under the per-projection names.
#include "format/gguf_model.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <unordered_map>

#include "core/error.h"
#include "format/fused_projections.h"
#include "format/gguf_file.h"
#include "format/model_metadata_gguf.h"
#include "format/quantized_model_reader.h"

namespace elutq {
namespace {

// The GGUF architectures elutq reads (general.architecture; also our ModelConfig::arch) and how
// their files differ.
struct GgufArch {
  const char* name;
  // llama: also Mistral, TinyLlama and SmolLM GGUFs, whose converter permutes q/k rows so that
  // RoPE rotates adjacent pairs; the others keep the Hugging Face (half-split) order.
  RopeStyle rope_style;
  // llama.cpp's phi3 files hold gate and up in one blk.N.ffn_up.weight (2*hidden_dim rows, gate
  // rows first) and no ffn_gate. (q/k/v fused as blk.N.attn_qkv.weight is split for any arch.)
  bool gate_up_in_ffn_up;
  // {arch}.attention.sliding_window is a window on every layer, as transformers applies Phi-3's
  // sliding_window (llama.cpp currently ignores it for phi3, with a warning).
  bool window_key;
};

constexpr GgufArch kGgufArchs[] = {
    {"llama", RopeStyle::Interleaved, false, false},
    {"qwen2", RopeStyle::HalfSplit, false, false},
    {"qwen3", RopeStyle::HalfSplit, false, false},
    {"phi3", RopeStyle::HalfSplit, true, true},
};

const GgufArch& find_gguf_arch(const GgufFile& g) {
  const std::string garch = g.get_string("general.architecture");
  for (const GgufArch& a : kGgufArchs)
    if (garch == a.name) return a;
  fail("'", g.path(), "': GGUF architecture '", garch, "' is not supported; supported: ",
       supported_architectures());
}

ModelConfig read_config(const GgufFile& g) {
  ModelConfig c;
  const GgufArch& arch = find_gguf_arch(g);
  c.arch = arch.name;
  c.rope_style = arch.rope_style;
  const std::string a = c.arch + ".";
  c.n_layers = static_cast<int>(g.get_u32(a + "block_count"));
  c.dim = static_cast<int>(g.get_u32(a + "embedding_length"));
  c.hidden_dim = static_cast<int>(g.get_u32(a + "feed_forward_length"));
  c.n_heads = static_cast<int>(g.get_u32(a + "attention.head_count"));
  c.n_kv_heads = static_cast<int>(g.get_u32_or(a + "attention.head_count_kv", c.n_heads));
  c.norm_eps = g.get_f32(a + "attention.layer_norm_rms_epsilon");
  c.max_seq_len = static_cast<int>(g.get_u32(a + "context_length"));
  c.rope_theta = g.get_f32_or(a + "rope.freq_base", 10000.0f);
  if (arch.window_key)
    c.sliding_window = static_cast<int>(g.get_u32_or(a + "attention.sliding_window", 0));
  c.head_dim = static_cast<int>(
      g.get_u32_or(a + "attention.key_length", c.n_heads > 0 ? c.dim / c.n_heads : 0));
  const uint32_t rotary_dims = g.get_u32_or(a + "rope.dimension_count", uint32_t(c.head_dim));
  require(rotary_dims == uint32_t(c.head_dim), "'", g.path(), "': ", a,
          "rope.dimension_count = ", rotary_dims, " but heads have ", c.head_dim,
          " dimensions: RoPE on only part of each head is not supported");
  for (const char* longrope : {"rope_factors_long.weight", "rope_factors_short.weight"}) {
    require(!g.find_tensor(longrope), "'", g.path(), "': holds ", longrope,
            ", LongRoPE scaling (Phi-3 long-context models), which is not supported");
  }

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

// The file's tensors under canonical names: fused projections replaced by views of their parts.
std::vector<TensorInfo> canonical_tensors(const GgufFile& g, const ModelConfig& c) {
  std::vector<TensorInfo> tensors = g.tensors();
  if (find_gguf_arch(g).gate_up_in_ffn_up) {
    for (TensorInfo& t : tensors) {
      if (linear_slot_of(t.name) != LinearSlot::Up) continue;
      const int layer = block_index(t.name);
      const std::string gate = linear_weight_name(layer, LinearSlot::Gate);
      if (g.find_tensor(gate)) continue;  // stored apart after all
      const std::vector<int64_t> fused = {2 * int64_t(c.hidden_dim), c.dim};
      require(t.shape == fused, "'", g.path(), "': ", t.name, " has shape ", shape_string(t.shape),
              ", but with no ", gate, " a ", c.arch,
              " file stores gate rows then up rows in it: ", shape_string(fused));
      t.name = block_tensor_name(layer, kFusedGateUpSuffix);
    }
  }
  split_fused_projections(tensors, c, "'" + g.path() + "'");
  return tensors;
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
      tensors_ = file_.tensors();  // written under canonical names: nothing fused
    } else {
      tensors_ = canonical_tensors(file_, config_);
    }
    for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
    if (!file_.has("tokenizer.ggml.tokens")) {
      require(config_.vocab_size > 0, "'", path, "': no token list and no token_embd.weight");
    }
  }
  const ModelConfig& config() const override { return config_; }
  const TokenizerSpec& tokenizer() const override { return tokenizer_; }
  std::vector<std::string> tensor_names() const override {
    std::vector<std::string> names;
    for (const auto& t : tensors_) names.push_back(t.name);
    return names;
  }
  const TensorInfo* find(const std::string& name) const override {
    if (!quantized_.empty()) {
      const auto it = quantized_.find(name);
      if (it != quantized_.end()) return &it->second;
    }
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  std::string format_name() const override { return elutq_ ? "elutq" : "gguf"; }
  void release_pages(const TensorInfo& t) const override {
    file_.mapping().release_pages(t.data, t.nbytes);
  }

 private:
  GgufFile file_;
  bool elutq_ = false;
  std::map<std::string, TensorInfo> quantized_;  // elutq files: name -> blob with logical shape
  std::vector<TensorInfo> tensors_;               // canonical names, file order
  std::unordered_map<std::string, size_t> index_;  // name -> tensors_
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
