// SentencePiece-style BPE (LLaMA-2, TinyLlama, llama2.c): spaces become "▁", the text is split
// into characters, and the adjacent pair whose concatenation is the highest-scoring piece is
// merged until no pair is a piece; leftovers fall back to <0xNN> byte tokens (or unk).
#pragma once

#include <array>
#include <string_view>
#include <vector>

#include "tensor/tokenizer_spec.h"
#include "tokenizer/piece_map.h"

namespace elutq {

class SpmBpe {
 public:
  explicit SpmBpe(const TokenizerSpec& spec);

  // Appends the ids of one fragment of valid UTF-8 text that holds no special tokens.
  // with_prefix: prepend "▁" (SentencePiece's add_dummy_prefix; only at the start of the text).
  void encode(std::string_view text, bool with_prefix, std::vector<int>& out) const;

 private:
  PieceMap piece_id_;         // mergeable pieces (normal and user-defined) -> id
  std::vector<float> score_;  // (vocab) merge priority, higher first
  std::array<int, 256> byte_id_{};
  bool byte_fallback_ = false;  // the vocabulary has <0xNN> byte tokens
  int unk_id_ = -1;
  bool remove_extra_whitespaces_ = false;
};

}  // namespace elutq
