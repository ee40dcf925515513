// A Hugging Face config.json -> ModelConfig (read_hf_config, which validates the result).
#include "core/error.h"
#include "format/hf_model_config.h"
#include "fuzz_util.h"

using namespace elutq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)read_hf_config(
        fuzz::Scratch::get().write("config.json", {reinterpret_cast<const char*>(data), size}));
  } catch (const Error& e) {
    fuzz::expected(e);
  }
  return 0;
}
