// A zero-filled, move-only byte buffer for large read-mostly data (packed weights, the bandwidth
// probe's buffer) that asks the kernel for transparent huge pages.
//
// Why: decode streams every weight byte once per token. With 4 KiB pages a 7B model spans ~10^6
// pages, and the page walks and lost prefetch at each 4 KiB boundary cost ~10% of GEMV bandwidth on
// the hosts measured (docs/RESULTS.md). Linux gives 2 MiB pages to anonymous memory that is
// 2 MiB-aligned and madvise(MADV_HUGEPAGE)d even when THP is in its default "madvise" mode.
// Elsewhere (or if mmap fails) it falls back to ordinary zeroed heap memory; the contents and the
// API are the same either way, only the speed differs. ELUTQ_HUGE_PAGES=0 in the environment turns
// the huge-page advice off (to measure what it is worth).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace elutq {

// The system's transparent-huge-page mode: "always", "madvise" or "never" (the bracketed word of
// /sys/kernel/mm/transparent_hugepage/enabled), "" where there is no such file.
std::string transparent_huge_page_mode();
// Bytes of this process's anonymous memory backed by huge pages now (AnonHugePages summed over
// /proc/self/smaps_rollup); 0 where unknown. `elutq bench` reports it next to the weight bytes.
uint64_t anon_huge_page_bytes();

class HugePageBuffer {
 public:
  HugePageBuffer() = default;
  explicit HugePageBuffer(size_t bytes);  // throws Error if the memory cannot be had
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

  uint8_t* data_ = nullptr;  // 2 MiB-aligned inside the mapping when mmap'ed
  size_t size_ = 0;
  void* mapping_ = nullptr;  // the whole mmap'ed range (nullptr: heap memory)
  size_t mapping_bytes_ = 0;
};

}  // namespace elutq
