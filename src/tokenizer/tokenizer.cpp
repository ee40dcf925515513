// Tokenizer: splits out special tokens, hands the plain-text fragments to the vocabulary's BPE
// variant, applies the BOS/EOS policy, and decodes ids back to bytes.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>

#include "core/error.h"
#include "tokenizer/byte_level_bpe.h"
#include "tokenizer/spm_bpe.h"
#include "tokenizer/utf8.h"

namespace elutq {

struct Tokenizer::Impl {
  TokenizerSpec spec;
  std::unique_ptr<SpmBpe> spm;
  std::unique_ptr<ByteLevelBpe> byte_level;
  std::vector<std::string> text_of;  // (vocab) bytes each token decodes to, specials excluded
  // Tokens matched in the text as a whole: user-defined always, control with parse_special.
  // Indexed by first byte, longest first so the longest match wins.
  struct Special {
    std::string text;
    int id;
    bool control;
  };
  std::array<std::vector<Special>, 256> specials;
  bool any_user_defined = false;
};

namespace {

bool is_special(TokenType t) { return t == TokenType::Control || t == TokenType::Unknown; }

}  // namespace

Tokenizer::Tokenizer(const TokenizerSpec& spec) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.spec = spec;
  const size_t n = spec.tokens.size();
  require(spec.kind != TokenizerKind::None,
          "this model carries no tokenizer: for a llama2.c checkpoint give its tokenizer.bin with "
          "--tokenizer FILE (or put it beside the checkpoint); a Hugging Face folder needs its "
          "tokenizer.json");
  require(n > 0, "the tokenizer has an empty vocabulary");
  require(spec.types.empty() || spec.types.size() == n, "the tokenizer has ", n,
          " tokens but ", spec.types.size(), " token types");
  require(spec.scores.empty() || spec.scores.size() == n, "the tokenizer has ", n,
          " tokens but ", spec.scores.size(), " scores");
  for (int id : {spec.bos_id, spec.eos_id, spec.unk_id, spec.pad_id}) {
    require(id >= -1 && id < static_cast<int>(n), "special token id ", id,
            " is outside the vocabulary of ", n, " tokens");
  }
  m.spec.types.resize(n, TokenType::Normal);
  if (spec.kind == TokenizerKind::SentencePieceBPE) {
    m.spm = std::make_unique<SpmBpe>(m.spec);
  } else {
    m.byte_level = std::make_unique<ByteLevelBpe>(m.spec);
  }

  m.text_of.resize(n);
  for (size_t id = 0; id < n; ++id) {
    const std::string& piece = spec.tokens[id];
    const TokenType type = m.spec.types[id];
    std::string& t = m.text_of[id];
    if (is_special(type)) continue;
    if (type == TokenType::UserDefined || type == TokenType::Unused) {
      t = piece;  // stored as the text itself
    } else if (m.spm) {
      if (type == TokenType::Byte) {
        unsigned v = 0;
        if (std::sscanf(piece.c_str(), "<0x%02X>", &v) == 1) t = std::string(1, static_cast<char>(v));
        continue;
      }
      for (size_t i = 0; i < piece.size();) {
        if (piece.compare(i, 3, "\xE2\x96\x81") == 0) {
          t += ' ';
          i += 3;
        } else {
          t += piece[i++];
        }
      }
    } else {
      t = ByteLevelBpe::piece_to_bytes(piece);
    }
  }

  for (size_t id = 0; id < n; ++id) {
    const TokenType type = m.spec.types[id];
    const std::string& piece = spec.tokens[id];
    if ((type != TokenType::Control && type != TokenType::UserDefined) || piece.empty()) continue;
    m.specials[static_cast<uint8_t>(piece[0])].push_back(
        {piece, static_cast<int>(id), type == TokenType::Control});
    m.any_user_defined |= type == TokenType::UserDefined;
  }
  for (auto& v : m.specials) {
    std::stable_sort(v.begin(), v.end(),
                     [](const auto& a, const auto& b) { return a.text.size() > b.text.size(); });
  }
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int> Tokenizer::encode(std::string_view text, bool add_special,
                                   bool parse_special) const {
  if (!parse_special) return encode_with_plain_ranges(text, add_special, {{0, text.size()}});
  return encode_with_plain_ranges(text, add_special, {});
}

std::vector<int> Tokenizer::encode_with_plain_ranges(std::string_view text, bool add_special,
                                                     const std::vector<Range>& plain) const {
  const Impl& m = *impl_;
  for (size_t r = 0; r < plain.size(); ++r)
    require(plain[r].begin <= plain[r].end && (r == 0 || plain[r - 1].end <= plain[r].begin),
            "plain-text ranges must be sorted and disjoint");
  const size_t bad = utf8::find_invalid(text);
  if (bad != std::string_view::npos) {
    const auto byte = static_cast<uint8_t>(text[bad]);
    fail("the text is not valid UTF-8 (malformed byte 0x", "0123456789ABCDEF"[byte >> 4],
         "0123456789ABCDEF"[byte & 15], " at byte offset ", bad, "); convert it to UTF-8 first");
  }
  std::vector<int> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && m.spec.add_bos && m.spec.bos_id >= 0) out.push_back(m.spec.bos_id);

  auto encode_fragment = [&](size_t begin, size_t end) {
    if (end <= begin) return;
    const std::string_view frag = text.substr(begin, end - begin);
    if (m.spm) {
      m.spm->encode(frag, m.spec.add_space_prefix && begin == 0, out);
    } else {
      m.byte_level->encode(frag, out);
    }
  };

  // Control tokens match only outside the plain ranges, and only wholly outside: a match may
  // not reach into plain text either.
  const bool all_plain = plain.size() == 1 && plain[0].begin == 0 && plain[0].end >= text.size();
  size_t next_plain = 0;  // the first plain range that ends after i
  auto control_fits = [&](size_t i, size_t len) {
    while (next_plain < plain.size() && plain[next_plain].end <= i) ++next_plain;
    return next_plain == plain.size() || i + len <= plain[next_plain].begin;
  };
  size_t start = 0;
  if (!all_plain || m.any_user_defined) {
    for (size_t i = 0; i < text.size();) {
      const Impl::Special* hit = nullptr;
      for (const auto& s : m.specials[static_cast<uint8_t>(text[i])]) {
        if ((!s.control || (!all_plain && control_fits(i, s.text.size()))) &&
            text.compare(i, s.text.size(), s.text) == 0) {
          hit = &s;
          break;
        }
      }
      if (hit == nullptr) {
        ++i;
        continue;
      }
      encode_fragment(start, i);
      out.push_back(hit->id);
      i += hit->text.size();
      start = i;
    }
  }
  encode_fragment(start, text.size());
  if (add_special && m.spec.add_eos && m.spec.eos_id >= 0) out.push_back(m.spec.eos_id);
  return out;
}

std::string Tokenizer::token_bytes(int id, bool keep_special) const {
  const Impl& m = *impl_;
  require(id >= 0 && id < vocab_size(), "token id ", id, " is outside the vocabulary (0..",
          vocab_size() - 1, ")");
  if (is_special(m.spec.types[id])) return keep_special ? m.spec.tokens[id] : std::string();
  return m.text_of[id];
}

std::string Tokenizer::decode(const std::vector<int>& ids, bool keep_special) const {
  const Impl& m = *impl_;
  std::string out;
  bool first = true;  // SentencePiece drops the space its dummy prefix put before the first piece
  for (int id : ids) {
    std::string_view t = [&]() -> std::string_view {
      require(id >= 0 && id < vocab_size(), "token id ", id, " is outside the vocabulary (0..",
              vocab_size() - 1, ")");
      if (is_special(m.spec.types[id])) {
        return keep_special ? std::string_view(m.spec.tokens[id]) : std::string_view();
      }
      return m.text_of[id];
    }();
    if (t.empty()) continue;
    if (first && m.spm && m.spec.add_space_prefix && !is_special(m.spec.types[id]) && t[0] == ' ') {
      t.remove_prefix(1);
    }
    first = false;
    out.append(t);
  }
  return out;
}

int Tokenizer::vocab_size() const { return static_cast<int>(impl_->spec.tokens.size()); }
int Tokenizer::bos_id() const { return impl_->spec.bos_id; }
int Tokenizer::eos_id() const { return impl_->spec.eos_id; }
bool Tokenizer::is_stop(int id) const {
  const auto& s = impl_->spec;
  return id == s.eos_id || std::find(s.stop_ids.begin(), s.stop_ids.end(), id) != s.stop_ids.end();
}
const TokenizerSpec& Tokenizer::spec() const { return impl_->spec; }

}  // namespace elutq
