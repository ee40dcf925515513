// Turns generated token ids into UTF-8 text as they arrive. A token may stand for part of a
// character (byte-fallback tokens, byte-level pieces split mid-character), so bytes are held back
// until they complete a character; bytes that can never become valid UTF-8 come out as U+FFFD.
// What push() returns is always valid UTF-8.
#pragma once

#include <string>

#include "tokenizer/tokenizer.h"

namespace elutq {

class TextStream {
 public:
  // at_text_start: the first token pushed begins the text (no prompt before it), so a
  // SentencePiece vocabulary's dummy-prefix space is dropped from it, as decode() does.
  TextStream(const Tokenizer& tok, bool at_text_start);

  // The text that token completes (may be empty while a character is incomplete). Control tokens
  // give nothing.
  std::string push(int token);
  // Bytes still held back, as U+FFFD per bad sequence; call at the end of generation.
  std::string finish();

  // For tests: feeds raw bytes as if one token stood for them.
  std::string push_bytes(const std::string& bytes);

 private:
  const Tokenizer& tok_;
  bool strip_space_;  // drop one leading ' ' from the first non-empty token
  std::string pending_;  // bytes of an incomplete character
};

}  // namespace elutq
