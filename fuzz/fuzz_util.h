// Helpers shared by the libFuzzer targets (fuzz/README.md): scratch files for entry points that
// take a path, and cutting one fuzz input into the several inputs a target needs.
//
// Each target calls the library as the tools do and catches elutq::Error, the expected outcome for
// bad input. Anything else is a finding: a crash, a sanitizer report, any other exception (which
// escapes and aborts), a hang (-timeout) or a memory blow-up (-rss_limit_mb / -malloc_limit_mb).
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace elutq::fuzz {

// Separates the parts of an input that carries several files or texts (a tokenizer.json, its
// tokenizer_config.json and a text to encode, ...). In the dictionaries, so mutations insert it.
inline constexpr std::string_view kSep = "\n@@@@\n";

// The input cut at each kSep, at most max_parts parts (the last one keeps any further kSep).
inline std::vector<std::string_view> split_input(const uint8_t* data, size_t size,
                                                 size_t max_parts) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t p = rest.find(kSep);
    if (p == std::string_view::npos) break;
    parts.push_back(rest.substr(0, p));
    rest.remove_prefix(p + kSep.size());
  }
  parts.push_back(rest);
  return parts;
}

// A folder of this process's own under $ELUTQ_FUZZ_SCRATCH (scripts/fuzz.sh points it into its
// work folder), else /dev/shm (memory; /tmp where it is missing), removed at a normal exit, where
// a target writes the files it hands to path-taking entry points. The process id in its name
// keeps libFuzzer's -jobs / -fork workers apart.
class Scratch {
 public:
  static Scratch& get() {
    static Scratch s;
    return s;
  }
  const std::string& dir() const { return dir_; }
  // Writes bytes to dir()/name (replacing it) and returns the path.
  std::string write(const std::string& name, std::string_view bytes) const {
    const std::string path = dir_ + "/" + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();  // the harness itself is broken: report it
    if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size())
      std::abort();
    std::fclose(f);
    return path;
  }
  void remove(const std::string& name) const { ::unlink((dir_ + "/" + name).c_str()); }

 private:
  Scratch() {
    const char* base = std::getenv("ELUTQ_FUZZ_SCRATCH");
    if (!base || !*base) base = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    dir_ = std::string(base) + "/elutq-fuzz-" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string dir_;
};

// Reads little-endian integers from the front of an input; zero once it is used up.
class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  uint8_t u8() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  uint16_t u16() { return uint16_t(u8() | (uint16_t(u8()) << 8)); }
  uint32_t u32() { return uint32_t(u16()) | (uint32_t(u16()) << 16); }
  const uint8_t* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  const uint8_t* p_;
  size_t n_;
};

// Returns true if a and b hold the same floats bit for bit.
inline bool same_bits(const float* a, const float* b, size_t n) {
  return n == 0 || std::memcmp(a, b, n * sizeof(float)) == 0;
}

// What a target does with the Error bad input ends in: nothing, or print it when
// ELUTQ_FUZZ_VERBOSE is set (to see why a seed is refused: ELUTQ_FUZZ_VERBOSE=1 fuzz_gguf FILE).
inline void expected(const std::exception& e) {
  static const bool verbose = std::getenv("ELUTQ_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "elutq fuzz: Error: %s\n", e.what());
}

// Aborts with a message: a property the library promises does not hold for this input.
[[noreturn]] inline void property_failed(const char* what) {
  std::fprintf(stderr, "elutq fuzz: property violated: %s\n", what);
  std::abort();
}

}  // namespace elutq::fuzz
