// Byte-level BPE: bytes->unicode map, ranked merges with a priority queue, per-word cache.
#include "tokenizer/byte_level_bpe.h"

#include <queue>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace elutq {
namespace {

// GPT-2's map from bytes to code points: printable Latin-1 bytes stand for themselves, the
// others (controls, space, 0x7F-0xA0, 0xAD) take code points 256, 257, ... in byte order.
const std::array<uint32_t, 256>& byte_to_codepoint() {
  static const std::array<uint32_t, 256> map = [] {
    std::array<uint32_t, 256> m{};
    uint32_t extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      m[b] = printable ? b : extra++;
    }
    return m;
  }();
  return map;
}

// The inverse map, code point -> byte, -1 for code points that stand for no byte.
int codepoint_to_byte(uint32_t cp) {
  static const std::array<int, 324> inv = [] {
    std::array<int, 324> m{};
    m.fill(-1);
    for (int b = 0; b < 256; ++b) m[byte_to_codepoint()[b]] = b;
    return m;
  }();
  return cp < inv.size() ? inv[cp] : -1;
}

struct Candidate {
  int rank;
  int left, right;
  int left_id, right_id;  // ids when queued; a mismatch later means the entry is stale
};

struct Worse {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.left > b.left;
  }
};

uint64_t pair_key(int a, int b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

std::vector<std::string> pre_regexes(const TokenizerSpec& spec) {
  if (!spec.pre_regexes.empty()) return spec.pre_regexes;
  return PreTokenizer::regexes_for(spec.pre);
}

}  // namespace

ByteLevelBpe::ByteLevelBpe(const TokenizerSpec& spec)
    : pre_(pre_regexes(spec)),
      ignore_merges_(spec.ignore_merges || spec.pre == "llama3" || spec.pre == "llama-bpe"),
      unk_id_(spec.unk_id) {
  vocab_.reserve(spec.tokens.size());
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    vocab_.emplace(spec.tokens[id], static_cast<int>(id));
  }
  for (int b = 0; b < 256; ++b) {
    utf8::append(byte_char_[b], byte_to_codepoint()[b]);
    auto it = vocab_.find(byte_char_[b]);
    byte_id_[b] = it == vocab_.end() ? -1 : it->second;
  }
  merges_.reserve(spec.merges.size());
  std::string joined;
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const auto& [a, b] = spec.merges[rank];
    joined = a;
    joined += b;
    auto ia = vocab_.find(a), ib = vocab_.find(b), ij = vocab_.find(joined);
    require(ia != vocab_.end() && ib != vocab_.end() && ij != vocab_.end(), "merge ", rank,
            " ('", a, "' + '", b, "') names a token that is not in the vocabulary; the "
            "tokenizer data is corrupt");
    merges_.emplace(pair_key(ia->second, ib->second), std::make_pair(static_cast<int>(rank), ij->second));
  }
}

std::string ByteLevelBpe::piece_to_bytes(std::string_view piece) {
  std::string out;
  out.reserve(piece.size());
  for (size_t i = 0; i < piece.size();) {
    size_t n = utf8::char_len(piece, i);
    if (n == 0) {  // not UTF-8: keep the byte as it is
      out += piece[i++];
      continue;
    }
    const int b = codepoint_to_byte(utf8::decode_at(piece, i, n));
    if (b >= 0) {
      out += static_cast<char>(b);
    } else {
      out.append(piece.substr(i, n));
    }
    i += n;
  }
  return out;
}

void ByteLevelBpe::encode_word(std::string_view word, std::vector<int>& out) const {
  if (ignore_merges_) {
    std::string mapped;
    for (char c : word) mapped += byte_char_[static_cast<uint8_t>(c)];
    auto it = vocab_.find(mapped);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // Symbols: one per byte, linked list over ids; id -1 marks a merged-away symbol.
  const int n = static_cast<int>(word.size());
  std::vector<int> id(n), prev(n), next(n);  // (n) each
  for (int i = 0; i < n; ++i) {
    const uint8_t b = static_cast<uint8_t>(word[i]);
    int t = byte_id_[b];
    if (t < 0) {
      require(unk_id_ >= 0, "byte ", int(b),
              " has no token in this byte-level vocabulary and there is no unknown token");
      t = unk_id_;
    }
    id[i] = t;
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  std::priority_queue<Candidate, std::vector<Candidate>, Worse> queue;
  auto try_pair = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    auto it = merges_.find(pair_key(id[l], id[r]));
    if (it != merges_.end()) queue.push({it->second.first, l, r, id[l], id[r]});
  };
  for (int i = 0; i + 1 < n; ++i) try_pair(i, i + 1);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    if (id[c.left] != c.left_id || id[c.right] != c.right_id || next[c.left] != c.right) continue;
    id[c.left] = merges_.at(pair_key(c.left_id, c.right_id)).second;
    id[c.right] = -1;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    try_pair(prev[c.left], c.left);
    try_pair(c.left, next[c.left]);
  }
  for (int i = 0; i >= 0 && i < n; i = next[i]) out.push_back(id[i]);
}

void ByteLevelBpe::encode(std::string_view text, std::vector<int>& out) const {
  std::vector<std::string_view> words;
  pre_.split(text, words);
  std::vector<int> ids;
  for (std::string_view w : words) {
    {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      auto it = cache_.find(w);
      if (it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        continue;
      }
    }
    ids.clear();
    encode_word(w, ids);
    out.insert(out.end(), ids.begin(), ids.end());
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() > 200000) cache_.clear();  // bound memory on huge inputs
    cache_.emplace(std::string(w), ids);
  }
}

}  // namespace elutq
