// A SentencePiece tokenizer.model (protobuf) -> TokenizerSpec -> Tokenizer, then text through it.
// The input is the model, optionally followed by fuzz::kSep and a text to encode and decode.
#include "core/error.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_files.h"

using namespace elutq;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> parts = fuzz::split_input(data, size, 2);
  try {
    const Tokenizer tok(
        load_sentencepiece_model(fuzz::Scratch::get().write("tokenizer.model", parts[0])));
    const std::string_view text = parts.size() > 1 ? parts[1] : std::string_view("Hello  world\n");
    try {
      const std::vector<int> ids = tok.encode(text, true, true);
      (void)tok.decode(ids);
      (void)tok.decode(ids, true);
      (void)tok.decode(tok.encode(text, false, false));
    } catch (const Error& e) {
      fuzz::expected(e);  // e.g. text that is not UTF-8
    }
  } catch (const Error& e) {
    fuzz::expected(e);
  }
  return 0;
}
