// `elutq synth-model`: writes a LLaMA-architecture GGUF with random F16 weights of chosen size
// (for tests and measurements of streaming quantization; see format/synthetic_model.h).
#include <cstdio>

#include "cli.h"
#include "core/memory_usage.h"
#include "format/synthetic_model.h"

namespace elutq::cli {
namespace {

int run_synth_model(int argc, char** argv) {
  CLI::App app(
      "Write a synthetic LLaMA-architecture GGUF model with random F16 weights (deterministic in "
      "the seed) and a minimal byte-fallback tokenizer. Meant for testing and measuring "
      "quantization of models bigger than memory; its outputs are meaningless.",
      argv[0]);
  SyntheticModelOptions o;
  std::string out;
  app.add_option("--dim", o.dim, "hidden size (multiple of 32)")->capture_default_str();
  app.add_option("--layers", o.n_layers, "number of decoder blocks")->capture_default_str();
  app.add_option("--ffn", o.hidden_dim, "feed-forward size (multiple of 32)")->capture_default_str();
  app.add_option("--vocab", o.vocab_size, "vocabulary size (>= 260)")->capture_default_str();
  app.add_option("--heads", o.n_heads, "attention heads (0: dim / 64)")->capture_default_str();
  app.add_option("--kv-heads", o.n_kv_heads, "key/value heads (0: same as --heads)")
      ->capture_default_str();
  app.add_option("--ctx", o.context, "context length stored in the metadata")->capture_default_str();
  app.add_flag("--tied", o.tied_embeddings, "tie the output head to the embeddings");
  app.add_option("--seed", o.seed, "random seed of the weights")->capture_default_str();
  app.add_option("-o,--output", out, "GGUF file to write")->required();
  int code = 0;
  if (!parse(app, argc, argv, &code)) return code;
  const uint64_t bytes = synthetic_model_bytes(o);
  std::fprintf(stderr, "writing %s of tensor data to %s\n", format_byte_size(bytes).c_str(),
               out.c_str());
  write_synthetic_model(out, o);
  std::printf("%s: synthetic llama, dim %d, %d layers, ffn %d, vocab %d, %s of weights\n",
              out.c_str(), o.dim, o.n_layers, o.hidden_dim, o.vocab_size,
              format_byte_size(bytes).c_str());
  return 0;
}

const VerbRegistrar reg({"synth-model", "(testing) write a random-weight LLaMA GGUF of any size",
                         run_synth_model});

}  // namespace
}  // namespace elutq::cli
