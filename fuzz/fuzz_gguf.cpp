// GGUF header, metadata and tensor directory: the input is a whole GGUF file. It is read as a
// GgufFile (every metadata value through the accessor of its type), then opened as a model the
// way `elutq` opens one (open_gguf: config, tokenizer, tensors; our own quantized files too), its
// tokenizer built and run, and the first rows of each small tensor dequantized.
#include <algorithm>
#include <memory>

#include "core/error.h"
#include "format/dequant.h"
#include "format/gguf_file.h"
#include "format/gguf_model.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

using namespace elutq;

namespace {

void read_every_value(const GgufFile& g) {
  for (const std::string& key : g.keys()) {
    const GgufValue* v = g.find(key);
    try {
      switch (v->type) {
        case GgufType::STRING:
          (void)g.get_string(key);
          break;
        case GgufType::F32:
        case GgufType::F64:
          (void)g.get_f32(key);
          break;
        case GgufType::BOOL:
          (void)g.get_bool(key);
          break;
        case GgufType::ARRAY:
          (void)g.array_length(key);
          if (v->elem_type == GgufType::STRING)
            (void)g.get_string_array(key);
          else if (v->elem_type == GgufType::F32 || v->elem_type == GgufType::F64)
            (void)g.get_f32_array(key);
          else if (gguf_is_int(v->elem_type))
            (void)g.get_int_array(key);
          break;
        default:
          (void)g.get_i64(key);
          (void)g.get_u32_or(key, 0);
          break;
      }
    } catch (const Error& e) {
      fuzz::expected(e);  // a value that does not fit its accessor: expected
    }
  }
}

void run_model(const std::string& path) {
  const std::unique_ptr<ModelSource> m = open_gguf(path);
  (void)m->config();
  if (m->tokenizer().kind != TokenizerKind::None) {
    const Tokenizer tok(m->tokenizer());
    const std::vector<int> ids =
        tok.encode("Hello, world! 123 <|im_start|>user\n\xC3\xA9", true, true);
    (void)tok.decode(ids, true);
  }
  for (const std::string& name : m->tensor_names()) {
    const TensorInfo* t = m->find(name);
    if (!t || t->cols() > (1 << 16)) continue;
    const int64_t rows = std::min<int64_t>(t->rows(), 2);
    std::vector<float> out(size_t(rows * t->cols()));
    try {
      tensor_rows_to_f32(*t, 0, rows, out.data());
    } catch (const Error& e) {
      fuzz::expected(e);  // e.g. a type that has no fp32 conversion
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path =
      fuzz::Scratch::get().write("model.gguf", {reinterpret_cast<const char*>(data), size});
  try {
    const GgufFile g(path);
    read_every_value(g);
    for (const TensorInfo& t : g.tensors()) (void)g.find_tensor(t.name);
  } catch (const Error& e) {
    fuzz::expected(e);
    return 0;
  }
  try {
    run_model(path);
  } catch (const Error& e) {
    fuzz::expected(e);
  }
  return 0;
}
