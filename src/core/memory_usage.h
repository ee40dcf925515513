// How much memory this process uses, and sizes written by people ("512M", "1.5GiB"). The
// quantizer's --mem-budget is checked against the resident set size (RSS), which counts both
// heap pages and the mmap'd model-file pages the process has touched.
#pragma once

#include <cstdint>
#include <string>

namespace elutq {

// Current resident set size in bytes (VmRSS of /proc/self/status); 0 where it cannot be read.
uint64_t current_rss_bytes();
// Peak resident set size in bytes (VmHWM of /proc/self/status, else getrusage's ru_maxrss).
uint64_t peak_rss_bytes();

// Memory the kernel estimates is available to start new work without swapping (MemAvailable of
// /proc/meminfo); 0 where unknown.
uint64_t available_memory_bytes();

// Bytes of this process's anonymous memory backed by transparent huge pages now (AnonHugePages
// of /proc/self/smaps_rollup); 0 where unknown. `elutq bench --synthetic` reports it with
// ELUTQ_HUGE_PAGES=1 (core/huge_page_buffer.h).
uint64_t anon_huge_page_bytes();

// Gives memory the allocator holds but no longer uses back to the OS (glibc malloc_trim), so the
// resident set of a long streaming run follows what it really uses. No-op elsewhere.
void return_free_heap_to_os();

// Parses a byte size: a non-negative number (decimals allowed) with an optional unit, case
// insensitive: B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB. Units are binary (K = 1024) whichever
// spelling is used, as memory budgets usually are. "512M", "2G", "1.5GiB", "1073741824".
// Throws Error naming the value and the accepted forms on anything else (empty, negative,
// unknown unit, overflow).
uint64_t parse_byte_size(const std::string& text);

// "1.50 GiB", "312.0 MiB", "900 B": for reports.
std::string format_byte_size(uint64_t bytes);

}  // namespace elutq
