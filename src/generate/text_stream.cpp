// Streaming detokenization with UTF-8 reassembly.
#include "generate/text_stream.h"

#include <cstdint>

namespace elutq {
namespace {

constexpr const char* kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// How many bytes the UTF-8 character starting with lead byte c needs (0: c cannot start one).
int needed_len(uint8_t c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c >= 0xE0 && c <= 0xEF) return 3;
  if (c >= 0xF0 && c <= 0xF4) return 4;
  return 0;
}

// Whether the second byte b1 is allowed after lead c (excludes overlongs, surrogates, > U+10FFFF).
bool second_ok(uint8_t c, uint8_t b1) {
  if ((b1 & 0xC0) != 0x80) return false;
  if (c == 0xE0) return b1 >= 0xA0;
  if (c == 0xED) return b1 < 0xA0;
  if (c == 0xF0) return b1 >= 0x90;
  if (c == 0xF4) return b1 < 0x90;
  return true;
}

}  // namespace

TextStream::TextStream(const Tokenizer& tok, bool at_text_start)
    : tok_(tok),
      strip_space_(at_text_start && tok.spec().kind == TokenizerKind::SentencePieceBPE &&
                   tok.spec().add_space_prefix) {}

std::string TextStream::push(int token) {
  std::string bytes = tok_.token_bytes(token);
  if (bytes.empty()) return {};
  if (strip_space_) {
    if (bytes[0] == ' ') bytes.erase(0, 1);
    strip_space_ = false;
  }
  return push_bytes(bytes);
}

std::string TextStream::push_bytes(const std::string& bytes) {
  pending_ += bytes;
  std::string out;
  size_t i = 0;
  const size_t n = pending_.size();
  while (i < n) {
    const auto c = static_cast<uint8_t>(pending_[i]);
    const int need = needed_len(c);
    if (need == 0) {  // stray continuation byte or impossible lead byte
      out += kReplacement;
      ++i;
      continue;
    }
    // Check the bytes present; stop (hold back) if the character is cut short.
    size_t have = 1;
    bool bad = false;
    while (have < size_t(need) && i + have < n) {
      const auto b = static_cast<uint8_t>(pending_[i + have]);
      const bool ok = have == 1 ? second_ok(c, b) : (b & 0xC0) == 0x80;
      if (!ok) {
        bad = true;
        break;
      }
      ++have;
    }
    if (bad) {  // a malformed prefix: replace it and resync at the offending byte
      out += kReplacement;
      i += have;
      continue;
    }
    if (have < size_t(need)) break;  // incomplete: wait for the next token
    out.append(pending_, i, size_t(need));
    i += size_t(need);
  }
  pending_.erase(0, i);
  return out;
}

std::string TextStream::finish() {
  std::string out = pending_.empty() ? "" : kReplacement;
  pending_.clear();
  return out;
}

}  // namespace elutq
