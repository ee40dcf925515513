// Test helpers for the loaders: write safetensors files (well-formed or deliberately broken),
// config.json files and whole tiny Hugging Face folders.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/fp16.h"

namespace elutq::test {

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// One tensor to store: its values are kept as float for checking, bytes as stored.
struct StTensor {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16" (or anything, for bad-input tests)
  std::vector<int64_t> shape;
  std::vector<float> values;  // what the stored bytes decode to
  std::string bytes;
};

// A tensor of deterministic pseudo-random values, exactly representable in its dtype.
inline StTensor make_tensor(const std::string& name, const std::string& dtype,
                            std::vector<int64_t> shape, uint32_t seed) {
  StTensor t{name, dtype, std::move(shape), {}, {}};
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  uint32_t x = seed * 2654435761u + 12345u;
  for (int64_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    float v = (static_cast<float>(x >> 8) / 16777216.0f - 0.5f) * 2.0f;
    if (dtype == "F16") {
      const uint16_t h = f32_to_fp16(v);
      v = fp16_to_f32(h);
      t.bytes.append(reinterpret_cast<const char*>(&h), 2);
    } else if (dtype == "BF16") {
      const uint16_t h = f32_to_bf16(v);
      v = bf16_to_f32(h);
      t.bytes.append(reinterpret_cast<const char*>(&h), 2);
    } else {
      t.bytes.append(reinterpret_cast<const char*>(&v), 4);
    }
    t.values.push_back(v);
  }
  return t;
}

// header JSON + data, with the 8-byte length and space padding to a multiple of 8.
inline std::string safetensors_from_header(const nlohmann::json& header, const std::string& data) {
  std::string h = header.dump();
  while (h.size() % 8) h += ' ';
  std::string out(8, '\0');
  uint64_t len = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  return out + h + data;
}

inline nlohmann::json safetensors_header(const std::vector<StTensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t off = 0;
  for (const auto& t : tensors) {
    header[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
    off += t.bytes.size();
  }
  return header;
}

inline std::string safetensors_bytes(const std::vector<StTensor>& tensors) {
  std::string data;
  for (const auto& t : tensors) data += t.bytes;
  return safetensors_from_header(safetensors_header(tensors), data);
}

// A tiny config: hidden 8, intermediate 12, 2 layers, 2 heads, 1 KV head, vocab 16.
inline nlohmann::json tiny_config(const std::string& model_type, bool tied) {
  return {{"architectures", {model_type == "llama" ? "LlamaForCausalLM" : "X"}},
          {"model_type", model_type},
          {"hidden_size", 8},
          {"intermediate_size", 12},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 2},
          {"num_key_value_heads", 1},
          {"head_dim", 4},
          {"vocab_size", 16},
          {"max_position_embeddings", 64},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 500000.0},
          {"tie_word_embeddings", tied},
          {"hidden_act", "silu"},
          {"torch_dtype", "float32"}};
}

// The HF tensors of tiny_config for the architecture, in F32 / F16 / BF16 by turns.
inline std::vector<StTensor> tiny_tensors(const std::string& model_type, bool tied) {
  const char* dtypes[] = {"F32", "F16", "BF16"};
  std::vector<StTensor> ts;
  uint32_t seed = 1;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    ts.push_back(make_tensor(name, dtypes[seed % 3], std::move(shape), seed));
    ++seed;
  };
  add("model.embed_tokens.weight", {16, 8});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {8});
    add(p + "self_attn.q_proj.weight", {8, 8});
    add(p + "self_attn.k_proj.weight", {4, 8});
    add(p + "self_attn.v_proj.weight", {4, 8});
    add(p + "self_attn.o_proj.weight", {8, 8});
    if (model_type == "qwen2") {
      add(p + "self_attn.q_proj.bias", {8});
      add(p + "self_attn.k_proj.bias", {4});
      add(p + "self_attn.v_proj.bias", {4});
    }
    if (model_type == "qwen3") {
      add(p + "self_attn.q_norm.weight", {4});
      add(p + "self_attn.k_norm.weight", {4});
    }
    add(p + "post_attention_layernorm.weight", {8});
    add(p + "mlp.gate_proj.weight", {12, 8});
    add(p + "mlp.up_proj.weight", {12, 8});
    add(p + "mlp.down_proj.weight", {8, 12});
    add(p + "self_attn.rotary_emb.inv_freq", {2});  // old checkpoints carry it; ignored
  }
  add("model.norm.weight", {8});
  if (!tied) add("lm_head.weight", {16, 8});
  return ts;
}

// Writes config.json + model.safetensors for the architecture into dir; returns the tensors.
inline std::vector<StTensor> write_tiny_hf_folder(const std::string& dir,
                                                  const std::string& model_type, bool tied) {
  write_bytes(dir + "/config.json", tiny_config(model_type, tied).dump(2));
  auto ts = tiny_tensors(model_type, tied);
  write_bytes(dir + "/model.safetensors", safetensors_bytes(ts));
  return ts;
}

}  // namespace elutq::test
