// Regex pre-tokenizer for byte-level BPE: splits text into the pieces ("words") BPE runs on, with
// PCRE2 in UTF + Unicode-property mode. Several regexes apply in order, each splitting the pieces
// of the previous one; text a regex does not match stays a piece of its own (HF "Isolated").
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace elutq {

class PreTokenizer {
 public:
  // Throws Error naming the regex if PCRE2 cannot compile it.
  explicit PreTokenizer(const std::vector<std::string>& regexes);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // The regexes a pre-tokenizer name stands for (GGUF tokenizer.ggml.pre): "gpt2"/"default"
  // (also ""), "llama3"/"llama-bpe", "qwen2", "smollm". Throws Error listing these otherwise.
  static std::vector<std::string> regexes_for(const std::string& pre_name);

  // Replaces pieces with the pieces of text (views into text, which must be valid UTF-8).
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  struct Compiled;
  std::vector<std::unique_ptr<Compiled>> regexes_;
};

}  // namespace elutq
