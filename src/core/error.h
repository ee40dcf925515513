// Errors. Library code never exits or prints: it throws elutq::Error with a message that says what
// went wrong and, where we can tell, what to do next. The CLI prints it as one line and exits 1.
// Messages often quote bytes of a file (a key name, a parser's excerpt); Error escapes control
// bytes and invalid UTF-8 as \xNN, so a hostile file can neither cut a message short (a NUL) nor
// write terminal control sequences or extra lines.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace elutq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(printable_text(what)) {}

  // s with bytes below 0x20, 0x7f and bytes outside valid UTF-8 sequences written as \xNN.
  static std::string printable_text(const std::string& s);
};

// Concatenates its arguments with operator<< into an Error and throws it.
template <typename... Args>
[[noreturn]] void fail(Args&&... args);

// Throws Error(args...) unless cond holds. Use for checks on input data (files, CLI values);
// internal invariants use assert.
template <typename... Args>
inline void require(bool cond, Args&&... args) {
  if (!cond) fail(std::forward<Args>(args)...);
}

}  // namespace elutq

#include <sstream>

template <typename... Args>
[[noreturn]] void elutq::fail(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  throw Error(os.str());
}
