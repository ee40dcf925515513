// See input_file.h. Opening with O_NONBLOCK and checking fstat before any read keeps a named
// pipe from blocking the open itself.
#include "core/input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace elutq {
namespace {

const char* kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a folder";
  if (S_ISFIFO(m)) return "a named pipe";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

// An open descriptor of a readable regular file; throws Error otherwise.
int open_regular(const std::string& path, const std::string& what, struct stat* st) {
  require(!path.empty(), "no ", what, " file given");
  if (::stat(path.c_str(), st) != 0)
    fail(what, " '", path, "': ",
         errno == ENOENT ? std::string("no such file") : std::string(std::strerror(errno)));
  require(S_ISREG(st->st_mode), what, " '", path, "' is ", kind_of(st->st_mode),
          ", not a file: give a regular file");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("cannot read ", what, " '", path, "': ", std::strerror(errno));
  return fd;
}

}  // namespace

void require_readable_file(const std::string& path, const std::string& what) {
  struct stat st {};
  ::close(open_regular(path, what, &st));
}

std::string read_input_file(const std::string& path, const std::string& what,
                            uint64_t max_bytes) {
  struct stat st {};
  const int fd = open_regular(path, what, &st);
  if (uint64_t(st.st_size) > max_bytes) {
    ::close(fd);
    fail(what, " '", path, "' is ", uint64_t(st.st_size), " bytes; at most ", max_bytes,
         " are read");
  }
  std::string s(size_t(st.st_size), '\0');
  size_t got = 0;
  while (got < s.size()) {
    const ssize_t r = ::read(fd, s.data() + got, s.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const int err = errno;
      ::close(fd);
      fail("cannot read ", what, " '", path, "': ", std::strerror(err));
    }
    if (r == 0) break;  // shrank while reading
    got += size_t(r);
  }
  ::close(fd);
  s.resize(got);
  return s;
}

}  // namespace elutq
