// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hub/controller/work_queue.hpp"
#include "hub/store/leadership.hpp"
#include "hub/store/object_store.hpp"
#include "shared/net/asio.hpp"

namespace kflex::hub {

/// What a reconcile of one key asks of its controller next.
struct Outcome {
  enum class Kind { Done, Retry, RequeueAfter };
  Kind kind = Kind::Done;
  std::chrono::milliseconds after{0};  ///< RequeueAfter: when to look again.
  std::string why;                     ///< Retry: what failed (logged at debug level).

  /// Success: the key's failures are forgotten.
  static Outcome done() { return {}; }
  /// Failure: the key is tried again after its backoff (which grows with each failure in a row).
  static Outcome retry(std::string why) { return {Kind::Retry, {}, std::move(why)}; }
  /// Success, and the key is looked at again after `after` (a probe, a timed retry).
  static Outcome requeueAfter(std::chrono::milliseconds after) { return {Kind::RequeueAfter, after, {}}; }
};

/// How a controller runs.
struct ControllerOptions {
  std::string name;   ///< In its log lines ("placement").
  size_t workers = 1; ///< Keys reconciled at once (interleaved on the controller's strand).
  BackoffOptions backoff;  ///< The delays of Outcome::retry().
  /// Events its watch may buffer before the store drops it as too slow (then it relists).
  size_t watch_queue = size_t(1) << 17;
};

/**
 * A controller as client-go's workqueue + controller pattern builds one: keys (object names, or
 * any string the controller chooses) flow from watch sources, relists and resyncs into a
 * WorkQueue, and `workers` coroutines take them out one by one and call reconcile(key).
 *
 * A new controller is a reconcile function plus its registration, all before start():
 * - watch(resource, map): events of one kind of the ObjectStore, each mapped to zero or more keys
 *   (an Agent change may enqueue every ControlPlane it concerns). One store subscription serves
 *   every source; events come in store order.
 * - relist(fn): runs after each subscription, before its events: at start, and after the watch
 *   fell behind and the store closed it (events were lost, as after an HTTP 410 Gone). It
 *   rebuilds whatever the controller keeps from the store (its lists) and returns the keys to
 *   look at (typically all of them).
 * - resync(period, fn): every `period`, the keys fn returns are enqueued (client-go's resync: a
 *   missed or failed reconcile is looked at again, whatever happened).
 * Without a watch source there is no subscription: keys come from queue() (timers, callers).
 *
 * reconcile(key) is an awaitable returning an Outcome: done, retry (after the key's exponential
 * backoff) or requeue after a delay. An exception counts as a retry and is logged. One key is
 * never reconciled by two workers at once; a key added while it is reconciled is reconciled
 * again afterwards.
 *
 * Thread safety: everything runs on the controller's strand: map, relist and resync functions,
 * and reconcile (whose workers interleave at its co_awaits). start() and stop() may be called
 * from any thread; queue() is thread-safe. Register before start(); start once. The controller
 * must outlive the io_context's run.
 */
class Controller {
 public:
  using Strand = net::strand<net::io_context::executor_type>;
  using Keys = std::vector<std::string>;
  /// Reconciles one key (on the strand). Bind a member coroutine: [this](std::string k) { return
  /// reconcile(std::move(k)); }; the lambda itself must not be a coroutine.
  using Reconcile = std::function<net::awaitable<Outcome>(std::string key)>;
  /// One event of a watched kind -> the keys to reconcile. (Shared: a mapper may keep it, to hand
  /// the same bytes on.)
  using EventMapper = std::function<Keys(const EventPtr& event)>;
  /// A resync: the keys to reconcile.
  using KeyLister = std::function<Keys()>;
  /// A relist: rebuilds from the store's lists and returns the keys to reconcile. `revision`: the
  /// store revision the new subscription follows from (lists read now are at least that new).
  using Relister = std::function<Keys(int64_t revision)>;

  Controller(Strand strand, ObjectStore& store, ControllerOptions options, Reconcile reconcile);
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  /// Maps the events of `resource` (a resourceKey(), "group/plural") to keys.
  void watch(std::string resource, EventMapper map);
  /// Rebuilds after each (re)subscription to the store; returns the keys to enqueue.
  void relist(Relister list);
  /// Enqueues the keys `keys` returns every `period`.
  void resync(std::chrono::milliseconds period, KeyLister keys);
  /// Reconciles only while `lead` leads (nullptr: always): keys are dropped meanwhile, and when
  /// the lead is taken every key is looked at (relist, else resync). The watch and relists run
  /// either way, so what the controller keeps is current when it takes over.
  void onlyWhileLeading(const Leadership* lead) { lead_ = lead; }

  /// Subscribes, relists, and starts the workers and the resync.
  void start();
  /// Ends the watch, the resync and the queue; running reconciles finish on their own, and no
  /// new one starts.
  void stop();
  /// The controller's queue, to enqueue keys from elsewhere (timers, callbacks, other threads).
  WorkQueue& queue() { return queue_; }
  /// The strand everything runs on.
  const Strand& strand() const { return strand_; }

 private:
  struct Source {
    std::string resource;
    EventMapper map;
  };
  net::awaitable<void> watchLoop();
  net::awaitable<void> workerLoop();
  net::awaitable<void> resyncLoop();
  void enqueue(const Keys& keys);
  void spawn(net::awaitable<void> loop, const char* what);

  Strand strand_;
  ObjectStore& store_;
  ControllerOptions options_;
  Reconcile reconcile_;
  WorkQueue queue_;
  std::vector<Source> sources_;
  Relister relist_;
  KeyLister resync_keys_;
  std::chrono::milliseconds resync_period_{0};
  std::atomic<bool> stopping_{false};
  const Leadership* lead_ = nullptr;
  uint64_t lead_observer_ = 0;
  uint64_t watch_id_ = 0;  // strand only
  net::steady_timer resync_timer_;  // strand only
};

}  // namespace kflex::hub
