// SentencePiece-style BPE encoding with a priority queue over adjacent symbol pairs, so a long
// line costs O(n log n) rather than a rescan of all pairs after every merge.
#include "tokenizer/spm_bpe.h"

#include <cstdint>
#include <cstdio>
#include <queue>
#include <string>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace elutq {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // "▁" U+2581, SentencePiece's space

// One symbol of the text being merged: the bytes [start, end) of the normalized text, linked to
// its live neighbours. A merged-away symbol has start == end.
struct Symbol {
  uint32_t start, end;
  int prev, next;
};

// A candidate merge of symbols left and right whose concatenation is a piece with `score`.
// `len` is the concatenation's length when queued; a mismatch later means the entry is stale.
struct Candidate {
  float score;
  int left, right;
  uint32_t len;
};

struct Worse {
  // Highest score first; among equal scores the leftmost pair (SentencePiece's order).
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.score != b.score) return a.score < b.score;
    return a.left > b.left;
  }
};

// SentencePiece's remove_extra_whitespaces: no leading/trailing spaces, runs collapsed to one.
std::string collapse_spaces(std::string_view text) {
  std::string r;
  r.reserve(text.size());
  bool pending = false;
  for (char c : text) {
    if (c == ' ') {
      pending = !r.empty();
      continue;
    }
    if (pending) r += ' ';
    pending = false;
    r += c;
  }
  return r;
}

}  // namespace

SpmBpe::SpmBpe(const TokenizerSpec& spec)
    : score_(spec.tokens.size(), 0.0f),
      unk_id_(spec.unk_id),
      remove_extra_whitespaces_(spec.remove_extra_whitespaces) {
  byte_id_.fill(-1);
  int n_bytes = 0;
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    const std::string& piece = spec.tokens[id];
    const TokenType type = id < spec.types.size() ? spec.types[id] : TokenType::Normal;
    if (id < spec.scores.size()) score_[id] = spec.scores[id];
    if (type == TokenType::Byte) {
      unsigned v = 0;
      if (piece.size() == 6 && std::sscanf(piece.c_str(), "<0x%02X>", &v) == 1 && v < 256 &&
          byte_id_[v] < 0) {
        byte_id_[v] = static_cast<int>(id);
        ++n_bytes;
      }
      continue;
    }
    if (type == TokenType::Normal || type == TokenType::UserDefined) {
      piece_id_.emplace(piece, static_cast<int>(id));  // first id wins for duplicates
    }
  }
  byte_fallback_ = n_bytes > 0;
}

void SpmBpe::encode(std::string_view raw, bool with_prefix, std::vector<int>& out) const {
  std::string collapsed;
  if (remove_extra_whitespaces_) {
    collapsed = collapse_spaces(raw);
    raw = collapsed;
  }
  if (raw.empty()) return;

  // Normalized text: optional "▁" prefix, every ' ' replaced by "▁".
  std::string text;
  text.reserve(raw.size() + raw.size() / 2 + 3);
  if (with_prefix) text += kSpace;
  for (char c : raw) {
    if (c == ' ') {
      text += kSpace;
    } else {
      text += c;
    }
  }

  // One symbol per UTF-8 character.
  std::vector<Symbol> sym;  // (n_chars)
  sym.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t n = utf8::char_len(text, i);
    if (n == 0) n = 1;  // cannot happen for validated input; keeps the loop finite
    const int k = static_cast<int>(sym.size());
    sym.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(i + n), k - 1, k + 1});
    i += n;
  }
  sym.back().next = -1;

  std::vector<Candidate> storage;
  storage.reserve(sym.size());
  std::priority_queue<Candidate, std::vector<Candidate>, Worse> queue(Worse{}, std::move(storage));
  auto try_pair = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    const uint32_t len = sym[r].end - sym[l].start;
    auto it = piece_id_.find(std::string_view(text).substr(sym[l].start, len));
    if (it != piece_id_.end()) queue.push({score_[it->second], l, r, len});
  };
  for (size_t i = 0; i + 1 < sym.size(); ++i) try_pair(static_cast<int>(i), static_cast<int>(i) + 1);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& l = sym[c.left];
    Symbol& r = sym[c.right];
    // Stale if either side was merged away or grew since the candidate was queued.
    if (l.start == l.end || r.start == r.end || l.next != c.right ||
        r.end - l.start != c.len) {
      continue;
    }
    l.end = r.end;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.left;
    r.start = r.end;
    try_pair(l.prev, c.left);
    try_pair(c.left, l.next);
  }

  bool last_unknown = false;
  for (int i = 0; i >= 0; i = sym[i].next) {
    const std::string_view piece = std::string_view(text).substr(sym[i].start, sym[i].end - sym[i].start);
    auto it = piece_id_.find(piece);
    if (it != piece_id_.end()) {
      out.push_back(it->second);
      last_unknown = false;
    } else if (byte_fallback_) {
      for (char b : piece) {
        const int id = byte_id_[static_cast<uint8_t>(b)];
        require(id >= 0 || unk_id_ >= 0, "byte ", int(static_cast<uint8_t>(b)),
                " has no <0xNN> token and the vocabulary has no unknown token");
        out.push_back(id >= 0 ? id : unk_id_);  // HF byte_fallback: unk for a missing byte
      }
      last_unknown = false;
    } else {
      require(unk_id_ >= 0, "text piece '", std::string(piece),
              "' is not in the vocabulary, which has neither byte tokens nor an unknown token");
      if (!last_unknown) out.push_back(unk_id_);  // SentencePiece folds a run of unknowns into one
      last_unknown = true;
    }
  }
}

}  // namespace elutq
