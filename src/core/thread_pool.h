// One persistent pool of worker threads. The calling thread works too, so a pool of n threads
// starts n - 1 workers. Work is handed out as index ranges that the threads claim on demand (an
// atomic counter, no task queue): a thread that is late, slow or preempted by another process
// simply claims less, and the caller never waits for a worker that has not started yet. Idle
// workers spin briefly before they sleep, so back-to-back jobs (one per layer matmul in decode)
// do not pay a futex wake-up each.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace elutq {

class ThreadPool {
 public:
  // n_threads 0 means one thread per hardware core. Throws Error outside 0..max_threads() (a
  // count like 100000 is a typing mistake that would start that many threads).
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(slot, begin, end) for every slot in [0, size()) over a split of [0, n) into size()
  // ranges of near-equal length (a range may be empty). Each slot runs exactly once, on whichever
  // pool thread claims it first (so per-slot scratch indexed by `slot` is never shared by two
  // concurrent calls). Returns when all are done. Not reentrant.
  void run(int64_t n, const std::function<void(int slot, int64_t begin, int64_t end)>& fn);

  // Runs fn(i) for every i in [0, n), ranges split as in run().
  void parallel_for(int64_t n, const std::function<void(int64_t i)>& fn);

  // Runs fn(slot) once for every slot in [0, size()), as in run().
  void on_each_thread(const std::function<void(int slot)>& fn);

  // Runs fn(begin, end) over [0, n) cut into pieces of `grain` indices (the last may be shorter),
  // handed out one at a time to whichever thread is free: balances threads that are slowed down by
  // other processes. Pieces are claimed in increasing order.
  void parallel_chunks(int64_t n, int64_t grain,
                       const std::function<void(int64_t begin, int64_t end)>& fn);

 private:
  // Runs job(s) for every s in [0, slots), claimed on demand by all threads; returns when all ran.
  void dispatch(int64_t slots, const std::function<void(int64_t)>& job);
  void claim_and_run();
  void worker_loop();

  int n_threads_;
  std::vector<std::thread> workers_;

  // The current job. Written only while no worker is registered in active_ and open_ is false;
  // read by a worker only after it registered and saw open_ true (see dispatch()).
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t slots_ = 0;
  std::atomic<int64_t> next_{0};   // next unclaimed slot
  std::atomic<int64_t> done_{0};   // slots finished
  std::atomic<int> active_{0};     // workers inside the claim loop
  std::atomic<bool> open_{false};  // a job is published
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};
  std::mutex mu_;
  std::condition_variable wake_cv_;
};

// Number of hardware threads, at least 1.
int hardware_threads();

// The most threads a pool takes: 4 per hardware thread, at least 64. Past the core count threads
// only share cores, so more than that is a mistake, not a setting.
int max_threads();

// n itself if 0 <= n <= max_threads(); otherwise throws Error naming the range (the -t flag's
// message: every tool's thread count goes through it or through ThreadPool).
int checked_thread_count(int n);

}  // namespace elutq
