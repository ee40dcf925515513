// Malformed model files: each must give elutq::Error with a message naming the problem, never a
// crash (this suite also runs under AddressSanitizer + UndefinedBehaviorSanitizer).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "format/safetensors_file.h"
#include "runtime/open_model.h"
#include "tensor/model_source.h"
#include "test_loaders_util.h"
#include "test_util.h"

namespace elutq {
namespace {

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <typename T>
void append(std::string* s, T v) {
  s->append(reinterpret_cast<const char*>(&v), sizeof(v));
}

// Runs f, expects an Error, and checks that its message contains every one of the words.
template <typename F>
void expect_error(F f, const std::vector<std::string>& words) {
  try {
    f();
    ADD_FAILURE() << "no error thrown; expected one mentioning '" << words[0] << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (std::getenv("SHOW_ERRORS")) std::printf("  msg: %s\n", msg.c_str());
    for (const auto& w : words) EXPECT_NE(msg.find(w), std::string::npos) << "message: " << msg;
  }
}

// A well-formed llama2.c checkpoint: dim 8, hidden 16, 1 layer, 2 heads, 1 kv head, vocab 4
// (negative: separate classifier when separate_classifier), seq_len 4.
std::string tiny_llama2c(bool separate_classifier) {
  const int32_t dim = 8, hidden = 16, layers = 1, heads = 2, kv = 1, vocab = 4, seq = 4;
  std::string s;
  for (int32_t v : {dim, hidden, layers, heads, kv, separate_classifier ? -vocab : vocab, seq})
    append(&s, v);
  const int kv_dim = kv * dim / heads, head = dim / heads;
  const size_t floats = vocab * dim +
                        layers * (2 * dim + 2 * dim * dim + 2 * dim * kv_dim + 3 * dim * hidden) +
                        dim + seq * head + (separate_classifier ? vocab * dim : 0);
  for (size_t i = 0; i < floats; ++i) append(&s, 0.01f * float(i % 97));
  return s;
}

// A llama2.c tokenizer.bin with the given pieces.
std::string tiny_tokenizer(const std::vector<std::string>& pieces) {
  std::string s;
  append(&s, int32_t(8));
  for (size_t i = 0; i < pieces.size(); ++i) {
    append(&s, -float(i));
    append(&s, int32_t(pieces[i].size()));
    s += pieces[i];
  }
  return s;
}

TEST(BadInput, Llama2cWellFormedTinyCheckpointLoads) {
  test::TempDir dir;
  for (bool separate : {false, true}) {
    write_file(dir.file("m.bin"), tiny_llama2c(separate));
    auto m = open_model(dir.file("m.bin"));
    EXPECT_EQ(m->config().tied_embeddings, !separate);
    EXPECT_EQ(m->find("output.weight") != nullptr, separate);
    EXPECT_EQ(m->tokenizer().kind, TokenizerKind::None);  // no tokenizer beside it
  }
}

TEST(BadInput, Llama2cTruncatedCheckpoint) {
  test::TempDir dir;
  std::string bytes = tiny_llama2c(false);
  write_file(dir.file("m.bin"), bytes.substr(0, bytes.size() - 4));
  expect_error([&] { open_model(dir.file("m.bin")); }, {"m.bin", "expected", "bytes"});
  write_file(dir.file("m.bin"), bytes + "xxxx");
  expect_error([&] { open_model(dir.file("m.bin")); }, {"expected", "bytes"});
  std::string v1 = bytes;
  const uint32_t magic = 0x616b3432;  // what llama2.c's versioned export writes first
  std::memcpy(v1.data(), &magic, 4);
  write_file(dir.file("m.bin"), v1);
  expect_error([&] { open_model(dir.file("m.bin")); }, {"versioned export format", "--version 0"});
  write_file(dir.file("m.bin"), bytes.substr(0, 10));
  expect_error([&] { open_model(dir.file("m.bin")); }, {"too small"});
  write_file(dir.file("m.bin"), "");
  expect_error([&] { open_model(dir.file("m.bin")); }, {"too small"});
}

TEST(BadInput, Llama2cHeaderOutOfRange) {
  test::TempDir dir;
  std::string bytes = tiny_llama2c(false);
  int32_t bad = -3;
  std::memcpy(bytes.data() + 8, &bad, 4);  // n_layers
  write_file(dir.file("m.bin"), bytes);
  expect_error([&] { open_model(dir.file("m.bin")); }, {"n_layers", "-3"});
  bytes = tiny_llama2c(false);
  bad = 3;
  std::memcpy(bytes.data() + 16, &bad, 4);  // n_kv_heads 3 does not divide 2 heads
  write_file(dir.file("m.bin"), bytes);
  expect_error([&] { open_model(dir.file("m.bin")); }, {"n_kv_heads"});
  bytes = tiny_llama2c(false);
  bad = 0x7fffffff;
  std::memcpy(bytes.data(), &bad, 4);  // absurd dim
  write_file(dir.file("m.bin"), bytes);
  expect_error([&] { open_model(dir.file("m.bin")); }, {"dim", "out of range"});
}

TEST(BadInput, Llama2cWrongTokenizer) {
  test::TempDir dir;
  write_file(dir.file("m.bin"), tiny_llama2c(false));
  // The right one loads.
  write_file(dir.file("tokenizer.bin"), tiny_tokenizer({"<unk>", "\n<s>\n", "\n</s>\n", " a"}));
  EXPECT_EQ(open_model(dir.file("m.bin"))->tokenizer().tokens[3],
            "\xE2\x96\x81"
            "a");
  // Too few tokens for the model (another model's vocabulary, or truncated).
  write_file(dir.file("tokenizer.bin"), tiny_tokenizer({"<unk>", "<s>", "</s>"}));
  expect_error([&] { open_model(dir.file("m.bin")); }, {"tokenizer.bin", "ends"});
  // Too many.
  write_file(dir.file("tokenizer.bin"), tiny_tokenizer({"<unk>", "<s>", "</s>", "a", "b"}));
  expect_error([&] { open_model(dir.file("m.bin")); }, {"tokenizer.bin", "more than"});
  // A piece longer than max_token_length / a negative length.
  write_file(dir.file("tokenizer.bin"), tiny_tokenizer({"<unk>", "<s>", "</s>", "123456789"}));
  expect_error([&] { open_model(dir.file("m.bin")); }, {"token 3", "length"});
  // Not a tokenizer at all: the checkpoint itself given as the tokenizer.
  expect_error([&] { open_model(dir.file("m.bin"), dir.file("m.bin")); }, {"max_token_length"});
  write_file(dir.file("tokenizer.bin"), "ab");
  expect_error([&] { open_model(dir.file("m.bin")); }, {"tokenizer.bin", "ends"});
}

TEST(BadInput, UnknownModelKind) {
  test::TempDir dir;
  write_file(dir.file("m.txt"), "hello");
  expect_error([&] { open_model(dir.file("m.txt")); }, {"cannot tell"});
  expect_error([&] { open_model(dir.file("absent.bin")); }, {"does not exist"});
  expect_error([&] { open_model(dir.path()); }, {"config.json"});
  write_file(dir.file("m.gguf"), "GGUX and more bytes");
  expect_error([&] { open_model(dir.file("m.gguf")); }, {"GGUF magic"});
  write_file(dir.file("pytorch_model.bin"), "PK");
  expect_error([&] { open_model(dir.file("pytorch_model.bin")); }, {"PyTorch", "safetensors"});
  write_file(dir.file("model.safetensors"), "");
  expect_error([&] { open_model(dir.file("model.safetensors")); }, {"no config.json"});
}

// ---- safetensors ----------------------------------------------------------------------------

std::vector<test::StTensor> two_tensors() {
  return {test::make_tensor("w", "F32", {3, 4}, 1), test::make_tensor("b", "F16", {5}, 2)};
}

std::string data_of(const std::vector<test::StTensor>& ts) {
  std::string d;
  for (const auto& t : ts) d += t.bytes;
  return d;
}

TEST(BadInput, SafetensorsTruncated) {
  test::TempDir dir;
  const std::string good = test::safetensors_bytes(two_tensors());
  const std::string path = dir.file("x.safetensors");
  test::write_bytes(path, good.substr(0, good.size() - 3));
  expect_error([&] { SafetensorsFile f(path); }, {"x.safetensors", "'b'", "past the end"});
  test::write_bytes(path, good.substr(0, 5));
  expect_error([&] { SafetensorsFile f(path); }, {"too small"});
  test::write_bytes(path, good.substr(0, 40));  // cut inside the header
  expect_error([&] { SafetensorsFile f(path); }, {"header length", "past the end"});
  // Every possible truncation gives an Error, none a crash.
  for (size_t n = 0; n < good.size(); ++n) {
    test::write_bytes(path, good.substr(0, n));
    EXPECT_THROW(SafetensorsFile f(path), Error) << "length " << n;
  }
}

TEST(BadInput, SafetensorsHeaderLengthPastEnd) {
  test::TempDir dir;
  std::string bytes = test::safetensors_bytes(two_tensors());
  const uint64_t huge = uint64_t(1) << 62;
  std::memcpy(bytes.data(), &huge, 8);
  test::write_bytes(dir.file("x.safetensors"), bytes);
  expect_error([&] { SafetensorsFile f(dir.file("x.safetensors")); },
               {"header length", "past the end"});
}

TEST(BadInput, SafetensorsBadJson) {
  test::TempDir dir;
  const std::string path = dir.file("x.safetensors");
  auto with_header = [&](std::string h) {
    std::string out(8, '\0');
    const uint64_t n = h.size();
    std::memcpy(out.data(), &n, 8);
    test::write_bytes(path, out + h);
  };
  with_header("{\"w\": {\"dtype\": \"F32\", ");
  expect_error([&] { SafetensorsFile f(path); }, {"not valid JSON"});
  with_header("[1, 2, 3]");
  expect_error([&] { SafetensorsFile f(path); }, {"JSON object"});
  with_header("{\"w\": 5}");
  expect_error([&] { SafetensorsFile f(path); }, {"'w'", "object"});
  with_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}");
  expect_error([&] { SafetensorsFile f(path); }, {"'w'", "data_offsets"});
  with_header(std::string("{\"\xff\xfe\": 1}"));  // invalid UTF-8 in a key
  expect_error([&] { SafetensorsFile f(path); }, {"not valid JSON"});
}

TEST(BadInput, SafetensorsOffsetsPastEnd) {
  test::TempDir dir;
  const auto ts = two_tensors();
  nlohmann::json h = test::safetensors_header(ts);
  h["b"]["data_offsets"] = {48, 48 + 10 + 1000};
  h["b"]["shape"] = {505};
  test::write_bytes(dir.file("x.safetensors"), test::safetensors_from_header(h, data_of(ts)));
  expect_error([&] { SafetensorsFile f(dir.file("x.safetensors")); },
               {"'b'", "past the end of the data area"});
  h = test::safetensors_header(ts);
  h["w"]["data_offsets"] = {20, 10};
  test::write_bytes(dir.file("x.safetensors"), test::safetensors_from_header(h, data_of(ts)));
  expect_error([&] { SafetensorsFile f(dir.file("x.safetensors")); }, {"'w'", "end before"});
  h = test::safetensors_header(ts);
  h["w"]["data_offsets"] = {-4, 44};
  test::write_bytes(dir.file("x.safetensors"), test::safetensors_from_header(h, data_of(ts)));
  expect_error([&] { SafetensorsFile f(dir.file("x.safetensors")); }, {"'w'", "non-negative"});
}

TEST(BadInput, SafetensorsShapeDtypeOffsetMismatch) {
  test::TempDir dir;
  const auto ts = two_tensors();
  nlohmann::json h = test::safetensors_header(ts);
  h["w"]["shape"] = {3, 5};  // 60 bytes of F32 in a 48-byte span
  test::write_bytes(dir.file("x.safetensors"), test::safetensors_from_header(h, data_of(ts)));
  expect_error([&] { SafetensorsFile f(dir.file("x.safetensors")); },
               {"'w'", "[3, 5]", "disagree"});
  h = test::safetensors_header(ts);
  h["b"]["dtype"] = "F32";  // 5 F32 need 20 bytes, the span holds 10
  test::write_bytes(dir.file("x.safetensors"), test::safetensors_from_header(h, data_of(ts)));
  expect_error([&] { SafetensorsFile f(dir.file("x.safetensors")); }, {"'b'", "F32", "disagree"});
  h = test::safetensors_header(ts);
  h["w"]["shape"] = {-3, 4};
  test::write_bytes(dir.file("x.safetensors"), test::safetensors_from_header(h, data_of(ts)));
  expect_error([&] { SafetensorsFile f(dir.file("x.safetensors")); }, {"'w'", "non-negative"});
  h = test::safetensors_header(ts);
  h["w"]["shape"] = {uint64_t(1) << 40, uint64_t(1) << 40};
  test::write_bytes(dir.file("x.safetensors"), test::safetensors_from_header(h, data_of(ts)));
  expect_error([&] { SafetensorsFile f(dir.file("x.safetensors")); }, {"'w'", "too large"});
  // Two tensors on the same bytes, and bytes owned by no tensor.
  h = test::safetensors_header(ts);
  h["c"] = h["w"];
  test::write_bytes(dir.file("x.safetensors"), test::safetensors_from_header(h, data_of(ts)));
  expect_error([&] { SafetensorsFile f(dir.file("x.safetensors")); },
               {"'w'", "overlaps tensor", "'c'"});
  h = test::safetensors_header(ts);
  test::write_bytes(dir.file("x.safetensors"),
                    test::safetensors_from_header(h, data_of(ts) + "tail"));
  expect_error([&] { SafetensorsFile f(dir.file("x.safetensors")); }, {"belong to no tensor"});
}

TEST(BadInput, SafetensorsUnknownDtype) {
  test::TempDir dir;
  const auto ts = two_tensors();
  nlohmann::json h = test::safetensors_header(ts);
  h["b"]["dtype"] = "Q7";
  test::write_bytes(dir.file("x.safetensors"), test::safetensors_from_header(h, data_of(ts)));
  expect_error([&] { SafetensorsFile f(dir.file("x.safetensors")); },
               {"'b'", "unknown dtype", "Q7", "F32, F16, BF16"});
  h["b"]["dtype"] = "I16";
  test::write_bytes(dir.file("x.safetensors"), test::safetensors_from_header(h, data_of(ts)));
  expect_error([&] { SafetensorsFile f(dir.file("x.safetensors")); },
               {"'b'", "I16", "cannot load"});
}

TEST(BadInput, SafetensorsRandomCorruptionNeverCrashes) {
  test::TempDir dir;
  const std::string good = test::safetensors_bytes(two_tensors());
  uint32_t x = 7;
  for (int iter = 0; iter < 300; ++iter) {
    std::string bytes = good;
    for (int k = 0; k < 3; ++k) {
      x = x * 1664525u + 1013904223u;
      bytes[(x >> 8) % bytes.size()] = static_cast<char>(x >> 24);
    }
    test::write_bytes(dir.file("x.safetensors"), bytes);
    try {
      SafetensorsFile f(dir.file("x.safetensors"));
      for (const auto& t : f.tensors()) EXPECT_LE(t.nbytes, bytes.size());
    } catch (const Error&) {
    }
  }
}

// ---- Hugging Face folders -------------------------------------------------------------------

TEST(BadInput, HfUnknownArchitecture) {
  test::TempDir dir;
  test::write_tiny_hf_folder(dir.path(), "llama", false);
  nlohmann::json c = test::tiny_config("llama", false);
  c["model_type"] = "gpt2";
  test::write_bytes(dir.file("config.json"), c.dump());
  expect_error([&] { open_model(dir.path()); }, {"gpt2", "not supported", "llama, mistral"});
  c.erase("model_type");
  c["architectures"] = {"FalconForCausalLM"};
  test::write_bytes(dir.file("config.json"), c.dump());
  expect_error([&] { open_model(dir.path()); }, {"FalconForCausalLM", "llama, mistral"});
  c.erase("architectures");
  test::write_bytes(dir.file("config.json"), c.dump());
  expect_error([&] { open_model(dir.path()); }, {"model_type", "architectures"});
}

TEST(BadInput, HfMissingOrBadConfigKey) {
  test::TempDir dir;
  test::write_tiny_hf_folder(dir.path(), "llama", false);
  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "vocab_size"}) {
    nlohmann::json c = test::tiny_config("llama", false);
    c.erase(key);
    test::write_bytes(dir.file("config.json"), c.dump());
    expect_error([&] { open_model(dir.path()); }, {key, "config.json", "lacks"});
  }
  nlohmann::json c = test::tiny_config("llama", false);
  c["hidden_size"] = "eight";
  test::write_bytes(dir.file("config.json"), c.dump());
  expect_error([&] { open_model(dir.path()); }, {"hidden_size", "integer"});
  c = test::tiny_config("llama", false);
  c["num_hidden_layers"] = 1 << 29;
  test::write_bytes(dir.file("config.json"), c.dump());
  expect_error([&] { open_model(dir.path()); }, {"num_hidden_layers", "implausible"});
  c["num_hidden_layers"] = -2;
  test::write_bytes(dir.file("config.json"), c.dump());
  expect_error([&] { open_model(dir.path()); }, {"num_hidden_layers", "non-negative"});
  c = test::tiny_config("llama", false);
  c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  test::write_bytes(dir.file("config.json"), c.dump());
  expect_error([&] { open_model(dir.path()); }, {"yarn", "not supported"});
  c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  test::write_bytes(dir.file("config.json"), c.dump());
  expect_error([&] { open_model(dir.path()); }, {"llama3", "low_freq_factor"});
  test::write_bytes(dir.file("config.json"), "{\"hidden_size\": 8,");
  expect_error([&] { open_model(dir.path()); }, {"config.json", "not valid JSON"});
}

TEST(BadInput, HfConfigValuesOfAnyTypeNeverCrash) {
  test::TempDir dir;
  test::write_tiny_hf_folder(dir.path(), "qwen2", false);
  const nlohmann::json base = test::tiny_config("qwen2", false);
  const nlohmann::json odd[] = {nullptr, "x", -1, 0, 1.5, true, nlohmann::json::array(),
                                nlohmann::json::object(), {1, 2}, 1e300};
  std::vector<std::string> keys;
  for (const auto& [k, v] : base.items()) keys.push_back(k);
  for (const char* k : {"rope_scaling", "rope_parameters", "layer_types", "use_sliding_window",
                        "sliding_window", "max_window_layers", "attention_bias", "mlp_bias"})
    keys.push_back(k);
  for (const auto& key : keys) {
    for (const auto& v : odd) {
      nlohmann::json c = base;
      c[key] = v;
      test::write_bytes(dir.file("config.json"), c.dump());
      try {
        open_model(dir.path());
      } catch (const Error&) {
      }  // anything else escapes and fails the test
    }
  }
}

TEST(BadInput, HfTensorsDisagreeWithConfig) {
  test::TempDir dir;
  test::write_tiny_hf_folder(dir.path(), "llama", false);
  nlohmann::json c = test::tiny_config("llama", false);
  c["intermediate_size"] = 10;
  test::write_bytes(dir.file("config.json"), c.dump());
  expect_error([&] { open_model(dir.path()); }, {"mlp.", "shape", "config.json implies"});
  // A missing layer tensor.
  c = test::tiny_config("llama", false);
  test::write_bytes(dir.file("config.json"), c.dump());
  auto ts = test::tiny_tensors("llama", false);
  ts.erase(ts.begin() + 2);  // layer 0 q_proj
  test::write_bytes(dir.file("model.safetensors"), test::safetensors_bytes(ts));
  expect_error([&] { open_model(dir.path()); },
               {"lacks tensor", "model.layers.0.self_attn.q_proj.weight"});
  // Untied config without lm_head.
  ts = test::tiny_tensors("llama", true);
  test::write_bytes(dir.file("model.safetensors"), test::safetensors_bytes(ts));
  expect_error([&] { open_model(dir.path()); }, {"lacks tensor", "lm_head.weight"});
  // Qwen2 biases in a llama checkpoint are not silently dropped.
  ts = test::tiny_tensors("qwen2", false);
  test::write_bytes(dir.file("model.safetensors"), test::safetensors_bytes(ts));
  expect_error([&] { open_model(dir.path()); }, {"q_proj.bias", "not part of"});
  // No weights at all.
  std::filesystem::remove(dir.file("model.safetensors"));
  expect_error([&] { open_model(dir.path()); }, {"model.safetensors"});
}

TEST(BadInput, HfShardedIndexNamesMissingFile) {
  test::TempDir dir;
  test::write_bytes(dir.file("config.json"), test::tiny_config("llama", false).dump());
  const auto ts = test::tiny_tensors("llama", false);
  const size_t half = ts.size() / 2;
  const std::vector<test::StTensor> a(ts.begin(), ts.begin() + half);
  test::write_bytes(dir.file("model-00001-of-00002.safetensors"), test::safetensors_bytes(a));
  nlohmann::json index = {{"weight_map", nlohmann::json::object()}};
  for (size_t i = 0; i < ts.size(); ++i)
    index["weight_map"][ts[i].name] =
        i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  test::write_bytes(dir.file("model.safetensors.index.json"), index.dump());
  expect_error([&] { open_model(dir.path()); },
               {"model-00002-of-00002.safetensors", "missing", "model.safetensors.index.json"});
  // The index places a tensor in a shard that does not hold it.
  index["weight_map"][ts[half].name] = "model-00001-of-00002.safetensors";
  for (size_t i = half + 1; i < ts.size(); ++i) index["weight_map"].erase(ts[i].name);
  test::write_bytes(dir.file("model.safetensors.index.json"), index.dump());
  expect_error([&] { open_model(dir.path()); }, {ts[half].name, "no such tensor"});
  // Shard names must stay inside the folder.
  index["weight_map"][ts[0].name] = "../elsewhere.safetensors";
  test::write_bytes(dir.file("model.safetensors.index.json"), index.dump());
  expect_error([&] { open_model(dir.path()); }, {"not a plain file name"});
  test::write_bytes(dir.file("model.safetensors.index.json"), "{\"weight_map\": 3}");
  expect_error([&] { open_model(dir.path()); }, {"weight_map"});
}

}  // namespace
}  // namespace elutq
