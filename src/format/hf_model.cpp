// Hugging Face model folders as a ModelSource: config.json -> ModelConfig, the safetensors
// tensors (one file or shards listed by model.safetensors.index.json) renamed to canonical names
// and checked against the shapes the config implies, tokenizer.json if present. Fused projections
// (Phi-3's qkv_proj and gate_up_proj) become row-range views under the per-projection names.
#include "format/hf_model.h"

#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "core/error.h"
#include "format/fused_projections.h"
#include "format/hf_model_config.h"
#include "format/safetensors_file.h"
#include "tokenizer/tokenizer_files.h"

namespace elutq {
namespace {

namespace fs = std::filesystem;

// Per-layer HF names (after "model.layers.N.") and their canonical suffixes (after "blk.N.").
constexpr std::pair<const char*, const char*> kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.bias", "attn_output.bias"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"mlp.gate_proj.bias", "ffn_gate.bias"},
    {"mlp.up_proj.bias", "ffn_up.bias"},
    {"mlp.down_proj.bias", "ffn_down.bias"},
    // Fused (Phi-3), split by split_fused_projections; format/fused_projections.h has the layouts.
    {"self_attn.qkv_proj.weight", kFusedQkvSuffix},
    {"mlp.gate_up_proj.weight", kFusedGateUpSuffix},
};


// Canonical name of an HF tensor name, "" for tensors elutq does not use (rotary inv_freq, ...).
std::string canonical_name(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const std::string prefix = "model.layers.";
  if (hf.rfind(prefix, 0) != 0) return "";
  size_t pos = prefix.size(), end = pos;
  while (end < hf.size() && end - pos < 6 && hf[end] >= '0' && hf[end] <= '9') ++end;
  if (end == pos || end >= hf.size() || hf[end] != '.') return "";
  const std::string layer = hf.substr(pos, end - pos), rest = hf.substr(end + 1);
  for (const auto& [from, to] : kLayerNames)
    if (rest == from) return "blk." + std::to_string(std::stoi(layer)) + "." + to;
  return "";
}

// The HF name of a canonical name, for messages.
std::string hf_name(const std::string& canonical);

// The quoted HF name of a missing canonical tensor, and of the fused tensor that may hold it.
std::string missing_hf_name(const std::string& canonical) {
  std::string quoted = "'";  // appended, not "'" + ...: GCC 12 warns wrongly (-Wrestrict) on that
  quoted += hf_name(canonical);
  quoted += "'";
  const std::optional<LinearSlot> slot = linear_slot_of(canonical);
  const char* fused = slot ? fused_suffix_of(*slot) : nullptr;
  if (!fused) return quoted;
  return quoted + " (or the fused '" + hf_name(block_tensor_name(block_index(canonical), fused)) +
         "')";
}

std::string hf_name(const std::string& canonical) {
  if (canonical == "token_embd.weight") return "model.embed_tokens.weight";
  if (canonical == "output_norm.weight") return "model.norm.weight";
  if (canonical == "output.weight") return "lm_head.weight";
  const size_t dot = canonical.find('.', 4);
  if (canonical.rfind("blk.", 0) == 0 && dot != std::string::npos) {
    const std::string rest = canonical.substr(dot + 1);
    for (const auto& [from, to] : kLayerNames)
      if (rest == to) return "model.layers." + canonical.substr(4, dot - 4) + "." + from;
  }
  return canonical;
}

// Every tensor the config implies, with its shape (see tensor/model_source.h).
std::map<std::string, std::vector<int64_t>> expected_tensors(const ModelConfig& c) {
  const int64_t dim = c.dim, q = int64_t(c.n_heads) * c.head_dim,
                kv = int64_t(c.n_kv_heads) * c.head_dim, ff = c.hidden_dim;
  std::map<std::string, std::vector<int64_t>> e;
  e["token_embd.weight"] = {c.vocab_size, dim};
  e["output_norm.weight"] = {dim};
  if (!c.tied_embeddings) e["output.weight"] = {c.vocab_size, dim};
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    e[b + "attn_norm.weight"] = {dim};
    e[b + "attn_q.weight"] = {q, dim};
    e[b + "attn_k.weight"] = {kv, dim};
    e[b + "attn_v.weight"] = {kv, dim};
    e[b + "attn_output.weight"] = {dim, q};
    if (c.attn_bias) {
      e[b + "attn_q.bias"] = {q};
      e[b + "attn_k.bias"] = {kv};
      e[b + "attn_v.bias"] = {kv};
    }
    if (c.qk_norm) {
      e[b + "attn_q_norm.weight"] = {c.head_dim};
      e[b + "attn_k_norm.weight"] = {c.head_dim};
    }
    e[b + "ffn_norm.weight"] = {dim};
    e[b + "ffn_gate.weight"] = {ff, dim};
    e[b + "ffn_up.weight"] = {ff, dim};
    e[b + "ffn_down.weight"] = {dim, ff};
  }
  return e;
}

class HfModel : public ModelSource {
 public:
  explicit HfModel(const std::string& folder);

  const ModelConfig& config() const override { return config_; }
  const TokenizerSpec& tokenizer() const override { return tokenizer_; }
  std::vector<std::string> tensor_names() const override {
    std::vector<std::string> names;
    for (const auto& t : tensors_) names.push_back(t.name);
    return names;
  }
  const TensorInfo* find(const std::string& name) const override {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  std::string format_name() const override { return "safetensors"; }

 private:
  // Takes the tensors elutq uses from one file; only_these (if given) names the tensors the index
  // places in this shard, and each of them must be there.
  void take_tensors(const SafetensorsFile& file,
                    const std::map<std::string, std::string>* only_these);

  ModelConfig config_;
  TokenizerSpec tokenizer_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<TensorInfo> tensors_;            // canonical names, file order
  std::map<std::string, size_t> index_;        // canonical name -> tensors_
  std::map<std::string, std::string> origin_;  // canonical name -> "hf name in file"
};

HfModel::HfModel(const std::string& folder) {
  const fs::path dir(folder);
  std::error_code ec;
  config_ = read_hf_config((dir / "config.json").string());

  const fs::path single = dir / "model.safetensors";
  const fs::path index_path = dir / "model.safetensors.index.json";
  if (fs::exists(single, ec)) {
    files_.push_back(std::make_unique<SafetensorsFile>(single.string()));
    take_tensors(*files_.back(), nullptr);
  } else if (fs::exists(index_path, ec)) {
    const SafetensorsIndex index = read_safetensors_index(index_path.string());
    for (const std::string& shard : index.shards) {
      const fs::path p = dir / shard;
      require(fs::is_regular_file(p, ec), "shard '", shard, "' named by '", index_path.string(),
              "' is missing from the folder; download it or fix the index");
    }
    std::map<std::string, std::string> this_shard;
    for (const std::string& shard : index.shards) {
      files_.push_back(std::make_unique<SafetensorsFile>((dir / shard).string()));
      this_shard.clear();
      for (const auto& [name, file] : index.weight_map)
        if (file == shard) this_shard[name] = file;
      take_tensors(*files_.back(), &this_shard);
    }
  } else {
    const bool has_bin = fs::exists(dir / "pytorch_model.bin", ec) ||
                         fs::exists(dir / "pytorch_model.bin.index.json", ec);
    fail("folder '", folder, "' has neither model.safetensors nor model.safetensors.index.json",
         has_bin ? " (PyTorch .bin weights are not supported; re-save with safetensors)" : "");
  }

  const auto parts = split_fused_projections(tensors_, config_, "folder '" + folder + "'", origin_);
  for (const auto& [name, o] : parts) {
    origin_[name] = "rows [" + std::to_string(o.row_begin) + ", " + std::to_string(o.row_end) +
                    ") of " + origin_[o.fused_name];
  }
  index_.clear();
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;

  // Every tensor the config implies must be present with its shape, and nothing else mapped.
  const auto expected = expected_tensors(config_);
  for (const auto& [name, shape] : expected) {
    const TensorInfo* t = find(name);
    require(t != nullptr, "folder '", folder, "' lacks tensor ", missing_hf_name(name), " that a ",
            config_.arch, " model with this config.json needs",
            name == "output.weight" ? " (tie_word_embeddings is false)" : "");
    require(t->shape == shape, "folder '", folder, "': tensor ", origin_[name], " has shape ",
            shape_string(t->shape), " but config.json implies ", shape_string(shape));
  }
  for (const auto& t : tensors_) {
    require(expected.count(t.name), "folder '", folder, "': tensor ", origin_[t.name],
            " is not part of a ", config_.arch,
            " model with this config.json (a bias or layer the config does not declare)");
  }

  if (fs::exists(dir / "tokenizer.json", ec)) tokenizer_ = load_hf_tokenizer(folder);
}

void HfModel::take_tensors(const SafetensorsFile& file,
                           const std::map<std::string, std::string>* only_these) {
  std::set<std::string> found;
  for (const TensorInfo& t : file.tensors()) {
    if (only_these && !only_these->count(t.name)) continue;  // the index places it elsewhere
    found.insert(t.name);
    std::string name = canonical_name(t.name);
    if (name.empty()) continue;
    if (name == "output.weight" && config_.tied_embeddings)
      continue;  // tied: the embedding is used
    require(!index_.count(name), "'", file.path(), "': tensor ", t.name, " appears twice (also as ",
            origin_[name], ")");
    TensorInfo c = t;
    c.name = name;
    index_[name] = tensors_.size();
    origin_[name] = "'" + t.name + "' in '" + file.path() + "'";
    tensors_.push_back(std::move(c));
  }
  if (only_these) {
    for (const auto& [name, shard] : *only_these) {
      require(found.count(name), "the index names '", shard, "' as holding tensor '", name,
              "' but '", file.path(), "' has no such tensor");
    }
  }
}

}  // namespace

std::unique_ptr<ModelSource> open_hf_folder(const std::string& folder) {
  return std::make_unique<HfModel>(folder);
}

}  // namespace elutq
