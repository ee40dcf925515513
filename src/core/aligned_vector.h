// std::vector whose storage starts on a 64-byte cache-line boundary.
//
// Why it exists: the LUT kernels load activation tables and output rows 64 bytes at a time.
// A plain std::vector of a small type is only 16-byte aligned (glibc serves large blocks from
// mmap with a 16-byte header), so every such load straddled two cache lines; aligning them made
// the AVX-512 prefill GEMM 1.2-1.5x faster (docs/RESULTS.md, "Aligned activation tables").
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace elutq {

inline constexpr std::size_t kCacheLineBytes = 64;

template <class T>
struct CacheAlignedAllocator {
  using value_type = T;
  CacheAlignedAllocator() = default;
  template <class U>
  CacheAlignedAllocator(const CacheAlignedAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kCacheLineBytes)));
  }
  void deallocate(T* p, std::size_t) noexcept {
    ::operator delete(p, std::align_val_t(kCacheLineBytes));
  }
  template <class U>
  bool operator==(const CacheAlignedAllocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const CacheAlignedAllocator<U>&) const noexcept { return false; }
};

template <class T>
using AlignedVector = std::vector<T, CacheAlignedAllocator<T>>;

}  // namespace elutq
