// A llama2.c checkpoint with its tokenizer.bin. The input is a u32 (little-endian) byte count n,
// then n bytes of checkpoint and the rest as tokenizer.bin, which lies beside the checkpoint so
// the loader finds it itself (no tokenizer.bin when n covers the whole input). The model is opened
// as `elutq` opens it, its tokenizer built and run, and row 0 of every tensor read.
#include <memory>

#include "core/error.h"
#include "format/dequant.h"
#include "format/llama2c_model.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

using namespace elutq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fuzz::Scratch& scratch = fuzz::Scratch::get();
  fuzz::Bytes in(data, size);
  const uint32_t n = in.u32();
  const std::string_view rest(reinterpret_cast<const char*>(in.data()), in.size());
  const std::string path = scratch.write("model.bin", rest.substr(0, n));
  if (n < rest.size())
    scratch.write("tokenizer.bin", rest.substr(n));
  else
    scratch.remove("tokenizer.bin");
  try {
    const std::unique_ptr<ModelSource> m = open_llama2c(path, "");
    if (m->tokenizer().kind != TokenizerKind::None) {
      const Tokenizer tok(m->tokenizer());
      (void)tok.decode(tok.encode("Once upon a time, \xC3\xA9 <s>", true, true), true);
    }
    std::vector<float> row;
    for (const std::string& name : m->tensor_names()) {
      const TensorInfo* t = m->find(name);
      row.resize(size_t(t->cols()));
      tensor_rows_to_f32(*t, 0, 1, row.data());
    }
  } catch (const Error& e) {
    fuzz::expected(e);
  }
  return 0;
}
