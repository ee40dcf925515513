// Reader for llama2.c's tokenizer.bin (see llama2c_tokenizer.h for the layout).
#include "format/llama2c_tokenizer.h"

#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"

namespace elutq {
namespace {

// "<0x0A>"-style pieces stand for one raw byte (SentencePiece byte fallback).
bool is_byte_piece(const std::string& s) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return s.size() == 6 && s.compare(0, 3, "<0x") == 0 && hex(s[3]) && hex(s[4]) && s[5] == '>';
}

// Undoes the export's rewriting of SentencePiece pieces: ' ' back to "▁" (U+2581).
std::string restore_spaces(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ' ') {
      out += "\xE2\x96\x81";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

TokenizerSpec load_llama2c_tokenizer(const std::string& path, int vocab_size) {
  MappedFile f(path);
  const uint8_t* p = f.data();
  const uint64_t size = f.size();
  require(vocab_size >= 3, "a llama2.c vocabulary needs at least 3 tokens (unk, bos, eos), got ",
          vocab_size);
  auto read_i32 = [&](uint64_t off, const char* what, int id) {
    if (off + 4 > size) {
      fail("tokenizer '", path, "' ends inside ", what, " of token ", id, " (file is ", size,
           " bytes; the model has ", vocab_size,
           " tokens): truncated, or not the tokenizer.bin of this model");
    }
    int32_t v;
    std::memcpy(&v, p + off, 4);
    return v;
  };
  const int32_t max_len = read_i32(0, "the header", 0);
  require(max_len > 0 && max_len <= 4096, "tokenizer '", path,
          "' is not a llama2.c tokenizer.bin: ", "max_token_length is ", max_len,
          " (expected 1..4096)");

  TokenizerSpec spec;
  spec.kind = TokenizerKind::SentencePieceBPE;
  spec.tokens.reserve(vocab_size);
  spec.scores.reserve(vocab_size);
  spec.types.reserve(vocab_size);
  uint64_t off = 4;
  for (int id = 0; id < vocab_size; ++id) {
    float score;
    const int32_t bits = read_i32(off, "the score", id);
    std::memcpy(&score, &bits, 4);
    const int32_t len = read_i32(off + 4, "the length", id);
    off += 8;
    require(len >= 0 && len <= max_len, "tokenizer '", path, "': token ", id, " has length ", len,
            ", outside 0..", max_len, " (max_token_length); the file is corrupt");
    require(off + static_cast<uint64_t>(len) <= size, "tokenizer '", path, "' ends inside token ",
            id, " of ", vocab_size, ": truncated, or not the tokenizer.bin of this model");
    std::string piece(reinterpret_cast<const char*>(p + off), static_cast<size_t>(len));
    off += len;
    TokenType type = TokenType::Normal;
    if (id == 0) {
      type = TokenType::Unknown;
    } else if (id == 1 || id == 2) {
      type = TokenType::Control;
      piece = id == 1 ? "<s>" : "</s>";
    } else if (is_byte_piece(piece)) {
      type = TokenType::Byte;
    } else {
      piece = restore_spaces(piece);
    }
    spec.tokens.push_back(std::move(piece));
    spec.scores.push_back(score);
    spec.types.push_back(type);
  }
  require(off == size, "tokenizer '", path, "' holds more than the model's ", vocab_size,
          " tokens (", size - off, " bytes left over); it belongs to another model");
  spec.unk_id = 0;
  spec.bos_id = 1;
  spec.eos_id = 2;
  spec.stop_ids = {2};
  spec.add_bos = true;
  spec.add_eos = false;
  spec.add_space_prefix = true;
  return spec;
}

}  // namespace elutq
