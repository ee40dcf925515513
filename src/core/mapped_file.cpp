#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/error.h"

namespace elutq {
namespace {

#ifdef ELUTQ_FUZZING
// Fuzzing builds (CMake option ELUTQ_FUZZ): the bytes move from the mapping to a heap block of
// exactly the file's size, so AddressSanitizer reports a read past the end of the file, which the
// mapping, rounded up to whole pages, would let through. Page-aligned like a mapping.
constexpr bool kOnHeap = true;
const uint8_t* adopt_mapping(void* map, size_t n) {
  void* heap = nullptr;
  if (::posix_memalign(&heap, 4096, n) != 0) throw std::bad_alloc();
  std::memcpy(heap, map, n);
  ::munmap(map, n);
  return static_cast<const uint8_t*>(heap);
}
void drop_mapping(const uint8_t* p, size_t) { std::free(const_cast<uint8_t*>(p)); }
#else
constexpr bool kOnHeap = false;
const uint8_t* adopt_mapping(void* map, size_t) { return static_cast<const uint8_t*>(map); }
void drop_mapping(const uint8_t* p, size_t n) { ::munmap(const_cast<uint8_t*>(p), n); }
#endif

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a named pipe must not wait for a writer; it is refused below.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("cannot open '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail("cannot stat '", path, "': ", std::strerror(err));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    fail("'", path, "' is a directory, expected a file");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("'", path, "' is not a regular file (a pipe or a device); give a file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      fail("cannot map '", path, "': ", std::strerror(err));
    }
    data_ = adopt_mapping(p, size_);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) drop_mapping(data_, size_);
}

void MappedFile::check_range(uint64_t offset, uint64_t length, const std::string& what) const {
  if (offset > size_ || length > size_ - offset) {
    fail("'", path_, "': ", what, " lies past the end of the file (bytes ", offset, "..",
         offset + length, " of a ", size_, "-byte file); the file is truncated or corrupt");
  }
}

}  // namespace elutq

namespace elutq {

void MappedFile::release_pages(const void* p, uint64_t n) const {
  const auto* b = static_cast<const uint8_t*>(p);
  if (kOnHeap || !data_ || n == 0 || b < data_ || b + n > data_ + size_) return;
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = uintptr_t(b) & ~(page - 1);
  const uintptr_t hi = std::min(uintptr_t(b + n + page - 1) & ~(page - 1),
                                (uintptr_t(data_ + size_) + page - 1) & ~(page - 1));
  ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);  // advisory: errors are harmless
}

}  // namespace elutq
