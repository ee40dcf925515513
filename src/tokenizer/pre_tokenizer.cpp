// PCRE2-backed pre-tokenizer and the table of named pre-tokenizer regexes.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pre_tokenizer.h"

#include <pcre2.h>

#include "core/error.h"

namespace elutq {
namespace {

// GPT-2's pattern, which HF's ByteLevel pre-tokenizer applies when use_regex is true.
constexpr const char* kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// LLaMA-3's Split pattern (tokenizer.json of Meta-Llama-3): numbers in runs of up to 3 digits.
constexpr const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2's Split pattern: like LLaMA-3's but every digit on its own.
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// HF Digits(individual_digits=true): each digit a piece of its own (SmolLM/SmolLM2 run it before
// ByteLevel's GPT-2 pattern).
constexpr const char* kEachDigit = R"(\p{N})";

}  // namespace

struct PreTokenizer::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

PreTokenizer::PreTokenizer(const std::vector<std::string>& regexes) {
  for (const std::string& rx : regexes) {
    int err = 0;
    PCRE2_SIZE err_off = 0;
    auto c = std::make_unique<Compiled>();
    c->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rx.data()), rx.size(),
                            PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
    if (c->code == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      fail("pre-tokenizer regex '", rx, "' does not compile (PCRE2, at offset ", err_off,
           "): ", reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(c->code, PCRE2_JIT_COMPLETE);  // faster when available; fine if not
    regexes_.push_back(std::move(c));
  }
}

PreTokenizer::~PreTokenizer() = default;

std::vector<std::string> PreTokenizer::regexes_for(const std::string& pre) {
  if (pre.empty() || pre == "gpt2" || pre == "default") return {kGpt2};
  if (pre == "llama3" || pre == "llama-bpe") return {kLlama3};
  if (pre == "qwen2") return {kQwen2};
  if (pre == "smollm") return {kEachDigit, kGpt2};
  fail("unknown byte-level pre-tokenizer '", pre,
       "'; supported: gpt2, default, llama3 (llama-bpe), qwen2, smollm");
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  pieces.clear();
  if (text.empty()) return;
  pieces.push_back(text);
  std::vector<std::string_view> next;
  for (const auto& rx : regexes_) {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(rx->code, nullptr);
    require(md != nullptr, "out of memory for regex match data");
    next.clear();
    for (std::string_view piece : pieces) {
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t pos = 0;   // where the search resumes
      size_t done = 0;  // end of the text already emitted
      while (pos < piece.size()) {
        const int rc = pcre2_match(rx->code, subject, piece.size(), pos, PCRE2_NO_UTF_CHECK, md,
                                   nullptr);
        if (rc < 0) break;
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const size_t b = ov[0], e = ov[1];
        if (e == b) {  // empty match: step over one character
          pos = b + 1;
          while (pos < piece.size() && (static_cast<uint8_t>(piece[pos]) & 0xC0) == 0x80) ++pos;
          continue;
        }
        if (b > done) next.push_back(piece.substr(done, b - done));
        next.push_back(piece.substr(b, e - b));
        done = pos = e;
      }
      if (done < piece.size()) next.push_back(piece.substr(done));
    }
    pcre2_match_data_free(md);
    pieces.swap(next);
  }
}

}  // namespace elutq
