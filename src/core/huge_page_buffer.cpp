// Huge-page-backed buffers; see huge_page_buffer.h.
#include "core/huge_page_buffer.h"

#include <cstdlib>
#include <fstream>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "core/error.h"

namespace elutq {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;  // x86-64 and arm64 (4 KiB base pages) THP size
constexpr size_t kSmallPage = 4096;
constexpr size_t kLine = 64;     // what the kernels load at a time

size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }


}  // namespace

bool huge_pages_requested() {
  static const bool requested = [] {
    const char* v = std::getenv("ELUTQ_HUGE_PAGES");
    return v != nullptr && std::string(v) == "1";
  }();
  return requested;
}

std::string transparent_huge_page_mode() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  if (!std::getline(in, line)) return "";
  const size_t open = line.find('['), close = line.find(']');
  if (open == std::string::npos || close == std::string::npos || close < open) return "";
  return line.substr(open + 1, close - open - 1);
}

HugePageBuffer::HugePageBuffer(size_t bytes, bool huge) : size_(bytes) {
  if (bytes == 0) return;
#if defined(__linux__)
  // Buffers under one huge page gain nothing: keep them on the heap.
  if (huge && bytes >= kHugePage) {
    // Over-map by a huge page so a 2 MiB-aligned start exists, then trim both ends: the kernel
    // only backs an aligned 2 MiB range lying wholly inside the mapping with a huge page. The
    // tail past the last full 2 MiB stays in small pages (no resident memory wasted on padding).
    const size_t want = round_up(bytes, kSmallPage);
    const size_t span = want + kHugePage;
    void* p = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
      const uintptr_t base = reinterpret_cast<uintptr_t>(p);
      const uintptr_t start = round_up(base, kHugePage);
      if (start > base) munmap(p, start - base);
      const uintptr_t end = start + want;
      if (base + span > end) munmap(reinterpret_cast<void*>(end), base + span - end);
      mapping_ = reinterpret_cast<void*>(start);
      mapping_bytes_ = want;
      data_ = static_cast<uint8_t*>(mapping_);
#if defined(MADV_HUGEPAGE)
      // Advice only: failure (or THP off) leaves 4 KiB pages, with the same contents.
      madvise(mapping_, mapping_bytes_, MADV_HUGEPAGE);
#endif
      return;
    }
  }
#endif
  // calloc keeps the pages lazily zeroed; the start is moved to a cache-line boundary because
  // the kernels load 64 bytes at a time (large callocs come 16 bytes into an mmap'ed page).
  heap_ = std::calloc(bytes + kLine - 1, 1);
  require(heap_ != nullptr, "out of memory: cannot allocate ", bytes, " bytes");
  data_ = reinterpret_cast<uint8_t*>(round_up(reinterpret_cast<uintptr_t>(heap_), kLine));
}

void HugePageBuffer::release() {
#if defined(__linux__)
  if (mapping_ != nullptr) {
    munmap(mapping_, mapping_bytes_);
  } else {
    std::free(heap_);
  }
#else
  std::free(heap_);
#endif
  heap_ = nullptr;
  data_ = nullptr;
  size_ = 0;
  mapping_ = nullptr;
  mapping_bytes_ = 0;
}

HugePageBuffer::~HugePageBuffer() { release(); }

HugePageBuffer::HugePageBuffer(HugePageBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      heap_(std::exchange(o.heap_, nullptr)),
      mapping_(std::exchange(o.mapping_, nullptr)),
      mapping_bytes_(std::exchange(o.mapping_bytes_, 0)) {}

HugePageBuffer& HugePageBuffer::operator=(HugePageBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    heap_ = std::exchange(o.heap_, nullptr);
    mapping_ = std::exchange(o.mapping_, nullptr);
    mapping_bytes_ = std::exchange(o.mapping_bytes_, 0);
  }
  return *this;
}

}  // namespace elutq
