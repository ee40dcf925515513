// A read-only memory map of a whole file. Model weights are read through this so that loading is
// cheap and the page cache is shared between processes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace elutq {

class MappedFile {
 public:
  // Throws Error if the file cannot be opened or mapped. An empty file maps to size() == 0.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Throws Error naming the file unless [offset, offset + length) lies inside it.
  void check_range(uint64_t offset, uint64_t length, const std::string& what) const;

  // Drops the pages of [p, p + n) (a range inside this mapping) from the process's resident set
  // (madvise MADV_DONTNEED; rounded out to whole pages, which is harmless for a read-only file
  // mapping). The bytes stay readable: a later access faults them back in from the file. For
  // streaming through a model larger than memory. Ranges outside the mapping are ignored.
  void release_pages(const void* p, uint64_t n) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace elutq
