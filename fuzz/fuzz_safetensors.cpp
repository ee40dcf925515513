// Safetensors header: the input is a whole .safetensors file, opened and validated as the HF
// loader does, every tensor (up to 64k elements) converted to fp32. The same bytes are also read
// as a model.safetensors.index.json (the sharded checkpoint's index).
#include "core/error.h"
#include "format/dequant.h"
#include "format/safetensors_file.h"
#include "fuzz_util.h"

using namespace elutq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fuzz::Scratch& scratch = fuzz::Scratch::get();
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    const SafetensorsFile f(scratch.write("model.safetensors", bytes));
    std::vector<float> out;
    for (const TensorInfo& t : f.tensors()) {
      if (t.numel() > (1 << 16)) continue;
      out.resize(size_t(t.numel()));
      tensor_to_f32(t, out.data());
    }
  } catch (const Error& e) {
    fuzz::expected(e);
  }
  if (size > 0 && data[0] == '{') {
    try {
      (void)read_safetensors_index(scratch.write("model.safetensors.index.json", bytes));
    } catch (const Error& e) {
      fuzz::expected(e);
    }
  }
  return 0;
}
