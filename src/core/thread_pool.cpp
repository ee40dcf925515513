// The persistent thread pool (see thread_pool.h). Synchronisation: a job is published by setting
// its fields, then open_ = true, then bumping generation_. A worker registers in active_ before it
// looks at open_; the caller, once every slot is done, sets open_ = false and waits until active_
// is 0 before it touches the fields again. All of these atomics are sequentially consistent, so a
// worker either sees open_ false (and touches nothing) or is seen by the caller in active_.
#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "core/error.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

namespace elutq {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// How long an idle worker polls for the next job before it sleeps on the condition variable:
// longer than the gap between two matmuls of one decode step, short enough not to hold a core
// that other processes need.
constexpr auto kSpinTime = std::chrono::microseconds(300);

}  // namespace

int hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

int max_threads() { return std::max(64, 4 * hardware_threads()); }

int checked_thread_count(int n) {
  if (n < 0 || n > max_threads())
    throw Error("thread count " + std::to_string(n) + " is out of range: give -t 1.." +
                std::to_string(max_threads()) + " (this machine has " +
                std::to_string(hardware_threads()) +
                " hardware threads), or 0 for one per hardware thread");
  return n;
}

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(checked_thread_count(n_threads) == 0 ? hardware_threads() : n_threads) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  wake_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::claim_and_run() {
  for (int64_t s = next_.fetch_add(1); s < slots_; s = next_.fetch_add(1)) {
    (*job_)(s);
    done_.fetch_add(1);
  }
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    // Wait for a new generation: poll first, then sleep.
    const auto spin_until = std::chrono::steady_clock::now() + kSpinTime;
    int polls = 0;
    while (generation_.load() == seen && !stop_.load()) {
      cpu_relax();
      if (++polls % 64 != 0 || std::chrono::steady_clock::now() < spin_until) continue;
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1);
      wake_cv_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
      sleepers_.fetch_sub(1);
    }
    if (stop_.load()) return;
    seen = generation_.load();
    active_.fetch_add(1);
    if (open_.load()) claim_and_run();
    active_.fetch_sub(1);
  }
}

void ThreadPool::dispatch(int64_t slots, const std::function<void(int64_t)>& job) {
  if (slots <= 0) return;
  if (n_threads_ == 1 || slots == 1) {
    for (int64_t s = 0; s < slots; ++s) job(s);
    return;
  }
  job_ = &job;
  slots_ = slots;
  next_.store(0);
  done_.store(0);
  open_.store(true);
  generation_.fetch_add(1);
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    wake_cv_.notify_all();
  }
  claim_and_run();
  // Slots still running on workers: they are running, so poll (yielding now and then in case the
  // worker was preempted by another process on this core).
  for (int polls = 0; done_.load() < slots; ++polls) {
    cpu_relax();
    if (polls % 256 == 255) std::this_thread::yield();
  }
  open_.store(false);
  for (int polls = 0; active_.load() != 0; ++polls) {
    cpu_relax();
    if (polls % 256 == 255) std::this_thread::yield();
  }
  job_ = nullptr;
}

void ThreadPool::on_each_thread(const std::function<void(int)>& fn) {
  const std::function<void(int64_t)> job = [&fn](int64_t s) { fn(int(s)); };
  dispatch(n_threads_, job);
}

void ThreadPool::run(int64_t n, const std::function<void(int, int64_t, int64_t)>& fn) {
  const int t = n_threads_;
  const std::function<void(int64_t)> job = [&](int64_t i) {
    const int64_t begin = n * i / t;
    const int64_t end = n * (i + 1) / t;
    fn(int(i), begin, end);
  };
  dispatch(t, job);
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
  run(n, [&](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) fn(i);
  });
}

void ThreadPool::parallel_chunks(int64_t n, int64_t grain,
                                 const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  const int64_t pieces = (n + grain - 1) / grain;
  const std::function<void(int64_t)> job = [&](int64_t p) {
    fn(p * grain, std::min(n, (p + 1) * grain));
  };
  dispatch(pieces, job);
}

}  // namespace elutq
