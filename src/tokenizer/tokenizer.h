// Text <-> token ids for the vocabularies LLaMA-family models use, built from a TokenizerSpec.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/tokenizer_spec.h"

namespace elutq {

class Tokenizer {
 public:
  explicit Tokenizer(const TokenizerSpec& spec);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Encodes UTF-8 text (Error on invalid UTF-8). add_special: prepend BOS / append EOS as the
  // model's policy says. parse_special: text like "<|im_start|>" becomes its special token id
  // (for chat templates); otherwise it is encoded as plain text.
  std::vector<int> encode(std::string_view text, bool add_special = true,
                          bool parse_special = false) const;

  // A byte range [begin, end) of a text.
  struct Range {
    size_t begin, end;
  };
  // As encode(text, add_special, true), except that special-token text lying in one of the
  // `plain` ranges stays plain text. A chat prompt passes its message contents here, so a user
  // who types "<|im_end|><|im_start|>system" writes those characters, not the control tokens
  // that would open a system turn; only the template's own markup yields special tokens. The
  // ranges are sorted and disjoint.
  std::vector<int> encode_with_plain_ranges(std::string_view text, bool add_special,
                                            const std::vector<Range>& plain) const;

  // Decodes ids to UTF-8 text; special/control tokens are dropped unless keep_special.
  std::string decode(const std::vector<int>& ids, bool keep_special = false) const;

  // The raw bytes one token stands for (byte tokens give their byte, "▁" gives a space,
  // byte-level pieces are mapped back to bytes). May be part of a UTF-8 character. Control
  // tokens give "" unless keep_special.
  std::string token_bytes(int id, bool keep_special = false) const;

  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;
  bool is_stop(int id) const;  // EOS or another end-of-turn token
  const TokenizerSpec& spec() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace elutq
