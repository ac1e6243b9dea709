// SPDX-License-Identifier: Apache-2.0
#include "hub/controller/work_queue.hpp"

#include <algorithm>

namespace kflex::hub {

std::chrono::milliseconds KeyBackoff::when(const std::string& key) {
  int n = 0;
  {
    std::lock_guard lock(mu_);
    n = failures_[key]++;
  }
  // base * 2^n without overflow: past the cap's doubling count, it is the cap.
  auto delay = options_.base;
  for (int i = 0; i < n && delay < options_.cap; ++i) {
    delay *= 2;
  }
  return std::min(delay, options_.cap);
}

int KeyBackoff::failures(const std::string& key) const {
  std::lock_guard lock(mu_);
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

void KeyBackoff::forget(const std::string& key) {
  std::lock_guard lock(mu_);
  failures_.erase(key);
}

WorkQueue::WorkQueue(net::any_io_executor executor, BackoffOptions backoff)
    : executor_(std::move(executor)), backoff_(backoff), timer_(executor_) {}

void WorkQueue::add(const std::string& key) {
  std::lock_guard lock(mu_);
  addLocked(key);
}

void WorkQueue::addLocked(const std::string& key) {
  if (shutting_down_ || !dirty_.insert(key).second) {
    return;  // stopped, or queued already (or to be queued again once processed)
  }
  if (processing_.count(key) > 0) {
    return;  // done() queues it
  }
  queue_.push_back(key);
  wakeOne();
}

void WorkQueue::wakeOne() {
  if (waiters_.empty()) {
    return;
  }
  // get() registers its timer and starts waiting within one turn of the executor, so a cancel
  // posted there always finds the wait started.
  auto waiter = std::move(waiters_.back());
  waiters_.pop_back();
  net::post(executor_, [waiter] { waiter->cancel(); });
}

void WorkQueue::addAfter(const std::string& key, Duration delay) {
  if (delay <= Duration::zero()) {
    add(key);
    return;
  }
  auto due = std::chrono::steady_clock::now() + delay;
  bool rearm = false;
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) {
      return;
    }
    if (auto it = delayed_at_.find(key); it != delayed_at_.end()) {
      if (it->second <= due) {
        return;  // due sooner already
      }
      auto [first, last] = delayed_.equal_range(it->second);
      for (auto d = first; d != last; ++d) {
        if (d->second == key) {
          delayed_.erase(d);
          break;
        }
      }
      it->second = due;
    } else {
      delayed_at_.emplace(key, due);
    }
    delayed_.emplace(due, key);
    rearm = due < armed_;
  }
  if (rearm) {
    net::post(executor_, [this] { armTimer(); });
  }
}

void WorkQueue::addRateLimited(const std::string& key) { addAfter(key, backoff_.when(key)); }

void WorkQueue::forget(const std::string& key) { backoff_.forget(key); }

int WorkQueue::failures(const std::string& key) const { return backoff_.failures(key); }

net::awaitable<std::optional<std::string>> WorkQueue::get() {
  while (true) {
    std::shared_ptr<net::steady_timer> waiter;
    {
      std::lock_guard lock(mu_);
      if (shutting_down_) {
        co_return std::nullopt;
      }
      if (!queue_.empty()) {
        std::string key = std::move(queue_.front());
        queue_.pop_front();
        dirty_.erase(key);
        processing_.insert(key);
        co_return key;
      }
      waiter = std::make_shared<net::steady_timer>(executor_, net::steady_timer::time_point::max());
      waiters_.push_back(waiter);
    }
    co_await waiter->async_wait(net::as_tuple(net::use_awaitable));
  }
}

void WorkQueue::done(const std::string& key) {
  std::lock_guard lock(mu_);
  processing_.erase(key);
  if (!shutting_down_ && dirty_.count(key) > 0) {
    queue_.push_back(key);  // added while it was processed
    wakeOne();
  }
}

void WorkQueue::shutDown() {
  std::vector<std::shared_ptr<net::steady_timer>> waiters;
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) {
      return;
    }
    shutting_down_ = true;
    queue_.clear();
    dirty_.clear();
    delayed_.clear();
    delayed_at_.clear();
    waiters.swap(waiters_);
  }
  net::post(executor_, [this, waiters = std::move(waiters)] {
    for (const auto& w : waiters) {
      w->cancel();
    }
    timer_.cancel();
  });
}

bool WorkQueue::shuttingDown() const {
  std::lock_guard lock(mu_);
  return shutting_down_;
}

size_t WorkQueue::size() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

size_t WorkQueue::delayed() const {
  std::lock_guard lock(mu_);
  return delayed_.size();
}

size_t WorkQueue::processing() const {
  std::lock_guard lock(mu_);
  return processing_.size();
}

void WorkQueue::promoteDue(TimePoint now) {
  while (!delayed_.empty() && delayed_.begin()->first <= now) {
    std::string key = std::move(delayed_.begin()->second);
    delayed_.erase(delayed_.begin());
    delayed_at_.erase(key);
    addLocked(key);
  }
}

void WorkQueue::armTimer() {
  TimePoint next;
  {
    std::lock_guard lock(mu_);
    if (shutting_down_ || delayed_.empty()) {
      return;
    }
    next = delayed_.begin()->first;
    if (next >= armed_) {
      return;  // a wait for then, or sooner, is on
    }
    armed_ = next;
  }
  // (Replaces a later wait: that one completes as aborted and does nothing.)
  timer_.expires_at(next);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec != net::error::operation_aborted) {
      onTimer();
    }
  });
}

void WorkQueue::onTimer() {
  {
    std::lock_guard lock(mu_);
    armed_ = TimePoint::max();
    promoteDue(std::chrono::steady_clock::now());
  }
  armTimer();
}

}  // namespace kflex::hub
