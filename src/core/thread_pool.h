// One persistent pool of worker threads. The calling thread works too, so a pool of n threads
// starts n - 1 workers. Work is handed out as contiguous index ranges; there is no task queue.
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
  // n_threads <= 0 means one thread per hardware core.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(thread_index, begin, end) on every thread over a split of [0, n) into size() ranges of
  // near-equal length (a range may be empty). Returns when all are done. Not reentrant.
  void run(int64_t n, const std::function<void(int thread, int64_t begin, int64_t end)>& fn);

  // Runs fn(i) for every i in [0, n), ranges split as in run().
  void parallel_for(int64_t n, const std::function<void(int64_t i)>& fn);

  // Runs fn(thread_index) once on every thread (for work that splits itself by thread index).
  void on_each_thread(const std::function<void(int thread)>& fn);

 private:
  void worker_loop(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

// Number of hardware threads, at least 1.
int hardware_threads();

}  // namespace elutq
