// SPDX-License-Identifier: Apache-2.0
#include "hub/app/leader_elector.hpp"

#include "shared/common/log.hpp"
#include "shared/common/util.hpp"

namespace kflex::hub {

LeaderElector::LeaderElector(std::unique_ptr<LeaderElection> election, Leadership& lead, LeadOptions options)
    : election_(std::move(election)), lead_(lead), options_(options) {}

LeaderElector::~LeaderElector() { stop(); }

void LeaderElector::start() {
  thread_ = std::thread([this] {
    setThreadName("leader");
    run();
  });
}

void LeaderElector::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) {
    thread_.join();
  }
}

void LeaderElector::run() {
  using Clock = std::chrono::steady_clock;
  Clock::time_point renewed{};
  bool failing = false;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    auto term = election_->campaign();
    auto now = Clock::now();
    if (term) {
      if (failing) {
        log::info("the leader election reaches the datastore again");
        failing = false;
      }
      if (term.value() != 0) {
        renewed = now;
      }
      if (term.value() != lead_.term()) {
        if (term.value() != 0) {
          log::info("this replica leads the controllers", {{"term", std::to_string(term.value())}});
        } else if (lead_.leading()) {
          log::warn("this replica no longer leads the controllers: another replica took the lead");
        }
        lead_.set(term.value());
      }
    } else {
      if (!failing) {
        log::warn("the leader election cannot reach the datastore; retrying", {{"error", term.error().message}});
        failing = true;
      }
      // Before another replica could take the lead (a lease after the last renewal), this one
      // lets it go: two leaders never act at once, even on their own clocks.
      if (lead_.leading() && now - renewed >= options_.lease - options_.renew) {
        log::warn("this replica no longer leads the controllers: it could not renew its lead");
        lead_.set(0);
      }
    }
    lock.lock();
    cv_.wait_for(lock, options_.renew, [&] { return stopping_; });
  }
  lock.unlock();
  if (lead_.leading()) {
    lead_.set(0);
    election_->resign();
    log::info("gave up the controllers' lead (stopping)");
  }
}

}  // namespace kflex::hub
