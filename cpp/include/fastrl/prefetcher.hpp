// Background prefetch: one worker thread runs the caller's fill job (typically "sample the next
// batch into slot k of caller-owned, e.g. pinned, memory") while the caller trains on the batch
// it already has.
//
// One job is in flight at most: request(slot, param) hands it to the worker, wait() blocks until
// it has finished and rethrows what it threw. The caller decides the order of jobs and of its own
// buffer writes (call wait() before a write to make the sampled batch independent of timing).
// The worker never touches Python; the fill must do its own locking (ReplayBuffer::sample does).
//
// Costs: request and wait O(1) plus a thread hand-off (a few microseconds). Thread safety: request,
// wait and close are for one controlling thread.
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

namespace fastrl {

class Prefetcher {
 public:
  using Fill = std::function<void(int slot, double param)>;

  explicit Prefetcher(Fill fill) : fill_(std::move(fill)), worker_([this] { run(); }) {}
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;
  ~Prefetcher() { close(); }

  // Starts fill(slot, param) on the worker. std::logic_error if a job is in flight or closed.
  void request(int slot, double param) {
    std::lock_guard<std::mutex> g(mu_);
    if (stop_) throw std::logic_error("the prefetcher is closed");
    if (pending_ || running_) throw std::logic_error("a prefetch is already in flight: wait() for it first");
    slot_ = slot;
    param_ = param;
    pending_ = true;
    cv_.notify_all();
  }

  // Blocks until no job is in flight; rethrows (once) the exception the last job threw.
  void wait() {
    std::unique_lock<std::mutex> g(mu_);
    cv_.wait(g, [this] { return !pending_ && !running_; });
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

  // Finishes the job in flight (its error is dropped) and stops the worker. Idempotent.
  void close() {
    {
      std::unique_lock<std::mutex> g(mu_);
      cv_.wait(g, [this] { return !pending_ && !running_; });
      stop_ = true;
      cv_.notify_all();
    }
    if (worker_.joinable()) worker_.join();
  }

 private:
  void run() {
    std::unique_lock<std::mutex> g(mu_);
    for (;;) {
      cv_.wait(g, [this] { return pending_ || stop_; });
      if (!pending_) return;  // stop_ with nothing to do
      pending_ = false;
      running_ = true;
      const int slot = slot_;
      const double param = param_;
      g.unlock();
      std::exception_ptr err;
      try {
        fill_(slot, param);
      } catch (...) {
        err = std::current_exception();
      }
      g.lock();
      running_ = false;
      error_ = err;
      cv_.notify_all();
    }
  }

  Fill fill_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false, running_ = false, stop_ = false;
  int slot_ = 0;
  double param_ = 0.0;
  std::exception_ptr error_;
  std::thread worker_;  // last: started once everything above is initialised
};

}  // namespace fastrl
