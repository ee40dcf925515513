// A file that appears under its name whole or not at all. Bytes go to a temporary beside it
// (PATH.tmpPID); commit() flushes it to disk and renames it over PATH. Nothing half-written is
// left behind: the temporary is removed by the destructor (an error unwinding), by a signal
// handler on SIGINT / SIGTERM / SIGHUP (Ctrl-C, kill), and, after a SIGKILL or a power loss, by
// the next AtomicFile for the same PATH (temporaries whose process is gone).
//
//   AtomicFile f("out.gguf");   // throws Error if out.gguf cannot be written
//   f.write(bytes, n);          // ... as often as needed
//   f.commit();                 // out.gguf now holds exactly what was written
//
// Replacing an existing file keeps its permission bits; an existing file without write
// permission is refused (as `>` in a shell refuses it), so a file made read-only stays intact.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

namespace elutq {

class AtomicFile {
 public:
  // Checks the path (check_output_path), removes stale temporaries of it, creates the temporary.
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Appends n bytes (buffered). Throws Error naming the temporary when the disk refuses them.
  void write(const void* data, size_t n);
  // Flushes, fsyncs and renames the temporary over the path. Throws Error on failure (the
  // temporary is then removed by the destructor).
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }

 private:
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
  int slot_ = -1;  // this temporary's entry in the signal handler's list
  bool committed_ = false;
};

// Throws Error (starting with `what`, e.g. "OUT") unless a file can be written at `path`: not
// empty, not a directory, its folder exists, and an existing file there is writable. For tools to
// call before hours of work, so a bad name fails at once.
void check_output_path(const std::string& path, const std::string& what);

// Removes PATH.tmpPID files whose process no longer runs (left by a killed writer). Returns how
// many were removed.
int remove_stale_temporaries(const std::string& path);

}  // namespace elutq
