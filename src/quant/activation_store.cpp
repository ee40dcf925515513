// Calibration activations in memory or in an unlinked scratch file; see activation_store.h.
#include "quant/activation_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace elutq {
namespace {

// Full pread/pwrite: loops over short transfers, throws on errors.
void pread_all(int fd, void* dst, uint64_t n, uint64_t off, const std::string& what) {
  auto* p = static_cast<uint8_t*>(dst);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, off_t(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) fail("cannot read ", what, ": ", r == 0 ? "unexpected end of file" : std::strerror(errno));
    p += r;
    n -= uint64_t(r);
    off += uint64_t(r);
  }
}

void pwrite_all(int fd, const void* src, uint64_t n, uint64_t off, const std::string& what) {
  auto* p = static_cast<const uint8_t*>(src);
  while (n > 0) {
    const ssize_t r = ::pwrite(fd, p, n, off_t(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) fail("cannot write ", what, ": ", std::strerror(errno), " (is the disk full?)");
    p += r;
    n -= uint64_t(r);
    off += uint64_t(r);
  }
}

}  // namespace

ActivationStore::ActivationStore(int64_t n_seqs, int64_t seq_len, int64_t dim,
                                 uint64_t budget_bytes, const std::string& scratch_dir)
    : n_(n_seqs), L_(seq_len), dim_(dim) {
  require(n_seqs > 0 && seq_len > 0 && dim > 0, "activation store needs a positive shape, got ",
          n_seqs, " x ", seq_len, " x ", dim);
  bytes_ = uint64_t(n_) * uint64_t(L_) * uint64_t(dim_) * sizeof(float);
  if (bytes_ <= budget_bytes) {
    mem_.assign(size_t(n_ * L_ * dim_), 0.0f);
    return;
  }
  const std::string dir = scratch_dir.empty() ? std::string(".") : scratch_dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::string tmpl = dir + "/elutq-acts-XXXXXX";
  fd_ = ::mkstemp(tmpl.data());
  if (fd_ < 0)
    fail("cannot create an activation scratch file in '", dir, "': ", std::strerror(errno),
         "; pick a writable folder with free space");
  ::unlink(tmpl.c_str());  // gone when the descriptor closes, even if the process is killed
  if (::ftruncate(fd_, off_t(bytes_)) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    fail("cannot size the activation scratch file in '", dir, "' to ", bytes_, " bytes: ",
         std::strerror(err));
  }
}

ActivationStore::~ActivationStore() {
  if (fd_ >= 0) ::close(fd_);
}

void ActivationStore::read(int64_t i, float* dst) const {
  require(i >= 0 && i < n_, "activation sequence ", i, " out of range [0, ", n_, ")");
  const uint64_t bytes = uint64_t(seq_floats()) * sizeof(float);
  if (fd_ < 0)
    std::memcpy(dst, mem_.data() + i * seq_floats(), bytes);
  else
    pread_all(fd_, dst, bytes, uint64_t(i) * bytes, "the activation scratch file");
}

void ActivationStore::put(int64_t i, const float* src) {
  require(i >= 0 && i < n_, "activation sequence ", i, " out of range [0, ", n_, ")");
  const uint64_t bytes = uint64_t(seq_floats()) * sizeof(float);
  if (fd_ < 0)
    std::memcpy(mem_.data() + i * seq_floats(), src, bytes);
  else
    pwrite_all(fd_, src, bytes, uint64_t(i) * bytes, "the activation scratch file");
}

}  // namespace elutq
