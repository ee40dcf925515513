// The text / JSONL reader behind perplexity, calibration and tokenize -f (read_documents). The
// first byte picks how the rest is read: 0 a .txt file, 1 a .txt file with jsonl = true, 2 a
// .jsonl file (read as JSONL by its name).
#include "core/error.h"
#include "eval/perplexity.h"
#include "fuzz_util.h"

using namespace elutq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 3;
  const std::string path = fuzz::Scratch::get().write(
      mode == 2 ? "docs.jsonl" : "docs.txt", {reinterpret_cast<const char*>(data + 1), size - 1});
  try {
    (void)read_documents(path, mode == 1);
  } catch (const Error& e) {
    fuzz::expected(e);
  }
  return 0;
}
