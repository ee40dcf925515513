// Resident-set-size queries and byte-size parsing; see memory_usage.h.
#include "core/memory_usage.h"

#include <sys/resource.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "core/error.h"

namespace elutq {
namespace {

// Value in bytes of a "Key:   1234 kB" line of a /proc file, or 0 if absent.
uint64_t proc_kb(const char* path, const char* key) {
  std::ifstream in(path);
  std::string line;
  const size_t klen = std::strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, klen, key) == 0 && line.size() > klen && line[klen] == ':') {
      return std::strtoull(line.c_str() + klen + 1, nullptr, 10) * 1024ull;
    }
  }
  return 0;
}

}  // namespace

uint64_t current_rss_bytes() { return proc_kb("/proc/self/status", "VmRSS"); }

uint64_t peak_rss_bytes() {
  if (uint64_t v = proc_kb("/proc/self/status", "VmHWM")) return v;
  struct rusage ru {};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
#ifdef __APPLE__
  return uint64_t(ru.ru_maxrss);  // bytes on macOS
#else
  return uint64_t(ru.ru_maxrss) * 1024ull;  // kilobytes on Linux
#endif
}

uint64_t available_memory_bytes() { return proc_kb("/proc/meminfo", "MemAvailable"); }

uint64_t anon_huge_page_bytes() { return proc_kb("/proc/self/smaps_rollup", "AnonHugePages"); }

void return_free_heap_to_os() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

uint64_t parse_byte_size(const std::string& text) {
  auto bad = [&](const char* why) {
    fail("bad size '", text, "': ", why,
         "; write a number with an optional unit, e.g. 512M, 2G, 1.5GiB or 1073741824 (units "
         "B, K, M, G, T with optional B or iB; all are powers of 1024)");
  };
  size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  const size_t num_begin = i;
  bool digits = false, dot = false;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (std::isdigit(static_cast<unsigned char>(c))) {
      digits = true;
    } else if (c == '.' && !dot) {
      dot = true;
    } else {
      break;
    }
  }
  if (!digits) bad(text.empty() ? "it is empty" : "it does not start with a number");
  const double value = std::strtod(text.substr(num_begin, i - num_begin).c_str(), nullptr);
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  std::string unit;
  for (; i < text.size(); ++i) unit += char(std::tolower(static_cast<unsigned char>(text[i])));
  while (!unit.empty() && std::isspace(static_cast<unsigned char>(unit.back()))) unit.pop_back();
  double mult = 0;
  if (unit.empty() || unit == "b") {
    mult = 1;
  } else {
    static const char kPrefixes[] = "kmgt";
    const char* p = std::strchr(kPrefixes, unit[0]);
    const std::string rest = unit.substr(1);
    if (!p || !(rest.empty() || rest == "b" || rest == "ib")) bad("unknown unit");
    mult = std::pow(1024.0, double(p - kPrefixes + 1));
  }
  const double bytes = std::floor(value * mult);
  if (!(bytes < 1.8e19)) bad("it is too large");
  return uint64_t(bytes);
}

std::string format_byte_size(uint64_t bytes) {
  static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  char buf[64];
  if (bytes < 1024) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
    return buf;
  }
  double v = double(bytes) / 1024.0;
  int u = 0;
  while (v >= 1024.0 && u < 3) {
    v /= 1024.0;
    ++u;
  }
  std::snprintf(buf, sizeof buf, v < 10 ? "%.2f %s" : "%.1f %s", v, kUnits[u]);
  return buf;
}

}  // namespace elutq
