// A zero-filled, move-only byte buffer for large read-mostly data (packed weights, the bandwidth
// probe's buffer) that can ask the kernel for transparent huge pages.
//
// Why it exists: decode streams every weight byte once per token, and with 4 KiB pages a 7B model
// spans ~10^6 of them. Linux gives 2 MiB pages to anonymous memory that is 2 MiB-aligned and
// madvise(MADV_HUGEPAGE)d, even when THP is in its default "madvise" mode. Measured on our Intel
// host (docs/RESULTS.md, "Huge pages") it made no difference to decode beyond the machine's spread
// and tripled the time to fault the weights in, so it is off unless ELUTQ_HUGE_PAGES=1 is set;
// it stays available for hosts where TLB misses do cost. Off, or where mmap fails or on other
// systems, the memory is ordinary zeroed heap memory starting on a 64-byte boundary: the contents
// and the API are the same.
// How much memory huge pages back: anon_huge_page_bytes() in core/memory_usage.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace elutq {

// The system's transparent-huge-page mode: "always", "madvise" or "never" (the bracketed word of
// /sys/kernel/mm/transparent_hugepage/enabled), "" where there is no such file.
std::string transparent_huge_page_mode();

// True when ELUTQ_HUGE_PAGES=1 is set (read once): the default of HugePageBuffer's `huge`.
bool huge_pages_requested();

class HugePageBuffer {
 public:
  HugePageBuffer() = default;
  // `huge`: ask for huge pages (buffers of at least 2 MiB, on Linux). Throws Error if the memory
  // cannot be had.
  explicit HugePageBuffer(size_t bytes, bool huge = huge_pages_requested());
  ~HugePageBuffer();
  HugePageBuffer(HugePageBuffer&& o) noexcept;
  HugePageBuffer& operator=(HugePageBuffer&& o) noexcept;
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  void release();

  uint8_t* data_ = nullptr;  // 2 MiB-aligned inside the mapping when mmap'ed, else 64-byte
  size_t size_ = 0;
  void* heap_ = nullptr;     // the calloc'ed block data_ lies in (nullptr: mmap'ed)
  void* mapping_ = nullptr;  // the whole mmap'ed range (nullptr: heap memory)
  size_t mapping_bytes_ = 0;
};

}  // namespace elutq
