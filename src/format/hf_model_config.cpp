// config.json -> ModelConfig for the Hugging Face architectures elutq runs. Defaults for absent
// keys follow each transformers config class (LlamaConfig, MistralConfig, Qwen2Config,
// Qwen3Config, Phi3Config), because transformers itself applies them when it loads such a folder.
#include "format/hf_model_config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/input_file.h"

namespace elutq {
namespace {

using json = nlohmann::json;

// Per-architecture defaults of the transformers config classes.
struct ArchDefaults {
  const char* arch;
  const char* class_name;  // the *ForCausalLM class in "architectures"
  int n_kv_heads;          // 0: same as num_attention_heads
  int head_dim;            // 0: hidden_size / num_attention_heads
  int max_position_embeddings;
  bool attn_bias;      // q/k/v biases regardless of attention_bias (Qwen2)
  bool qk_norm;        // per-head q/k RMSNorm (Qwen3)
  // true: sliding_window (when set) applies to every layer (Mistral, Phi-3); false: only with
  // use_sliding_window, on the layers max_window_layers / layer_types say (Qwen2/3).
  bool window_on_all_layers;
  int sliding_window;  // default when the key is absent; 0: none
  // partial_rotary_factor is honoured by the transformers model (Phi-3): elutq rotates whole
  // heads, so a factor below 1 is refused rather than run wrong.
  bool partial_rotary;
};

constexpr ArchDefaults kArchs[] = {
    {"llama", "LlamaForCausalLM", 0, 0, 2048, false, false, false, 0, false},
    {"mistral", "MistralForCausalLM", 8, 0, 4096 * 32, false, false, true, 4096, false},
    {"qwen2", "Qwen2ForCausalLM", 32, 0, 32768, true, false, false, 0, false},
    {"qwen3", "Qwen3ForCausalLM", 32, 128, 32768, false, true, false, 0, false},
    // q/k/v and gate/up are fused in the checkpoint; the loader splits them (fused_projections.h).
    {"phi3", "Phi3ForCausalLM", 0, 0, 4096, false, false, true, 0, true},
};

class ConfigReader {
 public:
  ConfigReader(const json& j, const std::string& path) : j_(j), path_(path) {}

  bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }

  int get_int(const char* key) const {
    require(has(key), "'", path_, "' lacks the required key \"", key, "\"");
    return as_int(j_[key], key);
  }
  int get_int(const char* key, int def) const { return has(key) ? as_int(j_[key], key) : def; }
  double get_number(const json& obj, const char* key, double def) const {
    if (!obj.contains(key) || obj[key].is_null()) return def;
    return finite(obj[key], key);
  }
  double get_number(const char* key, double def) const { return get_number(j_, key, def); }
  double require_number(const json& obj, const char* key, const char* where) const {
    require(obj.contains(key) && obj[key].is_number(), "'", path_, "': ", where,
            " lacks the number \"", key, "\"");
    return finite(obj[key], key);
  }
  bool get_bool(const char* key, bool def) const {
    if (!has(key)) return def;
    require(j_[key].is_boolean(), "'", path_, "': \"", key, "\" must be true or false, got ",
            j_[key].dump());
    return j_[key].get<bool>();
  }
  const json& raw() const { return j_; }
  const std::string& path() const { return path_; }

 private:
  // A number that also fits a float (rope_theta 1e300 would become infinity).
  double finite(const json& v, const char* key) const {
    require(v.is_number(), "'", path_, "': \"", key, "\" must be a number, got ", v.dump());
    const double d = v.get<double>();
    require(std::isfinite(d) && std::abs(d) < 1e30, "'", path_, "': \"", key, "\" = ", v.dump(),
            " is out of range");
    return d;
  }
  int as_int(const json& v, const char* key) const {
    require(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= (1 << 30), "'",
            path_, "': \"", key, "\" must be a non-negative integer, got ", v.dump());
    return static_cast<int>(v.get<int64_t>());
  }
  const json& j_;
  std::string path_;
};

const ArchDefaults& find_arch(const ConfigReader& r) {
  const json& j = r.raw();
  std::string named;
  if (r.has("model_type")) {
    require(j["model_type"].is_string(), "'", r.path(), "': \"model_type\" must be a string");
    named = j["model_type"].get<std::string>();
    for (const auto& a : kArchs)
      if (named == a.arch) return a;
  } else if (r.has("architectures") && j["architectures"].is_array() &&
             !j["architectures"].empty() && j["architectures"][0].is_string()) {
    named = j["architectures"][0].get<std::string>();
    for (const auto& a : kArchs)
      if (named == a.class_name) return a;
  } else {
    fail("'", r.path(), "' has neither \"model_type\" nor \"architectures\"; cannot tell the ",
         "architecture (supported: ", supported_architectures(), ")");
  }
  fail("'", r.path(), "': architecture '", named,
       "' is not supported (supported: ", supported_architectures(), ")");
}

// rope_theta and the rope scaling, from transformers 4.x keys (rope_theta, rope_scaling) or 5.x
// ones (rope_parameters holding rope_type, rope_theta and the scaling fields).
void read_rope(const ConfigReader& r, const ArchDefaults& a, ModelConfig* c) {
  const json& j = r.raw();
  const json* scaling = nullptr;
  c->rope_theta = static_cast<float>(r.get_number("rope_theta", 10000.0));
  if (r.has("rope_parameters")) {
    const json& p = j["rope_parameters"];
    require(p.is_object() && (p.contains("rope_type") || p.contains("rope_theta")), "'", r.path(),
            "': \"rope_parameters\" must be an object with rope_type / rope_theta (per-layer-type "
            "rope parameters are not supported)");
    c->rope_theta = static_cast<float>(r.get_number(p, "rope_theta", c->rope_theta));
    scaling = &p;
  } else if (r.has("rope_scaling")) {
    require(j["rope_scaling"].is_object(), "'", r.path(), "': \"rope_scaling\" must be an object");
    scaling = &j["rope_scaling"];
  }
  if (a.partial_rotary) {
    double partial = r.get_number("partial_rotary_factor", 1.0);
    if (scaling) partial = r.get_number(*scaling, "partial_rotary_factor", partial);
    require(partial == 1.0, "'", r.path(), "': partial_rotary_factor = ", partial,
            " (RoPE on only part of each head) is not supported; elutq rotates whole heads");
  }
  if (!scaling) return;
  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {
    if (scaling->contains(key) && (*scaling)[key].is_string()) {
      type = (*scaling)[key].get<std::string>();
      break;
    }
  }
  RopeScaling& s = c->rope_scaling;
  if (type == "default") {
    s.type = "none";
  } else if (type == "linear") {
    s.type = "linear";
    s.factor = static_cast<float>(r.require_number(*scaling, "factor", "linear rope scaling"));
  } else if (type == "llama3") {
    s.type = "llama3";
    const char* where = "llama3 rope scaling";
    s.factor = static_cast<float>(r.require_number(*scaling, "factor", where));
    s.low_freq_factor = static_cast<float>(r.require_number(*scaling, "low_freq_factor", where));
    s.high_freq_factor = static_cast<float>(r.require_number(*scaling, "high_freq_factor", where));
    const double orig = r.require_number(*scaling, "original_max_position_embeddings", where);
    require(orig >= 1 && orig <= (1 << 30), "'", r.path(),
            "': original_max_position_embeddings must be a positive integer");
    s.original_max_position = static_cast<int>(orig);
    require(s.high_freq_factor > s.low_freq_factor, "'", r.path(),
            "': llama3 rope scaling needs high_freq_factor > low_freq_factor");
  } else if (type == "longrope" || type == "su") {
    // Phi-3 long-context checkpoints (128k); "su" is its older name.
    fail("'", r.path(), "': rope scaling type '", type,
         "' (LongRoPE: per-frequency short/long factors) is not supported; a Phi-3 4k-context "
         "checkpoint has none (supported: default, linear, llama3)");
  } else {
    fail("'", r.path(), "': rope scaling type '", type,
         "' is not supported (supported: default, linear, llama3)");
  }
  require(s.factor > 0, "'", r.path(), "': rope scaling factor must be positive");
}

// Sliding-window attention as transformers applies it: Mistral and Phi-3 use sliding_window on
// every layer; Qwen2/3 only when use_sliding_window, on layers >= max_window_layers (or as
// layer_types says).
void read_sliding_window(const ConfigReader& r, const ArchDefaults& a, ModelConfig* c) {
  const json& j = r.raw();
  int window = 0;
  if (a.window_on_all_layers) {
    window = j.contains("sliding_window") ? r.get_int("sliding_window", 0) : a.sliding_window;
  } else if (r.get_bool("use_sliding_window", false)) {
    window = r.get_int("sliding_window", 4096);
  }
  int sliding_layers = window > 0 ? c->n_layers : 0;
  if (r.has("layer_types")) {
    const json& types = j["layer_types"];
    require(types.is_array() && types.size() == static_cast<size_t>(c->n_layers), "'", r.path(),
            "': \"layer_types\" must list one type per layer");
    sliding_layers = 0;
    for (const json& t : types) {
      require(t.is_string() && (t == "full_attention" || t == "sliding_attention"), "'", r.path(),
              "': layer type ", t.dump(), " is not supported (full_attention, sliding_attention)");
      sliding_layers += t == "sliding_attention";
    }
    if (window == 0) sliding_layers = 0;
  } else if (window > 0 && !a.window_on_all_layers) {
    const int first = r.get_int("max_window_layers", 28);
    sliding_layers = first >= c->n_layers ? 0 : c->n_layers - first;
  }
  require(sliding_layers == 0 || sliding_layers == c->n_layers, "'", r.path(),
          "': ", sliding_layers, " of ", c->n_layers,
          " layers use a sliding window; a window on only some layers is not supported");
  c->sliding_window = sliding_layers == 0 ? 0 : window;
}

// config.json's values -> ModelConfig; see read_hf_config.
ModelConfig config_from_json(const json& j, const std::string& path) {
  const ConfigReader r(j, path);
  const ArchDefaults& a = find_arch(r);

  ModelConfig c;
  c.arch = a.arch;
  c.dim = r.get_int("hidden_size");
  c.hidden_dim = r.get_int("intermediate_size");
  c.n_layers = r.get_int("num_hidden_layers");
  c.n_heads = r.get_int("num_attention_heads");
  c.vocab_size = r.get_int("vocab_size");
  require(c.n_heads > 0, "'", path, "': num_attention_heads must be positive");
  // Far above any real model; keeps a corrupt value from making us list billions of tensors.
  require(c.n_layers <= 4096, "'", path, "': num_hidden_layers = ", c.n_layers,
          " is implausible (at most 4096)");
  // An explicit null means "same as num_attention_heads" in every class; absent takes the default.
  if (j.contains("num_key_value_heads")) {
    c.n_kv_heads = r.get_int("num_key_value_heads", c.n_heads);
  } else {
    c.n_kv_heads = a.n_kv_heads ? a.n_kv_heads : c.n_heads;
  }
  const int default_head_dim = a.head_dim ? a.head_dim : c.dim / c.n_heads;
  c.head_dim = r.has("head_dim") ? r.get_int("head_dim") : default_head_dim;
  if (!r.has("head_dim")) {
    require(a.head_dim || c.dim % c.n_heads == 0, "'", path, "': hidden_size (", c.dim,
            ") is not a multiple of num_attention_heads (", c.n_heads, ")");
  }
  c.max_seq_len = r.get_int("max_position_embeddings", a.max_position_embeddings);
  c.norm_eps = static_cast<float>(r.get_number("rms_norm_eps", 1e-6));
  c.tied_embeddings = r.get_bool("tie_word_embeddings", false);
  c.rope_style = RopeStyle::HalfSplit;
  read_rope(r, a, &c);

  c.attn_bias = a.attn_bias;
  c.qk_norm = a.qk_norm;
  require(!r.get_bool("attention_bias", false), "'", path,
          "': attention_bias = true (biases on q/k/v/o) is not supported for ", a.arch);
  require(!r.get_bool("mlp_bias", false), "'", path, "': mlp_bias = true is not supported");
  if (r.has("hidden_act")) {
    require(j["hidden_act"] == "silu", "'", path, "': hidden_act ", j["hidden_act"].dump(),
            " is not supported (only silu)");
  }
  read_sliding_window(r, a, &c);
  try {
    validate_config(c);
  } catch (const Error& e) {
    fail("'", path, "': ", e.what());
  }
  return c;
}

}  // namespace

ModelConfig read_hf_config(const std::string& path) {
  const std::string text = read_input_file(path, "config");
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("'", path, "' is not valid JSON (", e.what(), ")");
  }
  require(j.is_object(), "'", path, "' must hold a JSON object");
  try {
    return config_from_json(j, path);
  } catch (const json::exception& e) {  // a value of a type we did not check for
    fail("'", path, "': unexpected value (", e.what(), ")");
  }
}

}  // namespace elutq
