// `elutq inspect`: what a model file holds: format, architecture, hyper-parameters, tokenizer
// summary and a table of its tensors (name, shape, dtype, bytes) with totals.
#include <cstdio>
#include <map>

#include "cli.h"
#include "core/error.h"
#include "format/gguf_file.h"
#include "runtime/open_model.h"
#include "tensor/model_source.h"
#include "tensor/quantized_matrix_codec.h"

namespace elutq::cli {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

const char* tokenizer_kind(TokenizerKind k) {
  switch (k) {
    case TokenizerKind::SentencePieceBPE: return "SentencePiece BPE";
    case TokenizerKind::ByteLevelBPE: return "byte-level BPE";
    default: return "none";
  }
}

std::string token_text(const TokenizerSpec& t, int id) {
  if (id < 0 || id >= int(t.tokens.size())) return "-";
  return std::to_string(id) + " '" + t.tokens[size_t(id)] + "'";
}

int run_inspect(int argc, char** argv) {
  CLI::App app("Show a model's format, architecture, hyper-parameters, tokenizer and tensors.",
               argv[0]);
  std::string model, tok_path;
  bool no_tensors = false;
  app.add_option("-m,--model", model, "model: GGUF file, Hugging Face folder or llama2.c .bin")
      ->required();
  app.add_option("--tokenizer", tok_path, "llama2.c tokenizer.bin (default: found beside the model)");
  app.add_flag("--no-tensors", no_tensors, "leave out the table of tensors");
  int code = 0;
  if (!parse(app, argc, argv, &code)) return code;

  auto src = open_model(model, tok_path);
  const ModelConfig& c = src->config();
  std::printf("model:          %s\n", model.c_str());
  std::printf("format:         %s\n", src->format_name().c_str());
  std::printf("architecture:   %s\n", c.arch.c_str());
  std::printf("layers:         %d\n", c.n_layers);
  std::printf("hidden size:    %d\n", c.dim);
  std::printf("ffn size:       %d\n", c.hidden_dim);
  std::printf("heads:          %d (kv heads %d, head dim %d)\n", c.n_heads, c.n_kv_heads, c.head_dim);
  std::printf("vocab size:     %d\n", c.vocab_size);
  std::printf("context:        %d\n", c.max_seq_len);
  std::printf("norm eps:       %g\n", double(c.norm_eps));
  std::printf("rope:           theta %g, %s pairing, scaling %s", double(c.rope_theta),
              c.rope_style == RopeStyle::HalfSplit ? "half-split" : "interleaved",
              c.rope_scaling.type.c_str());
  if (c.rope_scaling.type == "linear") std::printf(" (factor %g)", double(c.rope_scaling.factor));
  if (c.rope_scaling.type == "llama3")
    std::printf(" (factor %g, low %g, high %g, original context %d)", double(c.rope_scaling.factor),
                double(c.rope_scaling.low_freq_factor), double(c.rope_scaling.high_freq_factor),
                c.rope_scaling.original_max_position);
  std::printf("\n");
  std::printf("qkv bias:       %s\n", c.attn_bias ? "yes" : "no");
  std::printf("qk norm:        %s\n", c.qk_norm ? "yes" : "no");
  std::printf("tied output:    %s\n", c.tied_embeddings ? "yes" : "no");
  std::printf("sliding window: %s\n", c.sliding_window > 0 ? std::to_string(c.sliding_window).c_str() : "none");

  if (src->format_name() == "elutq") {  // what the quantizer recorded
    const GgufFile g(model);
    auto key = [&g](const char* k) { return g.get_string_or(k, "-"); };
    std::printf("quantization:   method %s, format %s, fit %s; from %s (%s)\n",
                key("elutq.quantization.method").c_str(), key("elutq.quantization.format").c_str(),
                key("elutq.quantization.fit").c_str(), key("elutq.source.name").c_str(),
                key("elutq.source.format").c_str());
  }

  const TokenizerSpec& t = src->tokenizer();
  std::printf("tokenizer:      %s, %zu tokens, %zu merges%s%s\n", tokenizer_kind(t.kind),
              t.tokens.size(), t.merges.size(), t.pre.empty() ? "" : ", pre-tokenizer ",
              t.pre.c_str());
  std::printf("special:        bos %s, eos %s, unk %s; add bos %s, add eos %s; chat template %s\n",
              token_text(t, t.bos_id).c_str(), token_text(t, t.eos_id).c_str(),
              token_text(t, t.unk_id).c_str(), t.add_bos ? "yes" : "no", t.add_eos ? "yes" : "no",
              t.chat_template.empty() ? "none" : "yes");

  const std::vector<std::string> names = src->tensor_names();
  uint64_t total_bytes = 0;
  int64_t total_params = 0;
  std::map<std::string, int> by_dtype;
  // Quantized tensors (elutq files): stored bytes, weights and nominal bits of their formats.
  uint64_t q_bytes = 0;
  double q_weights = 0, q_nominal_bits = 0;
  if (!no_tensors) std::printf("\n%-36s %-20s %-14s %14s\n", "tensor", "shape", "dtype", "bytes");
  for (const std::string& n : names) {
    const TensorInfo* ti = src->find(n);
    if (!ti) continue;
    total_bytes += ti->nbytes;
    total_params += ti->numel();
    std::string type = dtype_name(ti->dtype);
    if (ti->dtype == DType::ELUTQ) {  // show the quantized format instead
      const QuantizedBlobInfo q = inspect_quantized_blob(ti->data, ti->nbytes);
      type = q.spec.name();
      q_bytes += ti->nbytes;
      q_weights += double(ti->numel());
      q_nominal_bits += q.spec.bits_per_weight(q.cols) * double(ti->numel());
    }
    by_dtype[type]++;
    if (!no_tensors)
      std::printf("%-36s %-20s %-14s %14llu\n", n.c_str(), shape_str(ti->shape).c_str(),
                  type.c_str(), static_cast<unsigned long long>(ti->nbytes));
  }
  std::printf("\ntensors: %zu, parameters: %lld (%.1f M), bytes: %llu (%.1f MiB); dtypes:",
              names.size(), static_cast<long long>(total_params), total_params / 1e6,
              static_cast<unsigned long long>(total_bytes), total_bytes / 1048576.0);
  for (const auto& [d, k] : by_dtype) std::printf(" %s x%d", d.c_str(), k);
  std::printf("\n");
  if (q_weights > 0) {
    std::printf("quantized: %.1f M weights at %.3f bits per weight (format %.3f; the rest is "
                "layout padding and headers); whole model %.3f bits per parameter\n",
                q_weights / 1e6, 8.0 * double(q_bytes) / q_weights, q_nominal_bits / q_weights,
                8.0 * double(total_bytes) / double(total_params));
  }
  return 0;
}

const VerbRegistrar reg({"inspect", "show a model's architecture, tokenizer and tensors",
                         run_inspect});

}  // namespace
}  // namespace elutq::cli
