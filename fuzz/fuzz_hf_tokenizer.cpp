// tokenizer.json (+ tokenizer_config.json) -> TokenizerSpec -> Tokenizer, then fuzzed text through
// it. The input is three parts cut at fuzz::kSep: tokenizer.json, tokenizer_config.json (absent
// when there is no second separator) and the text. The text is encoded with and without special
// tokens and decoded back; its bytes are also decoded as token ids (two bytes each, so some are
// outside the vocabulary, which must be an Error).
#include "core/error.h"
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_files.h"

using namespace elutq;

namespace {

void run_text(const Tokenizer& tok, std::string_view text) {
  try {
    (void)tok.decode(tok.encode(text, true, false));
    const std::vector<int> ids = tok.encode(text, false, true);
    (void)tok.decode(ids, true);
    for (int id : ids) (void)tok.token_bytes(id, true);
  } catch (const Error& e) {
    fuzz::expected(e);  // e.g. text that is not UTF-8
  }
  std::vector<int> ids;
  for (size_t i = 0; i + 1 < text.size(); i += 2)
    ids.push_back(int(uint8_t(text[i]) | (uint8_t(text[i + 1]) << 8)) - 2);
  try {
    (void)tok.decode(ids, (text.size() & 1) != 0);
  } catch (const Error& e) {
    fuzz::expected(e);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fuzz::Scratch& scratch = fuzz::Scratch::get();
  const std::vector<std::string_view> parts = fuzz::split_input(data, size, 3);
  scratch.write("tokenizer.json", parts[0]);
  if (parts.size() == 3)
    scratch.write("tokenizer_config.json", parts[1]);
  else
    scratch.remove("tokenizer_config.json");
  try {
    const Tokenizer tok(load_hf_tokenizer(scratch.dir()));
    (void)tok.vocab_size();
    run_text(tok, parts.size() > 1 ? parts.back() : std::string_view("Hello world"));
  } catch (const Error& e) {
    fuzz::expected(e);
  }
  return 0;
}
