// Everything needed to build a tokenizer, as read from a model file: vocabulary, scores or merges,
// special tokens and the BOS/EOS policy. Loaders fill it; tokenizer/ turns it into a Tokenizer.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace elutq {

enum class TokenizerKind {
  None,              // the file carries no tokenizer
  SentencePieceBPE,  // LLaMA-2, TinyLlama, llama2.c: merges by score, byte fallback, "▁" for space
  ByteLevelBPE,      // GPT-2 style: LLaMA-3, Qwen2/3, SmolLM2: ranked merges over bytes-as-chars
};

// Token types, with the values SentencePiece and GGUF use.
enum class TokenType : int32_t {
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

struct TokenizerSpec {
  TokenizerKind kind = TokenizerKind::None;
  std::vector<std::string> tokens;  // id -> piece (UTF-8 as stored by the format)
  std::vector<float> scores;        // SentencePieceBPE: merge priority; may be empty otherwise
  std::vector<TokenType> types;     // one per token; Normal where the format says nothing
  std::vector<std::pair<std::string, std::string>> merges;  // ByteLevelBPE, highest priority first
  // Pre-tokenizer (ByteLevelBPE): "llama3", "qwen2", "smollm", "gpt2", ... as named in GGUF's
  // tokenizer.ggml.pre or derived from tokenizer.json.
  std::string pre;
  // ByteLevelBPE: the exact pre-tokenizer regexes (PCRE2 syntax) when the file spells them out
  // (tokenizer.json Split / ByteLevel / Digits); applied in order, each splitting the pieces the
  // previous one produced. Empty: the regexes are chosen by `pre`.
  std::vector<std::string> pre_regexes;
  // ByteLevelBPE: a pre-token that is itself in the vocabulary is one token, merges or not
  // (tokenizer.json "ignore_merges"; LLaMA-3).
  bool ignore_merges = false;
  int bos_id = -1;
  int eos_id = -1;
  int unk_id = -1;
  int pad_id = -1;
  std::vector<int> stop_ids;  // ids that end generation (eos, eot, im_end, ...)
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = true;  // SentencePieceBPE: prepend "▁" to the text
  // SentencePieceBPE: drop leading/trailing spaces and collapse runs of spaces (SentencePiece's
  // normalizer_spec.remove_extra_whitespaces; false for LLaMA-2).
  bool remove_extra_whitespaces = false;
  std::string chat_template;     // Jinja template string, as found in the model's files
};

}  // namespace elutq
