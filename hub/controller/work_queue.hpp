// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "shared/net/asio.hpp"

namespace kflex::hub {

/// How long a key that keeps failing waits before it is tried again.
struct BackoffOptions {
  std::chrono::milliseconds base{5};     ///< After the first failure (client-go's default).
  std::chrono::milliseconds cap{1000000};  ///< Never longer than this (client-go's 1000 s).
};

/**
 * Per-key exponential backoff, as client-go's ItemExponentialFailureRateLimiter: the n-th failure
 * in a row of a key waits base * 2^(n-1), at most cap; forget() starts the key over.
 * Thread safety: every method may be called from any thread.
 */
class KeyBackoff {
 public:
  explicit KeyBackoff(BackoffOptions options) : options_(options) {}
  /// Counts a failure of `key`; how long it waits before it is tried again.
  std::chrono::milliseconds when(const std::string& key);
  /// The failures of `key` counted since it was last forgotten.
  int failures(const std::string& key) const;
  /// Forgets the failures of `key` (it succeeded, or is gone).
  void forget(const std::string& key);

 private:
  BackoffOptions options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, int> failures_;
};

/**
 * A queue of object keys to reconcile, as client-go's workqueue (rate-limiting, delaying):
 * - coalescing: a key added while it waits in the queue is one item;
 * - never two at once: a key added while it is being processed (between get() and done()) is
 *   queued again when done() comes, never handed to a second worker meanwhile;
 * - addAfter(): a key enters the queue after a delay (of several delays for one key, the
 *   earliest wins); addRateLimited() delays by the key's KeyBackoff, forget() resets it;
 * - shutDown() wakes every waiting get(), which then returns nullopt; keys still queued or
 *   delayed are dropped (unlike client-go, which hands them out first: a hub that stops does not
 *   reconcile what is left), and later adds are ignored.
 * Delays run on asio's steady clock (a timer on the queue's executor).
 *
 * Thread safety: add(), addAfter(), addRateLimited(), forget(), done(), shutDown() and the
 * observers may be called from any thread. get() must run on the queue's executor, which must be
 * a strand (or an io_context run by one thread). The queue must outlive its pending get()s and
 * the io_context's run (its timers' handlers point at it).
 */
class WorkQueue {
 public:
  using Duration = std::chrono::steady_clock::duration;

  WorkQueue(net::any_io_executor executor, BackoffOptions backoff);
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  /// Queues `key` (unless it is queued already, or is being processed: then again once done).
  void add(const std::string& key);
  /// Queues `key` once `delay` has passed (at once when it is not positive).
  void addAfter(const std::string& key, Duration delay);
  /// Queues `key` after its backoff, counting one more failure of it.
  void addRateLimited(const std::string& key);
  /// Forgets the failures of `key`: its next addRateLimited() waits the base delay again.
  void forget(const std::string& key);
  /// Failures of `key` counted since it was last forgotten.
  int failures(const std::string& key) const;

  /// The next key to process, marked as being processed until done(); waits while the queue is
  /// empty; nullopt once the queue is shut down. Runs on the queue's executor.
  net::awaitable<std::optional<std::string>> get();
  /// Ends the processing of a key that get() returned; queues it again if it was added meanwhile.
  void done(const std::string& key);

  /// Stops the queue: waiting get()s return nullopt, queued and delayed keys are dropped.
  void shutDown();
  bool shuttingDown() const;
  /// Keys queued and not yet handed out.
  size_t size() const;
  /// Keys waiting for their delay.
  size_t delayed() const;
  /// Keys being processed.
  size_t processing() const;

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  // The rest with mu_ held.
  void addLocked(const std::string& key);
  void wakeOne();
  /// Moves the keys whose delay has passed into the queue.
  void promoteDue(TimePoint now);
  // On the executor.
  void armTimer();
  void onTimer();

  net::any_io_executor executor_;
  KeyBackoff backoff_;
  mutable std::mutex mu_;
  std::deque<std::string> queue_;               // in the order added
  std::unordered_set<std::string> dirty_;       // queued, or added while processing
  std::unordered_set<std::string> processing_;  // handed out, done() not yet called
  std::multimap<TimePoint, std::string> delayed_;           // by when due
  std::unordered_map<std::string, TimePoint> delayed_at_;   // key -> when due
  std::vector<std::shared_ptr<net::steady_timer>> waiters_;  // get()s waiting for a key
  bool shutting_down_ = false;
  // The delay timer (the executor only) and the time it waits for (mu_).
  net::steady_timer timer_;
  TimePoint armed_ = TimePoint::max();
};

}  // namespace kflex::hub
