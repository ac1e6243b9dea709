// SPDX-License-Identifier: Apache-2.0
#include "hub/controller/controller.hpp"

#include <algorithm>
#include <optional>

#include "shared/common/log.hpp"

namespace kflex::hub {

Controller::Controller(Strand strand, ObjectStore& store, ControllerOptions options, Reconcile reconcile)
    : strand_(std::move(strand)), store_(store), options_(std::move(options)), reconcile_(std::move(reconcile)),
      queue_(strand_, options_.backoff), resync_timer_(strand_) {}

Controller::~Controller() = default;

void Controller::watch(std::string resource, EventMapper map) {
  sources_.push_back({std::move(resource), std::move(map)});
}

void Controller::relist(Relister list) { relist_ = std::move(list); }

void Controller::resync(std::chrono::milliseconds period, KeyLister keys) {
  resync_period_ = period;
  resync_keys_ = std::move(keys);
}

void Controller::spawn(net::awaitable<void> loop, const char* what) {
  net::co_spawn(strand_, std::move(loop), [name = options_.name, what](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::error("controller stopped", {{"controller", name}, {"loop", what}, {"error", ex.what()}});
      }
    }
  });
}

void Controller::start() {
  if (lead_ != nullptr) {
    lead_observer_ = lead_->observe([this](int64_t term) {
      if (term == 0) {
        return;
      }
      net::post(strand_, [this] {
        if (!stopping_) {
          log::info("controller takes over as this replica leads", {{"controller", options_.name}});
          enqueue(relist_ ? relist_(store_.revision()) : resync_keys_ ? resync_keys_() : Keys{});
        }
      });
    });
  }
  if (!sources_.empty()) {
    spawn(watchLoop(), "watch");
  } else if (relist_) {
    net::post(strand_, [this] { enqueue(relist_(store_.revision())); });
  }
  for (size_t i = 0; i < std::max<size_t>(options_.workers, 1); ++i) {
    spawn(workerLoop(), "worker");
  }
  if (resync_keys_ && resync_period_.count() > 0) {
    spawn(resyncLoop(), "resync");
  }
}

void Controller::stop() {
  stopping_ = true;
  if (lead_observer_ != 0) {
    lead_->unobserve(lead_observer_);
  }
  queue_.shutDown();
  net::post(strand_, [this] {
    if (watch_id_ != 0) {
      store_.unwatch(watch_id_);  // ends the watch loop
    }
    resync_timer_.cancel();
  });
}

void Controller::enqueue(const Keys& keys) {
  for (const auto& key : keys) {
    queue_.add(key);
  }
}

net::awaitable<void> Controller::watchLoop() {
  while (!stopping_) {
    // Subscribe first, then list: what changes in between comes as events (looked at twice at
    // worst), so nothing is missed. The subscription's replay is covered by the list.
    auto sub = store_.watch(store_.revision(), strand_, options_.watch_queue);
    if (!sub) {
      log::error("controller cannot watch the store", {{"controller", options_.name}, {"error", sub.error().message}});
      co_return;
    }
    watch_id_ = sub->id;
    if (relist_) {
      enqueue(relist_(sub->revision));
    }
    while (true) {
      auto [ec, ev] = co_await sub->channel->async_receive(net::as_tuple(net::use_awaitable));
      if (ec || !ev) {
        break;  // closed: stopped, or we fell behind (events were dropped: subscribe and relist)
      }
      for (const auto& source : sources_) {
        if (source.resource == ev->object->resource) {
          enqueue(source.map(ev));
        }
      }
    }
    store_.unwatch(sub->id);
    watch_id_ = 0;
  }
}

net::awaitable<void> Controller::workerLoop() {
  while (true) {
    std::optional<std::string> key = co_await queue_.get();
    if (!key) {
      co_return;  // shut down
    }
    if (lead_ != nullptr && !lead_->leading()) {
      queue_.forget(*key);  // the leader's controller does it
      queue_.done(*key);
      continue;
    }
    Outcome out;
    try {
      out = co_await reconcile_(*key);
    } catch (const std::exception& e) {
      log::error("reconcile failed", {{"controller", options_.name}, {"key", *key}, {"error", e.what()}});
      out = Outcome::retry(e.what());
    }
    switch (out.kind) {
      case Outcome::Kind::Done:
        queue_.forget(*key);
        break;
      case Outcome::Kind::Retry:
        log::debug("reconcile to be retried", {{"controller", options_.name}, {"key", *key}, {"why", out.why}});
        queue_.addRateLimited(*key);
        break;
      case Outcome::Kind::RequeueAfter:
        queue_.forget(*key);
        queue_.addAfter(*key, out.after);
        break;
    }
    queue_.done(*key);
  }
}

net::awaitable<void> Controller::resyncLoop() {
  while (!stopping_) {
    resync_timer_.expires_after(resync_period_);
    co_await resync_timer_.async_wait(net::as_tuple(net::use_awaitable));
    if (stopping_) {
      break;
    }
    enqueue(resync_keys_());
  }
}

}  // namespace kflex::hub
