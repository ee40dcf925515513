// Block and activation checkpoint files of a resumable run; see resume_checkpoint.h.
#include "quant/resume_checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "core/atomic_file.h"
#include "core/error.h"
#include "quant/activation_store.h"
#include "tensor/quantized_matrix_codec.h"

namespace elutq {
namespace {

constexpr char kBlockMagic[8] = {'E', 'L', 'U', 'T', 'Q', 'C', 'K', '2'};
constexpr char kOldBlockMagic[8] = {'E', 'L', 'U', 'T', 'Q', 'C', 'K', '1'};
constexpr char kActsMagic[8] = {'E', 'L', 'U', 'T', 'Q', 'A', 'C', '2'};
constexpr char kOldActsMagic[8] = {'E', 'L', 'U', 'T', 'Q', 'A', 'C', '1'};

// What every message about a damaged or outdated file ends with.
std::string start_over(const std::string& path) {
  return "; pass --restart (or delete '" + std::filesystem::path(path).parent_path().string() +
         "') to start over";
}

// A checksum of bytes, chained through h: FNV-1a's xor-multiply step over 8-byte words in four
// interleaved lanes, so that gigabytes of activations hash at memory speed rather than byte by
// byte. Each step is a bijection of the lane, so any change confined to one word is caught.
uint64_t checksum(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ull) {
  constexpr uint64_t kPrime = 0x100000001b3ull;
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t lane[4] = {h, h ^ 1, h ^ 2, h ^ 3};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 4; ++k) {
      uint64_t w;
      std::memcpy(&w, p + i + 8 * k, 8);
      lane[k] = (lane[k] ^ w) * kPrime;
    }
  }
  uint64_t r = 0xcbf29ce484222325ull;
  for (uint64_t l : lane) r = (r ^ l) * kPrime;
  for (; i < n; ++i) r = (r ^ p[i]) * kPrime;
  return r;
}

class Writer {
 public:
  template <typename T>
  void pod(const T& v) {
    s_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void bytes(const void* p, size_t n) { s_.append(static_cast<const char*>(p), n); }
  void str(const std::string& v) {
    pod(uint64_t(v.size()));
    s_ += v;
  }
  std::string& out() { return s_; }

 private:
  std::string s_;
};

class Reader {
 public:
  Reader(const std::string& s, const std::string& path) : s_(s), path_(path) {}
  template <typename T>
  T pod() {
    T v;
    std::memcpy(&v, take(sizeof v), sizeof v);
    return v;
  }
  const uint8_t* take(uint64_t n) {
    require(n <= s_.size() - pos_, "checkpoint '", path_, "' is truncated or corrupt",
            start_over(path_));
    const uint8_t* p = reinterpret_cast<const uint8_t*>(s_.data()) + pos_;
    pos_ += n;
    return p;
  }
  std::string str() {
    const uint64_t n = pod<uint64_t>();
    const uint8_t* p = take(n);
    return std::string(reinterpret_cast<const char*>(p), n);
  }
  // Element count guarded against sizes the file cannot hold.
  uint64_t count(uint64_t elem_bytes) {
    const uint64_t n = pod<uint64_t>();
    require(elem_bytes == 0 || n <= (s_.size() - pos_) / elem_bytes, "checkpoint '", path_,
            "' is truncated or corrupt", start_over(path_));
    return n;
  }
  bool done() const { return pos_ == s_.size(); }

 private:
  const std::string& s_;
  std::string path_;
  uint64_t pos_ = 0;
};

struct ActsHeader {
  char magic[8];
  int64_t n_seqs, seq_len, dim;
};  // then (n_seqs, seq_len, dim) fp32, then the checksum of those bytes (u64)

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  require(bool(in), "cannot open '", path, "'");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

void write_block_checkpoint(const std::string& path, const BlockCheckpoint& cp) {
  Writer w;
  w.bytes(kBlockMagic, 8);
  w.pod(uint64_t(cp.tensors.size()));
  for (const CheckpointTensor& t : cp.tensors) {
    w.str(t.name);
    w.pod(uint8_t(t.kind));
    if (t.kind == CheckpointTensor::Kind::Quantized) {
      const std::vector<uint8_t> blob = encode_quantized_blob(t.q);
      w.pod(uint64_t(blob.size()));
      w.bytes(blob.data(), blob.size());
    } else if (t.kind == CheckpointTensor::Kind::F32) {
      w.pod(uint64_t(t.shape.size()));
      for (int64_t d : t.shape) w.pod(d);
      w.pod(uint64_t(t.data.size()));
      w.bytes(t.data.data(), t.data.size() * sizeof(float));
    }
  }
  w.str(cp.notes);
  w.pod(checksum(w.out().data(), w.out().size()));
  write_file_atomic(path, w.out());
}

BlockCheckpoint read_block_checkpoint(const std::string& path) {
  const std::string s = read_whole_file(path);
  require(s.size() < 8 || std::memcmp(s.data(), kOldBlockMagic, 8) != 0, "'", path,
          "' is a checkpoint of an earlier elutq, which this one cannot resume", start_over(path));
  require(s.size() >= 16 && std::memcmp(s.data(), kBlockMagic, 8) == 0, "'", path,
          "' is not an elutq block checkpoint", start_over(path));
  uint64_t stored;
  std::memcpy(&stored, s.data() + s.size() - 8, 8);
  require(checksum(s.data(), s.size() - 8) == stored, "checkpoint '", path,
          "' is damaged (checksum mismatch)", start_over(path));
  const std::string body = s.substr(0, s.size() - 8);
  Reader r(body, path);
  r.take(8);
  BlockCheckpoint cp;
  const uint64_t n = r.count(8);
  for (uint64_t i = 0; i < n; ++i) {
    CheckpointTensor t;
    t.name = r.str();
    const uint8_t kind = r.pod<uint8_t>();
    require(kind <= 2, "checkpoint '", path, "': unknown tensor kind ", int(kind),
            start_over(path));
    t.kind = CheckpointTensor::Kind(kind);
    if (t.kind == CheckpointTensor::Kind::Quantized) {
      const uint64_t nb = r.count(1);
      // The blob sits at any offset of the file; the decoder reads it in place as fp16 and
      // fp32 arrays, so it gets an allocation's alignment, as the model file gives it 64.
      const uint8_t* at = r.take(nb);
      const std::vector<uint8_t> aligned(at, at + nb);
      t.q = decode_quantized_blob(aligned.data(), nb);
    } else if (t.kind == CheckpointTensor::Kind::F32) {
      const uint64_t nd = r.count(8);
      uint64_t numel = 1;
      for (uint64_t d = 0; d < nd; ++d) {
        t.shape.push_back(r.pod<int64_t>());
        numel *= uint64_t(t.shape.back());
      }
      const uint64_t ne = r.count(4);
      require(ne == numel, "checkpoint '", path, "': '", t.name, "' has the wrong size",
              start_over(path));
      t.data.resize(ne);
      std::memcpy(t.data.data(), r.take(ne * 4), ne * 4);
    }
    cp.tensors.push_back(std::move(t));
  }
  cp.notes = r.str();
  require(r.done(), "checkpoint '", path, "' has trailing bytes; it is corrupt", start_over(path));
  return cp;
}

void save_activations(const ActivationStore& acts, const std::string& path) {
  ActsHeader h{};
  std::memcpy(h.magic, kActsMagic, 8);
  h.n_seqs = acts.count();
  h.seq_len = acts.tokens();
  h.dim = acts.dim();
  AtomicFile f(path);
  f.write(&h, sizeof h);
  std::vector<float> buf(static_cast<size_t>(acts.seq_floats()));  // (seq_len, dim)
  const size_t bytes = buf.size() * sizeof(float);
  uint64_t sum = checksum(nullptr, 0);
  for (int64_t i = 0; i < h.n_seqs; ++i) {
    acts.read(i, buf.data());
    sum = checksum(buf.data(), bytes, sum);
    f.write(buf.data(), bytes);
  }
  f.write(&sum, sizeof sum);
  f.commit();
}

void load_activations(const std::string& path, ActivationStore& acts) {
  const std::string what = "activation checkpoint '" + path + "'";
  std::ifstream in(path, std::ios::binary);
  require(bool(in), "cannot open ", what, ": ", std::strerror(errno));
  ActsHeader h{};
  in.read(reinterpret_cast<char*>(&h), sizeof h);
  require(bool(in), what, " is truncated", start_over(path));
  require(std::memcmp(h.magic, kOldActsMagic, 8) != 0, what,
          " was written by an earlier elutq, which this one cannot resume", start_over(path));
  require(std::memcmp(h.magic, kActsMagic, 8) == 0, what, " is not an elutq activation file",
          start_over(path));
  require(h.n_seqs == acts.count() && h.seq_len == acts.tokens() && h.dim == acts.dim(), what,
          " holds ", h.n_seqs, " x ", h.seq_len, " x ", h.dim, " activations, expected ",
          acts.count(), " x ", acts.tokens(), " x ", acts.dim());
  std::vector<float> buf(static_cast<size_t>(acts.seq_floats()));  // (seq_len, dim)
  const size_t bytes = buf.size() * sizeof(float);
  const uint64_t want_size = sizeof h + uint64_t(h.n_seqs) * bytes + sizeof(uint64_t);
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  require(!ec && size == want_size, what, " has ", size, " bytes, expected ", want_size,
          "; it is truncated or corrupt", start_over(path));
  uint64_t sum = checksum(nullptr, 0);
  for (int64_t i = 0; i < h.n_seqs; ++i) {
    in.read(reinterpret_cast<char*>(buf.data()), std::streamsize(bytes));
    require(bool(in), "cannot read ", what);
    sum = checksum(buf.data(), bytes, sum);
    acts.put(i, buf.data());
  }
  uint64_t stored = 0;
  in.read(reinterpret_cast<char*>(&stored), sizeof stored);
  require(bool(in) && stored == sum, what, " is damaged (checksum mismatch)", start_over(path));
}

}  // namespace elutq
