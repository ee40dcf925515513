// llama2.c checkpoints as a ModelSource. The "v0" format written by llama2.c's export is a header
// of 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len) followed by
// fp32 tables, each stacked over all layers, in this order:
//   token embedding            (vocab, dim)
//   attention rmsnorm          (layer, dim)
//   wq                         (layer, n_heads * head_size, dim)
//   wk, wv                     (layer, n_kv_heads * head_size, dim)
//   wo                         (layer, dim, n_heads * head_size)
//   ffn rmsnorm                (layer, dim)
//   w1 (gate)                  (layer, hidden_dim, dim)
//   w2 (down)                  (layer, dim, hidden_dim)
//   w3 (up)                    (layer, hidden_dim, dim)
//   final rmsnorm              (dim)
//   freq_cis real, imag        (seq_len, head_size / 2) each; unused, RoPE is recomputed
//   classifier                 (vocab, dim), only when vocab_size is stored negative
// Weights are mapped in place; nothing is copied.
#include "format/llama2c_model.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/mapped_file.h"
#include "format/llama2c_tokenizer.h"
#include "tensor/tensor_names.h"

namespace elutq {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kHeaderBytes = 7 * sizeof(int32_t);
// Bigger than any llama2.c model; keeps the size arithmetic far from overflow.
constexpr int64_t kMaxDimension = 1 << 20;

class Llama2cModel : public ModelSource {
 public:
  Llama2cModel(const std::string& path, const std::string& tokenizer_path);

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
  std::string format_name() const override { return "llama2.c"; }
  void release_pages(const TensorInfo& t) const override { file_.release_pages(t.data, t.nbytes); }

 private:
  // Adds one fp32 tensor starting at *offset (in bytes) and advances the offset past it.
  void add(const std::string& name, std::vector<int64_t> shape, uint64_t* offset);

  MappedFile file_;
  ModelConfig config_;
  TokenizerSpec tokenizer_;
  std::vector<TensorInfo> tensors_;  // in file order
  std::map<std::string, size_t> index_;
};

// The tokenizer file to use: the given one, else tokenizer.bin or a single tok*.bin beside the
// checkpoint; "" when there is none.
std::string find_tokenizer(const std::string& model_path, const std::string& given) {
  if (!given.empty()) return given;
  std::error_code ec;
  const fs::path dir = fs::absolute(model_path, ec).parent_path();
  if (fs::is_regular_file(dir / "tokenizer.bin", ec)) return (dir / "tokenizer.bin").string();
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 7 && name.rfind("tok", 0) == 0 && entry.path().extension() == ".bin" &&
        entry.is_regular_file(ec) && !fs::equivalent(entry.path(), model_path, ec)) {
      found.push_back(entry.path().string());
    }
  }
  if (found.size() > 1) {
    std::sort(found.begin(), found.end());
    std::string list;
    for (const auto& f : found) list += (list.empty() ? "" : ", ") + f;
    fail("several tokenizer files lie beside '", model_path, "' (", list,
         "); name the one to use with --tokenizer");
  }
  return found.empty() ? "" : found[0];
}

Llama2cModel::Llama2cModel(const std::string& path, const std::string& tokenizer_path)
    : file_(path) {
  require(file_.size() >= kHeaderBytes, "'", path, "' is ", file_.size(),
          " bytes, too small for a llama2.c checkpoint (its header alone is 28 bytes)");
  uint32_t magic;
  std::memcpy(&magic, file_.data(), 4);
  require(magic != 0x616b3432u, "'", path,
          "' is a llama2.c checkpoint in the newer versioned export format (magic \"ak42\"); "
          "elutq reads the legacy fp32 format: re-export it with llama2.c's export.py --version 0");
  int32_t h[7];
  std::memcpy(h, file_.data(), sizeof(h));
  const char* field[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                          "n_kv_heads", "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i) {
    const int64_t v = i == 5 ? std::abs(static_cast<int64_t>(h[i])) : h[i];
    require(v > 0 && v <= kMaxDimension, "'", path, "' is not a llama2.c checkpoint: header field ",
            field[i], " = ", h[i], " is out of range (1..", kMaxDimension, ")");
  }
  const int64_t dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kv_heads = h[4];
  const int64_t vocab = std::abs(static_cast<int64_t>(h[5])), seq_len = h[6];
  const bool shared_classifier = h[5] > 0;
  require(layers <= 4096, "'", path, "': n_layers = ", layers, " is implausible");
  require(dim % heads == 0, "'", path, "': dim (", dim, ") is not a multiple of n_heads (", heads,
          ")");
  require(kv_heads <= heads && heads % kv_heads == 0, "'", path, "': n_kv_heads (", kv_heads,
          ") does not divide n_heads (", heads, ")");
  const int64_t head_size = dim / heads;
  require(head_size % 2 == 0, "'", path, "': head size ", head_size, " must be even for RoPE");
  const int64_t kv_dim = kv_heads * head_size;

  config_.arch = "llama";
  config_.n_layers = static_cast<int>(layers);
  config_.dim = static_cast<int>(dim);
  config_.hidden_dim = static_cast<int>(hidden);
  config_.n_heads = static_cast<int>(heads);
  config_.n_kv_heads = static_cast<int>(kv_heads);
  config_.head_dim = static_cast<int>(head_size);
  config_.vocab_size = static_cast<int>(vocab);
  config_.max_seq_len = static_cast<int>(seq_len);
  config_.norm_eps = 1e-5f;
  config_.rope_theta = 10000.0f;
  config_.rope_style = RopeStyle::Interleaved;
  config_.tied_embeddings = shared_classifier;
  validate_config(config_);

  // Size the file must have, in floats; every term is < 2^20 * 2^20 * 4096, far from overflow.
  const uint64_t per_layer = 2 * dim + dim * dim * 2 + dim * kv_dim * 2 + 3 * dim * hidden;
  const uint64_t floats = vocab * dim + layers * per_layer + dim + seq_len * head_size +
                          (shared_classifier ? 0 : vocab * dim);
  const uint64_t expected = kHeaderBytes + floats * sizeof(float);
  require(file_.size() == expected, "'", path, "' has ", file_.size(),
          " bytes but a llama2.c checkpoint with this header (dim ", dim, ", hidden_dim ", hidden,
          ", n_layers ", layers, ", n_heads ", heads, ", n_kv_heads ", kv_heads, ", vocab ", h[5],
          ", seq_len ", seq_len, ") has expected ", expected,
          " bytes; the file is truncated, corrupt or not a llama2.c v0 checkpoint");

  uint64_t off = kHeaderBytes;
  auto per_layer_tensors = [&](const std::string& suffix, std::vector<int64_t> shape) {
    for (int64_t l = 0; l < layers; ++l)
      add(block_tensor_name(l, suffix), shape, &off);
  };
  add("token_embd.weight", {vocab, dim}, &off);
  per_layer_tensors("attn_norm.weight", {dim});
  per_layer_tensors("attn_q.weight", {dim, dim});
  per_layer_tensors("attn_k.weight", {kv_dim, dim});
  per_layer_tensors("attn_v.weight", {kv_dim, dim});
  per_layer_tensors("attn_output.weight", {dim, dim});
  per_layer_tensors("ffn_norm.weight", {dim});
  per_layer_tensors("ffn_gate.weight", {hidden, dim});  // w1
  per_layer_tensors("ffn_down.weight", {dim, hidden});  // w2
  per_layer_tensors("ffn_up.weight", {hidden, dim});    // w3
  add("output_norm.weight", {dim}, &off);
  off += static_cast<uint64_t>(seq_len * head_size) * sizeof(float);  // freq_cis real + imag
  if (!shared_classifier) add("output.weight", {vocab, dim}, &off);

  const std::string tok = find_tokenizer(path, tokenizer_path);
  if (!tok.empty()) tokenizer_ = load_llama2c_tokenizer(tok, static_cast<int>(vocab));
}

void Llama2cModel::add(const std::string& name, std::vector<int64_t> shape, uint64_t* offset) {
  TensorInfo t;
  t.name = name;
  t.shape = std::move(shape);
  t.dtype = DType::F32;
  t.nbytes = static_cast<uint64_t>(t.numel()) * sizeof(float);
  file_.check_range(*offset, t.nbytes, "tensor " + name);
  t.data = file_.data() + *offset;
  *offset += t.nbytes;
  index_[name] = tensors_.size();
  tensors_.push_back(std::move(t));
}

}  // namespace

std::unique_ptr<ModelSource> open_llama2c(const std::string& path,
                                          const std::string& tokenizer_path) {
  return std::make_unique<Llama2cModel>(path, tokenizer_path);
}

}  // namespace elutq
