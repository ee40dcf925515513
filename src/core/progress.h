// A one-line progress bar with rate and ETA on stderr, redrawn in place on a terminal and printed
// every few seconds otherwise (logs stay readable). Silent when quiet is set.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace elutq {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool quiet = false);
  ~Progress();  // finishes the line if finish() was not called

  // Sets the count done so far and an optional short status (e.g. "ppl 12.34" or "blk 3 attn_q").
  void update(int64_t done, const std::string& status = "");
  void finish(const std::string& status = "");

 private:
  void draw(bool final);

  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  std::string status_;
  bool quiet_;
  bool tty_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

// "1h02m", "3m05s", "12s".
std::string format_duration(double seconds);

}  // namespace elutq
