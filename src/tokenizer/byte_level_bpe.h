// Byte-level BPE (GPT-2 style: LLaMA-3, Qwen2/3, SmolLM2): the text is cut into pre-tokens by
// regex, each pre-token's bytes become printable characters (GPT-2's bytes->unicode map), and
// ranked merges join adjacent symbols, lowest rank first.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tensor/tokenizer_spec.h"
#include "tokenizer/piece_map.h"
#include "tokenizer/pre_tokenizer.h"

namespace elutq {

class ByteLevelBpe {
 public:
  explicit ByteLevelBpe(const TokenizerSpec& spec);

  // Appends the ids of one fragment of valid UTF-8 text that holds no special tokens.
  void encode(std::string_view text, std::vector<int>& out) const;

  // The raw bytes a stored byte-level piece stands for (characters outside the byte map are
  // kept as their UTF-8).
  static std::string piece_to_bytes(std::string_view piece);

 private:
  void encode_word(std::string_view word, std::vector<int>& out) const;

  PreTokenizer pre_;
  PieceMap vocab_;                       // byte-level piece -> id
  std::array<int, 256> byte_id_{};       // id of each single byte's piece, -1 if absent
  std::array<std::string, 256> byte_char_;  // the piece (one character) each byte maps to
  // (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<int, int>> merges_;
  bool ignore_merges_ = false;
  int unk_id_ = -1;
  // Pre-token -> ids; words repeat a lot in text, so this saves most of the merging.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int>, PieceHash, std::equal_to<>> cache_;
};

}  // namespace elutq
