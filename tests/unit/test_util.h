// Helpers shared by the unit tests: where the shared data lives, temporary files, running the CLI.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

#include "core/error.h"

namespace elutq::test {

// Directory of the shared data (../shared beside the project, or $ELUTQ_SHARED).
inline std::string shared_dir() {
  if (const char* e = std::getenv("ELUTQ_SHARED")) return e;
  return std::string(ELUTQ_SOURCE_DIR) + "/../shared";
}

// Full path of a file under shared/, or "" if it is absent.
inline std::string shared_file(const std::string& rel) {
  std::string p = shared_dir() + "/" + rel;
  return std::filesystem::exists(p) ? p : "";
}

// SmolLM2-135M-Instruct Q4_1 GGUF ($ELUTQ_SMOLLM2, or the cache scripts/fetch_smollm2.sh fills).
inline std::string smollm2_path() {
  if (const char* e = std::getenv("ELUTQ_SMOLLM2")) return std::filesystem::exists(e) ? e : "";
  const char* home = std::getenv("HOME");
  std::string p =
      std::string(home ? home : "") + "/.cache/elutq/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  return std::filesystem::exists(p) ? p : "";
}

// The message of the Error f throws, "" if it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A fresh empty directory for one test, removed by the destructor.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "elutq-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// What a shell command printed on stdout, and its exit status (-1 if it did not exit normally).
struct CommandResult {
  int code;
  std::string out;
};

// Runs a shell command through popen; the command itself says where stderr goes (2>&1 to capture).
inline CommandResult run_command(const std::string& cmd) {
  CommandResult r{-1, ""};
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) r.out.append(buf, n);
  const int st = pclose(f);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

#ifdef ELUTQ_CLI_PATH  // the host test build, which builds the CLI too
// Runs the elutq CLI with the given arguments, stderr merged into the captured output.
inline CommandResult run_elutq(const std::string& args) {
  return run_command(std::string(ELUTQ_CLI_PATH) + " " + args + " 2>&1");
}
#endif

}  // namespace elutq::test

// Skips the current test with a message naming the missing file.
#define ELUTQ_REQUIRE_FILE(path, what)                           \
  do {                                                           \
    if ((path).empty())                                          \
      GTEST_SKIP() << what << " not found; set ELUTQ_SHARED or " \
                   << "run scripts/fetch_smollm2.sh to enable";  \
  } while (0)
