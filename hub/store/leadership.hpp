// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>

namespace kflex::hub {

/**
 * Whether this hub replica leads the controllers, and under which term (docs/dev/replicas.md).
 * Set by the leader election; read by the controllers (they reconcile only while leading) and by
 * the API client they write through, whose writes carry the term as a fence: the store refuses a
 * write whose term is no longer the database's, so a deposed leader's late write fails.
 * Thread safety: every method from any thread; observers run on the thread that calls set().
 */
class Leadership {
 public:
  /// The term led, 0 when another replica leads (or none does yet).
  int64_t term() const { return term_.load(std::memory_order_acquire); }
  bool leading() const { return term() != 0; }
  /// A new term (0: no longer leading); observers hear of a change.
  void set(int64_t term) {
    std::lock_guard lock(mutex_);
    if (term_.exchange(term, std::memory_order_acq_rel) == term) {
      return;
    }
    for (auto& [_, fn] : observers_) {
      fn(term);
    }
  }
  /// Calls `fn` with every new term; returns an id for unobserve().
  uint64_t observe(std::function<void(int64_t term)> fn) const {
    std::lock_guard lock(mutex_);
    observers_.emplace(next_id_, std::move(fn));
    return next_id_++;
  }
  void unobserve(uint64_t id) const {
    std::lock_guard lock(mutex_);
    observers_.erase(id);
  }

 private:
  std::atomic<int64_t> term_{0};
  // (Observing is not leading: a const Leadership may be observed.)
  mutable std::mutex mutex_;
  mutable std::map<uint64_t, std::function<void(int64_t)>> observers_;
  mutable uint64_t next_id_ = 1;
};

}  // namespace kflex::hub
