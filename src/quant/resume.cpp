// Work directory, manifest and per-block checkpoints for resumable quantization; see resume.h.
#include "quant/resume.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "quant/activation_store.h"

namespace elutq {
namespace fs = std::filesystem;
namespace {

constexpr char kCkptMagic[8] = {'E', 'L', 'U', 'T', 'Q', 'C', 'K', '1'};

uint64_t fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

// Writes bytes to path via a temporary name, fsync and rename.
void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create '", tmp, "': ", std::strerror(errno));
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t r = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("cannot write '", tmp, "': ", std::strerror(err), " (is the disk full?)");
    }
    off += size_t(r);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    fail("cannot flush '", tmp, "': ", std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("cannot rename '", tmp, "' to '", path, "': ", std::strerror(err));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  require(bool(in), "cannot open '", path, "'");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
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
    require(n <= s_.size() - pos_, "checkpoint '", path_, "' is truncated or corrupt; delete its "
            "work directory to start over");
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
            "' is truncated or corrupt");
    return n;
  }
  bool done() const { return pos_ == s_.size(); }

 private:
  const std::string& s_;
  std::string path_;
  uint64_t pos_ = 0;
};

// Codes (one per byte, each < 2^bits) as a little-endian bit stream of `bits` bits each.
std::vector<uint8_t> pack_codes(const std::vector<uint8_t>& codes, int bits) {
  std::vector<uint8_t> out((codes.size() * size_t(bits) + 7) / 8, 0);
  uint64_t bit = 0;
  for (uint8_t c : codes) {
    for (int b = 0; b < bits; ++b, ++bit)
      if ((c >> b) & 1) out[bit / 8] |= uint8_t(1u << (bit % 8));
  }
  return out;
}

std::vector<uint8_t> unpack_codes(const uint8_t* p, size_t n, int bits) {
  std::vector<uint8_t> codes(n, 0);
  uint64_t bit = 0;
  for (size_t i = 0; i < n; ++i) {
    uint8_t c = 0;
    for (int b = 0; b < bits; ++b, ++bit) c |= uint8_t(((p[bit / 8] >> (bit % 8)) & 1) << b);
    codes[i] = c;
  }
  return codes;
}

}  // namespace

// ---- manifest -----------------------------------------------------------------------------------

void RunManifest::set(const std::string& key, const std::string& value) {
  require(key.find_first_of("=\n") == std::string::npos && value.find('\n') == std::string::npos,
          "manifest key '", key, "' or its value contains '=' or a newline");
  for (auto& e : entries_) {
    if (e.first == key) {
      e.second = value;
      return;
    }
  }
  entries_.emplace_back(key, value);
}

std::string RunManifest::text() const {
  std::string s;
  for (const auto& [k, v] : entries_) s += k + "=" + v + "\n";
  return s;
}

RunManifest RunManifest::parse(const std::string& text, const std::string& where) {
  RunManifest m;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    const size_t eq = line.find('=');
    require(eq != std::string::npos && eq > 0, "'", where, "' line ", n,
            " is not key=value; the work directory is damaged, delete it to start over");
    m.set(line.substr(0, eq), line.substr(eq + 1));
  }
  return m;
}

std::string RunManifest::difference_from(const RunManifest& saved) const {
  for (const auto& [k, v] : entries_) {
    const auto it = std::find_if(saved.entries_.begin(), saved.entries_.end(),
                                 [&](const auto& e) { return e.first == k; });
    if (it == saved.entries_.end()) return k + " is new in this run (value '" + v + "')";
    if (it->second != v)
      return k + " was '" + it->second + "' in the interrupted run and is '" + v + "' now";
  }
  for (const auto& [k, v] : saved.entries_) {
    const bool here = std::any_of(entries_.begin(), entries_.end(),
                                  [&](const auto& e) { return e.first == k; });
    if (!here) return k + " ('" + v + "') was set in the interrupted run and is not now";
  }
  return "";
}

std::string file_identity(const std::string& path) {
  std::error_code ec;
  require(fs::exists(path, ec), "'", path, "' does not exist");
  auto one = [](const fs::path& p) {
    struct stat st {};
    require(::stat(p.c_str(), &st) == 0, "cannot stat '", p.string(), "': ", std::strerror(errno));
    return fs::absolute(p).lexically_normal().string() + " size=" + std::to_string(st.st_size) +
           " mtime=" + std::to_string(int64_t(st.st_mtim.tv_sec)) + "." +
           std::to_string(int64_t(st.st_mtim.tv_nsec));
  };
  if (!fs::is_directory(path, ec)) return one(path);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(path, ec))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string s;
  for (const auto& f : files) s += (s.empty() ? "" : "; ") + one(f);
  return s;
}

// ---- checkpoint files ---------------------------------------------------------------------------

void write_block_checkpoint(const std::string& path, const BlockCheckpoint& cp) {
  Writer w;
  w.bytes(kCkptMagic, 8);
  w.pod(uint64_t(cp.tensors.size()));
  for (const CheckpointTensor& t : cp.tensors) {
    w.str(t.name);
    w.pod(uint8_t(t.kind));
    if (t.kind == CheckpointTensor::Kind::Quantized) {
      const QuantizedMatrix& q = t.q;
      require(q.codes.size() == size_t(q.rows * q.cols), "checkpoint of '", t.name,
              "': codes do not match its shape");
      w.pod(uint8_t(q.spec.kind));
      w.pod(int32_t(q.spec.bits));
      w.pod(int32_t(q.spec.group));
      w.pod(q.rows);
      w.pod(q.cols);
      const std::vector<uint8_t> packed = pack_codes(q.codes, q.spec.bits);
      w.pod(uint64_t(packed.size()));
      w.bytes(packed.data(), packed.size());
      w.pod(uint64_t(q.params.size()));
      w.bytes(q.params.data(), q.params.size() * sizeof(float));
    } else if (t.kind == CheckpointTensor::Kind::F32) {
      w.pod(uint64_t(t.shape.size()));
      for (int64_t d : t.shape) w.pod(d);
      w.pod(uint64_t(t.data.size()));
      w.bytes(t.data.data(), t.data.size() * sizeof(float));
    }
  }
  w.str(cp.notes);
  const uint64_t sum = fnv1a(reinterpret_cast<const uint8_t*>(w.out().data()), w.out().size());
  w.pod(sum);
  write_file_atomic(path, w.out());
}

BlockCheckpoint read_block_checkpoint(const std::string& path) {
  const std::string s = read_file(path);
  require(s.size() >= 16 && std::memcmp(s.data(), kCkptMagic, 8) == 0, "'", path,
          "' is not an elutq block checkpoint; delete its work directory to start over");
  uint64_t stored;
  std::memcpy(&stored, s.data() + s.size() - 8, 8);
  require(fnv1a(reinterpret_cast<const uint8_t*>(s.data()), s.size() - 8) == stored,
          "checkpoint '", path, "' is damaged (checksum mismatch); delete its work directory to "
          "start over");
  const std::string body = s.substr(0, s.size() - 8);
  Reader r(body, path);
  r.take(8);
  BlockCheckpoint cp;
  const uint64_t n = r.count(8);
  for (uint64_t i = 0; i < n; ++i) {
    CheckpointTensor t;
    t.name = r.str();
    const uint8_t kind = r.pod<uint8_t>();
    require(kind <= 2, "checkpoint '", path, "': unknown tensor kind ", int(kind));
    t.kind = CheckpointTensor::Kind(kind);
    if (t.kind == CheckpointTensor::Kind::Quantized) {
      QuantizedMatrix& q = t.q;
      q.spec.kind = QuantKind(r.pod<uint8_t>());
      q.spec.bits = r.pod<int32_t>();
      q.spec.group = r.pod<int32_t>();
      q.rows = r.pod<int64_t>();
      q.cols = r.pod<int64_t>();
      require(q.spec.bits >= 1 && q.spec.bits <= 8 && q.rows > 0 && q.cols > 0 &&
                  q.rows <= (int64_t(1) << 40) / q.cols,
              "checkpoint '", path, "' holds a malformed tensor '", t.name, "'");
      const uint64_t nb = r.count(1);
      require(nb == (uint64_t(q.rows * q.cols) * uint64_t(q.spec.bits) + 7) / 8, "checkpoint '",
              path, "': codes of '", t.name, "' have the wrong size");
      q.codes = unpack_codes(r.take(nb), size_t(q.rows * q.cols), q.spec.bits);
      const uint64_t np = r.count(4);
      q.params.resize(np);
      std::memcpy(q.params.data(), r.take(np * 4), np * 4);
    } else if (t.kind == CheckpointTensor::Kind::F32) {
      const uint64_t nd = r.count(8);
      uint64_t numel = 1;
      for (uint64_t d = 0; d < nd; ++d) {
        t.shape.push_back(r.pod<int64_t>());
        numel *= uint64_t(t.shape.back());
      }
      const uint64_t ne = r.count(4);
      require(ne == numel, "checkpoint '", path, "': '", t.name, "' has the wrong size");
      t.data.resize(ne);
      std::memcpy(t.data.data(), r.take(ne * 4), ne * 4);
    }
    cp.tensors.push_back(std::move(t));
  }
  cp.notes = r.str();
  require(r.done(), "checkpoint '", path, "' has trailing bytes; it is corrupt");
  return cp;
}

// ---- work directory -----------------------------------------------------------------------------

std::string ResumeDir::dir_for(const std::string& out_path) { return out_path + ".elutq-work"; }

void ResumeDir::discard(const std::string& out_path) {
  std::error_code ec;
  fs::remove_all(dir_for(out_path), ec);
}

std::string ResumeDir::block_path(int layer) const {
  return dir_ + "/block-" + std::to_string(layer) + ".ckpt";
}
std::string ResumeDir::acts_path(int layer) const {
  return dir_ + "/acts-" + std::to_string(layer) + ".bin";
}

ResumeDir::ResumeDir(const std::string& out_path, const RunManifest& manifest, int n_blocks)
    : dir_(dir_for(out_path)), n_blocks_(n_blocks) {
  std::error_code ec;
  const std::string mpath = dir_ + "/manifest.txt";
  if (fs::exists(mpath, ec)) {
    const RunManifest saved = RunManifest::parse(read_file(mpath), mpath);
    const std::string diff = manifest.difference_from(saved);
    require(diff.empty(), "'", dir_, "' holds an interrupted run with other settings (", diff,
            "); rerun with the same settings to resume it, or delete that folder (or pass "
            "--restart) to start over");
    // Finished: the longest prefix of checkpoints whose last one has its activations beside it
    // (acts-N.bin is written before block-N.ckpt, and the previous acts removed only after).
    int k = 0;
    while (k < n_blocks_ && fs::exists(block_path(k), ec)) ++k;
    while (k > 0 && !fs::exists(acts_path(k - 1), ec) && !fs::exists(acts_path(k - 1) + ".none", ec))
      --k;
    finished_ = k;
  } else {
    fs::create_directories(dir_, ec);
    require(!ec, "cannot create the work directory '", dir_, "': ", ec.message());
    write_file_atomic(mpath, manifest.text());
  }
}

void ResumeDir::save_block(int layer, const BlockCheckpoint& cp, const ActivationStore* acts) {
  require(layer == finished_, "save_block: block ", layer, " finished out of order (expected ",
          finished_, ")");
  if (acts)
    acts->save(acts_path(layer));
  else
    write_file_atomic(acts_path(layer) + ".none", "");  // a run without activations
  write_block_checkpoint(block_path(layer), cp);
  std::error_code ec;
  if (layer > 0) {
    fs::remove(acts_path(layer - 1), ec);
    fs::remove(acts_path(layer - 1) + ".none", ec);
  }
  finished_ = layer + 1;
}

BlockCheckpoint ResumeDir::load_block(int layer) const {
  require(layer >= 0 && layer < finished_, "block ", layer, " has no checkpoint");
  return read_block_checkpoint(block_path(layer));
}

void ResumeDir::load_activations(ActivationStore& acts) const {
  require(finished_ > 0, "no finished block, so no activations to resume from");
  acts.load(acts_path(finished_ - 1));
}

void ResumeDir::remove() {
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

}  // namespace elutq
