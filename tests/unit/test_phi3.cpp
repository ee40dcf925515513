// Phi-3: its fused q/k/v and gate/up tensors (Hugging Face qkv_proj / gate_up_proj; llama.cpp's
// phi3 GGUF attn_qkv and double-height ffn_up) load as row-range views under the canonical names,
// so the same weights give the same logits as a LLaMA folder storing them apart, from safetensors,
// GGUF and elutq's quantized files alike; what Phi-3 needs and elutq lacks is refused by name.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "format/hf_model_config.h"
#include "format/dequant.h"
#include "model/model.h"
#include "runtime/open_model.h"
#include "tensor/model_source.h"
#include "test_gguf_util.h"
#include "test_loaders_util.h"
#include "test_util.h"

namespace elutq {
namespace {

using test::error_of;
using test::StTensor;

// tiny_config's shapes: hidden 8, 2 heads of 4 over 1 KV head (q 8 rows, k and v 4), ffn 12.
constexpr int64_t kDim = 8, kQ = 8, kKv = 4, kFfn = 12, kVocab = 16;

// The tiny_config weights as LLaMA stores them, q/k/v and gate/up in one dtype per layer (F32,
// then BF16) so that they can also be stored fused.
std::vector<StTensor> split_tensors() {
  std::vector<StTensor> ts;
  uint32_t seed = 1;
  auto add = [&](const std::string& name, const char* dtype, std::vector<int64_t> shape) {
    ts.push_back(test::make_tensor(name, dtype, std::move(shape), seed++));
  };
  add("model.embed_tokens.weight", "F32", {kVocab, kDim});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const char* fused_dtype = l == 0 ? "F32" : "BF16";
    add(p + "input_layernorm.weight", "F32", {kDim});
    add(p + "self_attn.q_proj.weight", fused_dtype, {kQ, kDim});
    add(p + "self_attn.k_proj.weight", fused_dtype, {kKv, kDim});
    add(p + "self_attn.v_proj.weight", fused_dtype, {kKv, kDim});
    add(p + "self_attn.o_proj.weight", "F32", {kDim, kQ});
    add(p + "post_attention_layernorm.weight", "F32", {kDim});
    add(p + "mlp.gate_proj.weight", fused_dtype, {kFfn, kDim});
    add(p + "mlp.up_proj.weight", fused_dtype, {kFfn, kDim});
    add(p + "mlp.down_proj.weight", "F32", {kDim, kFfn});
  }
  add("model.norm.weight", "F32", {kDim});
  add("lm_head.weight", "F32", {kVocab, kDim});
  return ts;
}

// The parts stacked by rows, as one stored tensor.
StTensor stack_rows(const std::string& name, const std::vector<const StTensor*>& parts) {
  StTensor t{name, parts[0]->dtype, {0, parts[0]->shape[1]}, {}, {}};
  for (const StTensor* p : parts) {
    t.shape[0] += p->shape[0];
    t.values.insert(t.values.end(), p->values.begin(), p->values.end());
    t.bytes += p->bytes;
  }
  return t;
}

// The same weights as Phi-3 stores them: qkv_proj (q, k, v rows) and gate_up_proj (gate, up rows)
// where q_proj and gate_proj were.
std::vector<StTensor> fused_tensors(const std::vector<StTensor>& split) {
  std::vector<StTensor> out;
  for (size_t i = 0; i < split.size(); ++i) {
    const std::string& n = split[i].name;
    if (n.ends_with("q_proj.weight")) {
      const std::string p = n.substr(0, n.size() - std::string("q_proj.weight").size());
      out.push_back(stack_rows(p + "qkv_proj.weight", {&split[i], &split[i + 1], &split[i + 2]}));
      i += 2;
    } else if (n.ends_with("gate_proj.weight")) {
      const std::string p = n.substr(0, n.size() - std::string("gate_proj.weight").size());
      out.push_back(stack_rows(p + "gate_up_proj.weight", {&split[i], &split[i + 1]}));
      i += 1;
    } else {
      out.push_back(split[i]);
    }
  }
  return out;
}

nlohmann::json phi3_config() {
  nlohmann::json j = test::tiny_config("phi3", false);
  j["architectures"] = {"Phi3ForCausalLM"};
  return j;
}

void write_folder(const std::string& dir, const nlohmann::json& config,
                  const std::vector<StTensor>& tensors) {
  test::write_bytes(dir + "/config.json", config.dump(2));
  test::write_bytes(dir + "/model.safetensors", test::safetensors_bytes(tensors));
}

// Logits of every position of a fixed 6-token input.
std::vector<float> all_logits(const ModelSource& src) {
  Model m(src);
  const int ids[] = {1, 5, 3, 7, 2, 9};
  std::vector<float> out;
  for (int i = 0; i < 6; ++i) {
    const float* l = m.prefill_logits(&ids[i], 1, i);
    out.insert(out.end(), l, l + kVocab);
  }
  return out;
}

std::vector<float> floats_of(const TensorInfo& t) {
  std::vector<float> v(size_t(t.numel()));
  tensor_to_f32(t, v.data());
  return v;
}

// Checks that the source holds each layer's q/k/v and gate/up as consecutive row views of one
// fused tensor, with the values the LLaMA names hold in split, and no fused names.
void expect_split_views(const ModelSource& m, const std::vector<StTensor>& split) {
  for (const std::string& n : m.tensor_names()) {
    EXPECT_EQ(n.find("qkv"), std::string::npos) << n;
    EXPECT_EQ(n.find("gate_up"), std::string::npos) << n;
  }
  EXPECT_EQ(m.tensor_names().size(), split.size());
  const std::pair<const char*, const char*> names[] = {
      {"self_attn.q_proj.weight", "attn_q.weight"}, {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"}, {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"}};
  for (int l = 0; l < 2; ++l) {
    const std::string hf = "model.layers." + std::to_string(l) + ".",
                      blk = "blk." + std::to_string(l) + ".";
    for (const auto& [from, to] : names) {
      const TensorInfo* t = m.find(blk + to);
      ASSERT_NE(t, nullptr) << blk + to;
      for (const StTensor& s : split) {
        if (s.name != hf + from) continue;
        EXPECT_EQ(t->shape, s.shape) << t->name;
        EXPECT_EQ(t->nbytes, s.bytes.size()) << t->name;
        EXPECT_EQ(floats_of(*t), s.values) << t->name;
      }
    }
    // Views, not copies: each part starts where the one above it ends.
    const TensorInfo *q = m.find(blk + "attn_q.weight"), *k = m.find(blk + "attn_k.weight"),
                     *v = m.find(blk + "attn_v.weight"), *g = m.find(blk + "ffn_gate.weight"),
                     *u = m.find(blk + "ffn_up.weight");
    EXPECT_EQ(k->data, q->data + q->nbytes);
    EXPECT_EQ(v->data, k->data + k->nbytes);
    EXPECT_EQ(u->data, g->data + g->nbytes);
  }
}

TEST(Phi3Folder, FusedProjectionsAreRowViewsWithTheLlamaLogits) {
  test::TempDir phi3, llama;
  const std::vector<StTensor> split = split_tensors();
  write_folder(phi3.path(), phi3_config(), fused_tensors(split));
  write_folder(llama.path(), test::tiny_config("llama", false), split);
  auto m = open_model(phi3.path());
  EXPECT_EQ(m->config().arch, "phi3");
  EXPECT_EQ(m->config().n_kv_heads, 1);
  EXPECT_EQ(m->config().sliding_window, 0);
  expect_split_views(*m, split);
  EXPECT_EQ(all_logits(*m), all_logits(*open_model(llama.path())));
}

TEST(Phi3Folder, WrongOrMissingFusedTensorsAreNamed) {
  const std::vector<StTensor> split = split_tensors();
  auto open_with = [&](const std::function<void(std::vector<StTensor>&)>& change) {
    test::TempDir dir;
    std::vector<StTensor> ts = fused_tensors(split);
    change(ts);
    write_folder(dir.path(), phi3_config(), ts);
    return error_of([&] { open_model(dir.path()); });
  };
  auto find = [](std::vector<StTensor>& ts, const std::string& name) -> StTensor& {
    for (StTensor& t : ts)
      if (t.name == name) return t;
    throw std::runtime_error("no " + name);
  };
  // One row short of q + k + v.
  std::string e = open_with([&](std::vector<StTensor>& ts) {
    StTensor& t = find(ts, "model.layers.1.self_attn.qkv_proj.weight");
    t = test::make_tensor(t.name, t.dtype, {kQ + 2 * kKv - 1, kDim}, 99);
  });
  EXPECT_NE(e.find("'model.layers.1.self_attn.qkv_proj.weight'"), std::string::npos) << e;
  EXPECT_NE(e.find("[15, 8]"), std::string::npos) << e;
  EXPECT_NE(e.find("[16, 8] (8 attn_q rows then 4 attn_k rows then 4 attn_v rows)"),
            std::string::npos)
      << e;
  // gate_up_proj as tall as one of its halves.
  e = open_with([&](std::vector<StTensor>& ts) {
    StTensor& t = find(ts, "model.layers.0.mlp.gate_up_proj.weight");
    t = test::make_tensor(t.name, t.dtype, {kFfn, kDim}, 99);
  });
  EXPECT_NE(e.find("gate_up_proj.weight' in"), std::string::npos) << e;
  EXPECT_NE(e.find("[24, 8] (12 ffn_gate rows then 12 ffn_up rows)"), std::string::npos) << e;
  // No q/k/v at all: both the LLaMA and the fused name are given (k comes first by name).
  e = open_with([&](std::vector<StTensor>& ts) {
    ts.erase(ts.begin() + 2);  // model.layers.0.self_attn.qkv_proj.weight
  });
  EXPECT_NE(e.find("lacks tensor 'model.layers.0.self_attn.k_proj.weight' (or the fused "
                   "'model.layers.0.self_attn.qkv_proj.weight')"),
            std::string::npos)
      << e;
  // A part stored fused and on its own.
  e = open_with([&](std::vector<StTensor>& ts) { ts.push_back(split[2]); });  // layer 0 q_proj
  EXPECT_NE(e.find("blk.0.attn_q.weight is stored both on its own and as part of the fused"),
            std::string::npos)
      << e;
}

TEST(Phi3Config, DefaultsOfPhi3ConfigAndRefusedRope) {
  test::TempDir dir;
  auto read = [&](const nlohmann::json& j) {
    test::write_bytes(dir.file("config.json"), j.dump());
    return read_hf_config(dir.file("config.json"));
  };
  auto refusal = [&](const nlohmann::json& j) { return error_of([&] { read(j); }); };
  nlohmann::json j = phi3_config();
  for (const char* k : {"num_key_value_heads", "head_dim", "max_position_embeddings", "rope_theta"})
    j.erase(k);
  j.erase("model_type");  // architectures[0] names the class
  ModelConfig c = read(j);
  EXPECT_EQ(c.arch, "phi3");
  EXPECT_EQ(c.n_kv_heads, 2);  // = heads
  EXPECT_EQ(c.max_seq_len, 4096);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  // Phi-3-mini-4k's sliding_window 2047 applies to every layer, with no use_sliding_window.
  j = phi3_config();
  j["sliding_window"] = 2047;
  j["original_max_position_embeddings"] = 4096;  // only LongRoPE reads it
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(read(j).sliding_window, 2047);
  j["sliding_window"] = nullptr;
  EXPECT_EQ(read(j).sliding_window, 0);

  // LongRoPE (Phi-3 128k), under its names in transformers 4.x and 5.x configs.
  const std::vector<double> factors(2, 1.0);  // head_dim / 2
  for (const char* type : {"longrope", "su"}) {
    j = phi3_config();
    j["rope_scaling"] = {{"type", type}, {"short_factor", factors}, {"long_factor", factors}};
    const std::string e = refusal(j);
    EXPECT_NE(e.find(std::string("rope scaling type '") + type + "' (LongRoPE"), std::string::npos)
        << e;
    EXPECT_NE(e.find("not supported"), std::string::npos) << e;
  }
  j = phi3_config();
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "longrope"}, {"rope_theta", 1e4}};
  EXPECT_NE(refusal(j).find("'longrope' (LongRoPE"), std::string::npos);

  // Partial rotary embeddings (Phi-4-mini's 0.75), at the top level or in rope_parameters.
  j = phi3_config();
  j["partial_rotary_factor"] = 0.75;
  EXPECT_NE(refusal(j).find("partial_rotary_factor = 0.75"), std::string::npos) << refusal(j);
  j.erase("partial_rotary_factor");
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e4},
                          {"partial_rotary_factor", 0.5}};
  EXPECT_NE(refusal(j).find("partial_rotary_factor = 0.5"), std::string::npos) << refusal(j);
  j["rope_parameters"]["partial_rotary_factor"] = 1.0;  // what transformers 5 writes by default
  EXPECT_EQ(read(j).rope_scaling.type, "none");
}

// llama.cpp's phi3 GGUF of the same weights: attn_qkv, and ffn_up holding gate rows then up rows.
test::GgufBytes phi3_gguf(const std::vector<StTensor>& split) {
  test::GgufBytes g;
  g.kv_string("general.architecture", "phi3");
  g.kv_u32("phi3.context_length", 64);
  g.kv_u32("phi3.rope.scaling.original_context_length", 64);
  g.kv_u32("phi3.embedding_length", kDim);
  g.kv_u32("phi3.feed_forward_length", kFfn);
  g.kv_u32("phi3.block_count", 2);
  g.kv_u32("phi3.attention.head_count", 2);
  g.kv_u32("phi3.attention.head_count_kv", 1);
  g.kv_f32("phi3.attention.layer_norm_rms_epsilon", 1e-5f);
  g.kv_u32("phi3.rope.dimension_count", 4);
  g.kv_f32("phi3.rope.freq_base", 500000.0f);
  const std::pair<const char*, const char*> names[] = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.qkv_proj.weight", "attn_qkv.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"}};
  for (const StTensor& t : fused_tensors(split)) {
    std::string name;
    for (const auto& [from, to] : names) {
      if (t.name == from) name = to;
      for (int l = 0; l < 2; ++l) {
        const std::string layer = std::to_string(l);
        if (t.name == "model.layers." + layer + "." + from) name = "blk." + layer + "." + to;
      }
    }
    std::vector<uint64_t> dims(t.shape.rbegin(), t.shape.rend());  // innermost first
    g.add_raw(name, dims, t.dtype == "F32" ? 0 : 30, t.bytes);     // F32 or BF16
  }
  return g;
}

TEST(Phi3Gguf, FusedTensorsSplitAndGiveTheFolderLogits) {
  test::TempDir dir;
  const std::vector<StTensor> split = split_tensors();
  test::GgufBytes g = phi3_gguf(split);
  g.kv_u32("phi3.attention.sliding_window", 3);
  g.write(dir.file("phi3.gguf"));
  auto m = open_model(dir.file("phi3.gguf"));
  EXPECT_EQ(m->config().arch, "phi3");
  EXPECT_EQ(m->config().rope_style, RopeStyle::HalfSplit);  // not permuted, unlike llama GGUFs
  EXPECT_EQ(m->config().sliding_window, 3);
  expect_split_views(*m, split);
  // The same window in the folder: the logits of the two loads are the same numbers.
  nlohmann::json c = phi3_config();
  c["sliding_window"] = 3;
  write_folder(dir.path(), c, fused_tensors(split));
  EXPECT_EQ(all_logits(*m), all_logits(*open_model(dir.path())));
}

TEST(Phi3Gguf, WhatPhi3FilesMayHoldButElutqLacksIsRefused) {
  const std::vector<StTensor> split = split_tensors();
  auto refusal = [](const test::GgufBytes& g) {
    test::TempDir dir;
    g.write(dir.file("x.gguf"));
    return error_of([&] { open_model(dir.file("x.gguf")); });
  };
  // ffn_up of one half's height while there is no ffn_gate.
  test::GgufBytes g = phi3_gguf(split);
  for (auto& t : g.tensors)
    if (t.name == "blk.1.ffn_up.weight") t = {t.name, {kDim, kFfn}, 0, std::string(kDim * kFfn * 4, '\0')};
  std::string e = refusal(g);
  EXPECT_NE(e.find("blk.1.ffn_up.weight has shape [12, 8], but with no blk.1.ffn_gate.weight a "
                   "phi3 file stores gate rows then up rows in it: [24, 8]"),
            std::string::npos)
      << e;
  // attn_qkv with one k/v head too many.
  g = phi3_gguf(split);
  for (auto& t : g.tensors)
    if (t.name == "blk.0.attn_qkv.weight") t = {t.name, {kDim, 20}, 0, std::string(kDim * 20 * 4, '\0')};
  e = refusal(g);
  EXPECT_NE(e.find("fused tensor blk.0.attn_qkv.weight has shape [20, 8] but a phi3 model with "
                   "this config stores it as [16, 8]"),
            std::string::npos)
      << e;
  // LongRoPE factor tensors (Phi-3 128k).
  g = phi3_gguf(split);
  g.add_f32("rope_factors_long.weight", {2}, {1.0f, 1.0f});
  e = refusal(g);
  EXPECT_NE(e.find("rope_factors_long.weight, LongRoPE scaling"), std::string::npos) << e;
  // RoPE on half of each head.
  test::GgufBytes partial;
  partial.kv_string("general.architecture", "phi3");
  partial.kv_u32("phi3.rope.dimension_count", 2);
  for (const char* k : {"phi3.context_length", "phi3.embedding_length", "phi3.block_count"})
    partial.kv_u32(k, 8);
  partial.kv_u32("phi3.feed_forward_length", kFfn);
  partial.kv_u32("phi3.attention.head_count", 2);
  partial.kv_f32("phi3.attention.layer_norm_rms_epsilon", 1e-5f);
  e = refusal(partial);
  EXPECT_NE(e.find("phi3.rope.dimension_count = 2 but heads have 4 dimensions"), std::string::npos)
      << e;
}

TEST(Phi3Quantized, FileHoldsTheSplitTensorsAndRunsLikeTheLlamaOne) {
  test::TempDir dir;
  const std::vector<StTensor> split = split_tensors();
  test::TempDir phi3, llama;
  write_folder(phi3.path(), phi3_config(), fused_tensors(split));
  write_folder(llama.path(), test::tiny_config("llama", false), split);
  const std::string args = " --method hlq --bits 4 --group 8 -t 1";
  for (const auto& [src, out] : {std::pair{phi3.path(), dir.file("phi3.gguf")},
                                 std::pair{llama.path(), dir.file("llama.gguf")}}) {
    const test::CommandResult r = test::run_elutq("quantize " + src + " " + out + args);
    ASSERT_EQ(r.code, 0) << r.out;
  }
  auto q = open_model(dir.file("phi3.gguf"));
  EXPECT_EQ(q->format_name(), "elutq");
  EXPECT_EQ(q->config().arch, "phi3");
  EXPECT_EQ(q->config().rope_style, RopeStyle::HalfSplit);
  for (const std::string& n : q->tensor_names()) {
    EXPECT_EQ(n.find("qkv"), std::string::npos) << n;
    EXPECT_EQ(n.find("gate_up"), std::string::npos) << n;
  }
  for (const char* n : {"attn_q", "attn_k", "attn_v", "ffn_gate", "ffn_up"}) {
    const TensorInfo* t = q->find(std::string("blk.1.") + n + ".weight");
    ASSERT_NE(t, nullptr) << n;
    EXPECT_EQ(t->dtype, DType::ELUTQ) << n;
  }
  // Same weights, same quantization: the architecture name is all that differs.
  EXPECT_EQ(all_logits(*q), all_logits(*open_model(dir.file("llama.gguf"))));
}

}  // namespace
}  // namespace elutq
