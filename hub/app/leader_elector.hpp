// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "hub/store/leadership.hpp"
#include "hub/store/store_backend.hpp"

namespace kflex::hub {

/// The timings of the controllers' lead (docs/dev/replicas.md).
struct LeadOptions {
  std::chrono::seconds lease{10};  ///< A lead not renewed for this long may be taken.
  std::chrono::seconds renew{2};   ///< How often the leader renews and the others try.
};

/**
 * Keeps this replica in the election for the controllers' lead and tells `lead` the outcome: on a
 * thread of its own (the election's statements block), a campaign every `renew`. A leader that
 * cannot renew steps down before its lease could pass to another replica (lease - renew after its
 * last renewal); stop() gives the lead up so another replica takes it at once.
 * Thread safety: start() and stop() from one thread.
 */
class LeaderElector {
 public:
  LeaderElector(std::unique_ptr<LeaderElection> election, Leadership& lead, LeadOptions options);
  ~LeaderElector();
  void start();
  void stop();

 private:
  void run();

  std::unique_ptr<LeaderElection> election_;
  Leadership& lead_;
  LeadOptions options_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace kflex::hub
