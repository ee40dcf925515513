// AtomicFile (see atomic_file.h). The signal handler may only make async-signal-safe calls, so
// the temporaries it removes live in a fixed table of C strings, each published by an atomic flag
// after its bytes are in place.
#include "core/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "core/error.h"

namespace elutq {
namespace fs = std::filesystem;
namespace {

constexpr int kSlots = 64;        // temporaries open at once in one process
constexpr size_t kPathMax = 4096;  // longer paths are still removed on errors, not on signals

struct PendingTemp {
  std::atomic<bool> claimed{false};  // the slot belongs to an AtomicFile
  std::atomic<bool> ready{false};    // path holds its temporary's name
  char path[kPathMax];
};
PendingTemp g_pending[kSlots];

void remove_pending_and_reraise(int sig) {
  for (PendingTemp& p : g_pending)
    if (p.ready.load(std::memory_order_acquire)) ::unlink(p.path);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// Installs the handler for the signals that end a process politely, unless the program already
// handles them itself (then it is its job to end in a way that runs destructors).
void install_handlers_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction old {};
      if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL) continue;
      struct sigaction sa {};
      sa.sa_handler = remove_pending_and_reraise;
      sigemptyset(&sa.sa_mask);
      ::sigaction(sig, &sa, nullptr);
    }
  });
}

int publish_pending(const std::string& tmp) {
  if (tmp.size() >= kPathMax) return -1;
  install_handlers_once();
  for (int i = 0; i < kSlots; ++i) {
    bool expected = false;
    if (!g_pending[i].claimed.compare_exchange_strong(expected, true)) continue;
    std::memcpy(g_pending[i].path, tmp.c_str(), tmp.size() + 1);
    g_pending[i].ready.store(true, std::memory_order_release);
    return i;
  }
  return -1;
}

void retract_pending(int slot) {
  if (slot < 0) return;
  g_pending[slot].ready.store(false, std::memory_order_release);
  g_pending[slot].claimed.store(false);
}

// The pid of a "NAME.tmpPID" file name of `base`, or -1.
long temp_pid(const std::string& file_name, const std::string& base) {
  const std::string prefix = base + ".tmp";
  if (file_name.size() <= prefix.size() || file_name.compare(0, prefix.size(), prefix) != 0)
    return -1;
  long pid = 0;
  for (size_t i = prefix.size(); i < file_name.size(); ++i) {
    const char c = file_name[i];
    if (c < '0' || c > '9' || pid > 100000000) return -1;
    pid = pid * 10 + (c - '0');
  }
  return pid;
}

}  // namespace

void check_output_path(const std::string& path, const std::string& what) {
  require(!path.empty(), what, " is empty: give a file name");
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  require(!fs::is_directory(st), what, " '", path, "' is a directory: give a file name");
  const fs::path parent = fs::path(path).has_parent_path() ? fs::path(path).parent_path() : ".";
  require(fs::is_directory(parent, ec), what, " '", path, "': folder '", parent.string(),
          "' does not exist");
  require(::access(parent.c_str(), W_OK) == 0, what, " '", path, "': cannot write in folder '",
          parent.string(), "': ", std::strerror(errno));
  if (fs::exists(st))
    require(::access(path.c_str(), W_OK) == 0, what, " '", path,
            "' exists and is not writable (", std::strerror(errno),
            "): make it writable or remove it to replace it");
}

int remove_stale_temporaries(const std::string& path) {
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : ".";
  const std::string base = p.filename().string();
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const long pid = temp_pid(it->path().filename().string(), base);
    if (pid <= 0 || pid == long(::getpid())) continue;
    if (::kill(pid_t(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
    std::error_code rm;
    if (fs::remove(it->path(), rm)) ++removed;
  }
  return removed;
}

AtomicFile::AtomicFile(const std::string& path)
    : path_(path), tmp_(path + ".tmp" + std::to_string(::getpid())) {
  check_output_path(path, "output file");
  remove_stale_temporaries(path);
  struct stat existing {};
  const bool replaces = ::stat(path.c_str(), &existing) == 0;
  const int fd = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) fail("cannot create '", tmp_, "': ", std::strerror(errno));
  slot_ = publish_pending(tmp_);
  if (replaces) (void)::fchmod(fd, existing.st_mode & 07777);
  f_ = ::fdopen(fd, "wb");
  if (!f_) {
    ::close(fd);
    ::unlink(tmp_.c_str());
    retract_pending(slot_);
    fail("cannot open '", tmp_, "': ", std::strerror(errno));
  }
}

AtomicFile::~AtomicFile() {
  if (f_) std::fclose(f_);
  if (!committed_) ::unlink(tmp_.c_str());
  retract_pending(slot_);
}

void AtomicFile::write(const void* data, size_t n) {
  require(f_ != nullptr, "'", tmp_, "' written after commit");
  if (n > 0 && std::fwrite(data, 1, n, f_) != n)
    fail("cannot write '", tmp_, "': ", std::strerror(errno), " (is the disk full?)");
}

void AtomicFile::commit() {
  require(f_ != nullptr, "'", path_, "' committed twice");
  std::FILE* f = f_;
  f_ = nullptr;
  const bool flushed = std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  const int flush_errno = errno;
  const bool closed = std::fclose(f) == 0;
  if (!flushed || !closed)
    fail("cannot write '", tmp_, "': ", std::strerror(flushed ? errno : flush_errno),
         " (is the disk full?)");
  if (::rename(tmp_.c_str(), path_.c_str()) != 0)
    fail("cannot rename '", tmp_, "' to '", path_, "': ", std::strerror(errno));
  committed_ = true;
  retract_pending(slot_);
  slot_ = -1;
}

}  // namespace elutq
