// Reader for SentencePiece's tokenizer.model: a protobuf ModelProto, decoded with a minimal
// wire-format reader (varints, fixed32, length-delimited fields) so no protobuf library is needed.
//   ModelProto:     1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
//   SentencePiece:  1 piece (string), 2 score (float), 3 type (enum, default NORMAL = 1)
//   TrainerSpec:    3 model_type (UNIGRAM = 1 default, BPE = 2, WORD = 3, CHAR = 4),
//                   35 byte_fallback, 40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id
//   NormalizerSpec: 1 name, 3 add_dummy_prefix (default true),
//                   4 remove_extra_whitespaces (default true)
#include <cstring>
#include <string_view>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tokenizer/tokenizer_files.h"

namespace elutq {
namespace {

// Reads protobuf fields from one message's bytes; every read is bounds-checked.
class WireReader {
 public:
  WireReader(std::string_view bytes, const std::string& path) : b_(bytes), path_(path) {}
  bool done() const { return pos_ >= b_.size(); }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      check(pos_ < b_.size(), "a varint runs past the end");
      const uint8_t c = static_cast<uint8_t>(b_[pos_++]);
      v |= static_cast<uint64_t>(c & 0x7F) << shift;
      if ((c & 0x80) == 0) return v;
    }
    fail(corrupt("a varint is longer than 10 bytes"));
  }
  // Next field's number and wire type.
  void key(uint32_t* field, uint32_t* wire) {
    const uint64_t k = varint();
    *field = static_cast<uint32_t>(k >> 3);
    *wire = static_cast<uint32_t>(k & 7);
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    check(n <= b_.size() - pos_, "a length-delimited field runs past the end");
    std::string_view r = b_.substr(pos_, n);
    pos_ += n;
    return r;
  }
  float fixed32_float() {
    check(b_.size() - pos_ >= 4, "a 32-bit field runs past the end");
    float f;
    std::memcpy(&f, b_.data() + pos_, 4);
    pos_ += 4;
    return f;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1: check(b_.size() - pos_ >= 8, "a 64-bit field runs past the end"); pos_ += 8; break;
      case 2: bytes(); break;
      case 5: fixed32_float(); break;
      default: fail(corrupt("unsupported protobuf wire type " + std::to_string(wire)));
    }
  }
  // The message is built only on failure: these checks run for every byte of a 32k-piece model.
  void check(bool ok, const char* what) const {
    if (!ok) fail(corrupt(what));
  }
  std::string corrupt(const std::string& what) const {
    return "'" + path_ + "' is not a valid SentencePiece model (" + what + " at byte " +
           std::to_string(pos_) + "); is it truncated?";
  }

 private:
  std::string_view b_;
  const std::string& path_;
  size_t pos_ = 0;
};

}  // namespace

TokenizerSpec load_sentencepiece_model(const std::string& path) {
  MappedFile file(path);
  require(file.size() > 0, "SentencePiece model '", path, "' is empty");
  WireReader top(std::string_view(reinterpret_cast<const char*>(file.data()), file.size()), path);
  TokenizerSpec spec;
  spec.kind = TokenizerKind::SentencePieceBPE;
  uint64_t model_type = 1;  // UNIGRAM unless the trainer spec says otherwise
  int64_t unk = 0, bos = 1, eos = 2, pad = -1;
  bool add_dummy_prefix = true, remove_extra_ws = true;

  while (!top.done()) {
    uint32_t field, wire;
    top.key(&field, &wire);
    if (field == 1 && wire == 2) {
      WireReader p(top.bytes(), path);
      std::string piece;
      float score = 0;
      uint64_t type = 1;
      while (!p.done()) {
        uint32_t f, w;
        p.key(&f, &w);
        if (f == 1 && w == 2) {
          piece = std::string(p.bytes());
        } else if (f == 2 && w == 5) {
          score = p.fixed32_float();
        } else if (f == 3 && w == 0) {
          type = p.varint();
        } else {
          p.skip(w);
        }
      }
      if (type < 1 || type > 6) {
        fail(p.corrupt("piece " + std::to_string(spec.tokens.size()) + " has unknown type " +
                       std::to_string(type)));
      }
      spec.tokens.push_back(std::move(piece));
      spec.scores.push_back(score);
      spec.types.push_back(static_cast<TokenType>(type));
    } else if (field == 2 && wire == 2) {
      WireReader t(top.bytes(), path);
      while (!t.done()) {
        uint32_t f, w;
        t.key(&f, &w);
        if (w != 0) {
          t.skip(w);
          continue;
        }
        const uint64_t v = t.varint();
        const auto as_int = static_cast<int64_t>(static_cast<int32_t>(v));  // int32 sign-extended
        if (f == 3) model_type = v;
        if (f == 40) unk = as_int;
        if (f == 41) bos = as_int;
        if (f == 42) eos = as_int;
        if (f == 43) pad = as_int;
      }
    } else if (field == 3 && wire == 2) {
      WireReader n(top.bytes(), path);
      while (!n.done()) {
        uint32_t f, w;
        n.key(&f, &w);
        if (w == 0 && (f == 3 || f == 4)) {
          (f == 3 ? add_dummy_prefix : remove_extra_ws) = n.varint() != 0;
        } else {
          n.skip(w);
        }
      }
    } else {
      top.skip(wire);
    }
  }

  require(!spec.tokens.empty(), "SentencePiece model '", path, "' has no pieces");
  require(model_type == 2, "SentencePiece model '", path, "' is a ",
          model_type == 1 ? "unigram" : model_type == 3 ? "word" : model_type == 4 ? "char" : "unknown-type",
          " model; only BPE models (LLaMA-2, TinyLlama) are supported");
  const int64_t n = static_cast<int64_t>(spec.tokens.size());
  auto id_or_none = [&](int64_t id, const char* what) {
    require(id >= -1 && id < n, "SentencePiece model '", path, "': ", what, " id ", id,
            " is outside the vocabulary of ", n, " pieces");
    return static_cast<int>(id);
  };
  spec.unk_id = id_or_none(unk, "unk");
  spec.bos_id = id_or_none(bos, "bos");
  spec.eos_id = id_or_none(eos, "eos");
  spec.pad_id = id_or_none(pad, "pad");
  if (spec.eos_id >= 0) spec.stop_ids.push_back(spec.eos_id);
  spec.add_bos = spec.bos_id >= 0;  // SentencePiece-BPE LLaMA models start every text with BOS
  spec.add_eos = false;
  spec.add_space_prefix = add_dummy_prefix;
  spec.remove_extra_whitespaces = remove_extra_ws;
  return spec;
}

}  // namespace elutq
