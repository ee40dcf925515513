// ModelConfig / TokenizerSpec <-> GGUF metadata for elutq files (see model_metadata_gguf.h). The
// standard keys written here are exactly the ones read_config / read_tokenizer in gguf_model.cpp
// read, so the two files must change together.
#include "format/model_metadata_gguf.h"

#include <string>
#include <vector>

#include "core/error.h"

namespace elutq {
namespace {

// The GGUF architecture name: GGUF files of Mistral models say "llama" (same tensors and keys).
std::string gguf_arch(const ModelConfig& c) { return c.arch == "mistral" ? "llama" : c.arch; }

}  // namespace

void write_model_metadata(GgufWriter& w, const ModelConfig& c, const TokenizerSpec& t) {
  validate_config(c);
  const std::string garch = gguf_arch(c);
  const std::string a = garch + ".";
  w.set_string("general.architecture", garch);
  w.set_u32(a + "block_count", uint32_t(c.n_layers));
  w.set_u32(a + "embedding_length", uint32_t(c.dim));
  w.set_u32(a + "feed_forward_length", uint32_t(c.hidden_dim));
  w.set_u32(a + "attention.head_count", uint32_t(c.n_heads));
  w.set_u32(a + "attention.head_count_kv", uint32_t(c.n_kv_heads));
  w.set_u32(a + "attention.key_length", uint32_t(c.head_dim));
  w.set_u32(a + "attention.value_length", uint32_t(c.head_dim));
  w.set_f32(a + "attention.layer_norm_rms_epsilon", c.norm_eps);
  w.set_u32(a + "context_length", uint32_t(c.max_seq_len));
  w.set_u32(a + "vocab_size", uint32_t(c.vocab_size));
  w.set_f32(a + "rope.freq_base", c.rope_theta);
  w.set_u32(a + "rope.dimension_count", uint32_t(c.head_dim));
  if (c.sliding_window > 0) w.set_u32(a + "attention.sliding_window", uint32_t(c.sliding_window));
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type == "linear") {
    w.set_string(a + "rope.scaling.type", "linear");
    w.set_f32(a + "rope.scaling.factor", rs.factor);
  } else if (rs.type == "llama3-freqs") {
    // The divisors travel as the rope_freqs.weight tensor, which the writer copies.
    w.set_u32(a + "rope.scaling.original_context_length", uint32_t(rs.original_max_position));
  } else if (rs.type == "llama3") {
    // GGUF has no key for the llama3 formula itself (llama.cpp stores divisors as a tensor).
    w.set_string("elutq.rope.scaling.type", "llama3");
    w.set_f32("elutq.rope.scaling.factor", rs.factor);
    w.set_f32("elutq.rope.scaling.low_freq_factor", rs.low_freq_factor);
    w.set_f32("elutq.rope.scaling.high_freq_factor", rs.high_freq_factor);
    w.set_u32("elutq.rope.scaling.original_context_length", uint32_t(rs.original_max_position));
  } else {
    require(rs.type == "none", "rope scaling '", rs.type, "' cannot be written to a model file");
  }
  // The weights are stored as the source had them; this says how RoPE pairs their dimensions.
  w.set_string("elutq.architecture", c.arch);
  w.set_string("elutq.rope.pairing",
               c.rope_style == RopeStyle::Interleaved ? "interleaved" : "half-split");
  w.set_bool("elutq.tied_embeddings", c.tied_embeddings);
  w.set_bool("elutq.attn_bias", c.attn_bias);
  w.set_bool("elutq.qk_norm", c.qk_norm);

  if (t.kind == TokenizerKind::None) return;
  const size_t n = t.tokens.size();
  require(n > 0, "the tokenizer has no tokens");
  w.set_string("tokenizer.ggml.model",
               t.kind == TokenizerKind::SentencePieceBPE ? "llama" : "gpt2");
  w.set_string_array("tokenizer.ggml.tokens", t.tokens);
  if (!t.scores.empty()) {
    require(t.scores.size() == n, "the tokenizer has ", t.scores.size(), " scores for ", n,
            " tokens");
    w.set_f32_array("tokenizer.ggml.scores", t.scores);
  }
  if (!t.types.empty()) {
    require(t.types.size() == n, "the tokenizer has ", t.types.size(), " token types for ", n,
            " tokens");
    std::vector<int32_t> ty(n);
    for (size_t i = 0; i < n; ++i) ty[i] = int32_t(t.types[i]);
    w.set_i32_array("tokenizer.ggml.token_type", ty);
  }
  if (!t.merges.empty()) {
    std::vector<std::string> m;
    m.reserve(t.merges.size());
    for (const auto& [l, r] : t.merges) {
      // The reader splits at the first space, so the left token must not contain one.
      require(!l.empty() && !r.empty() && l.find(' ') == std::string::npos, "merge '", l, "' + '",
              r, "' cannot be stored as GGUF 'left right' text");
      m.push_back(l + " " + r);
    }
    w.set_string_array("tokenizer.ggml.merges", m);
  }
  w.set_string("tokenizer.ggml.pre", t.pre);
  if (t.bos_id >= 0) w.set_u32("tokenizer.ggml.bos_token_id", uint32_t(t.bos_id));
  if (t.eos_id >= 0) w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(t.eos_id));
  if (t.unk_id >= 0) w.set_u32("tokenizer.ggml.unknown_token_id", uint32_t(t.unk_id));
  if (t.pad_id >= 0) w.set_u32("tokenizer.ggml.padding_token_id", uint32_t(t.pad_id));
  w.set_bool("tokenizer.ggml.add_bos_token", t.add_bos);
  w.set_bool("tokenizer.ggml.add_eos_token", t.add_eos);
  w.set_bool("tokenizer.ggml.add_space_prefix", t.add_space_prefix);
  if (!t.chat_template.empty()) w.set_string("tokenizer.chat_template", t.chat_template);
  // What tokenizer.ggml.* cannot say.
  w.set_bool("elutq.tokenizer.remove_extra_whitespaces", t.remove_extra_whitespaces);
  w.set_bool("elutq.tokenizer.ignore_merges", t.ignore_merges);
  if (!t.pre_regexes.empty()) w.set_string_array("elutq.tokenizer.pre_regexes", t.pre_regexes);
  std::vector<int32_t> stops(t.stop_ids.begin(), t.stop_ids.end());
  w.set_i32_array("elutq.tokenizer.stop_ids", stops);
}

void apply_elutq_model_metadata(const GgufFile& g, ModelConfig& c, TokenizerSpec& t) {
  const std::string a = g.get_string("general.architecture") + ".";
  c.arch = g.get_string("elutq.architecture");
  const std::string pairing = g.get_string("elutq.rope.pairing");
  if (pairing == "interleaved")
    c.rope_style = RopeStyle::Interleaved;
  else if (pairing == "half-split")
    c.rope_style = RopeStyle::HalfSplit;
  else
    fail("'", g.path(), "': elutq.rope.pairing is '", pairing,
         "'; expected interleaved or half-split");
  c.vocab_size = int(g.get_u32(a + "vocab_size"));
  c.sliding_window = int(g.get_u32_or(a + "attention.sliding_window", 0));
  if (g.has("elutq.rope.scaling.type")) {
    const std::string type = g.get_string("elutq.rope.scaling.type");
    require(type == "llama3", "'", g.path(), "': elutq.rope.scaling.type is '", type,
            "'; expected llama3");
    c.rope_scaling.type = type;
    c.rope_scaling.factor = g.get_f32("elutq.rope.scaling.factor");
    c.rope_scaling.low_freq_factor = g.get_f32("elutq.rope.scaling.low_freq_factor");
    c.rope_scaling.high_freq_factor = g.get_f32("elutq.rope.scaling.high_freq_factor");
    c.rope_scaling.original_max_position =
        int(g.get_u32("elutq.rope.scaling.original_context_length"));
  }
  c.tied_embeddings = g.get_bool("elutq.tied_embeddings");
  c.attn_bias = g.get_bool("elutq.attn_bias");
  c.qk_norm = g.get_bool("elutq.qk_norm");
  try {
    validate_config(c);
  } catch (const Error& e) {
    fail("'", g.path(), "': ", e.what());
  }

  if (t.kind == TokenizerKind::None) return;
  t.remove_extra_whitespaces = g.get_bool_or("elutq.tokenizer.remove_extra_whitespaces", false);
  t.ignore_merges = g.get_bool_or("elutq.tokenizer.ignore_merges", false);
  t.pre_regexes.clear();
  if (g.has("elutq.tokenizer.pre_regexes"))
    for (std::string_view s : g.get_string_array("elutq.tokenizer.pre_regexes"))
      t.pre_regexes.emplace_back(s);
  if (g.has("elutq.tokenizer.stop_ids")) {
    t.stop_ids.clear();
    for (int64_t id : g.get_int_array("elutq.tokenizer.stop_ids")) {
      require(id >= 0 && id < int64_t(t.tokens.size()), "'", g.path(),
              "': elutq.tokenizer.stop_ids holds ", id, ", outside the vocabulary of ",
              t.tokens.size(), " tokens");
      t.stop_ids.push_back(int(id));
    }
  }
}

}  // namespace elutq
