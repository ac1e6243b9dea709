// SPDX-License-Identifier: Apache-2.0
#include "hub/controller/controller.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/hub/api_call.hpp"

namespace kflex::hub {
namespace {

using std::chrono::milliseconds;

constexpr const char* kAgents = "/apis/tenancy.kflex.kubestellar.org/v1alpha1/agents";

// A controller over a real store, on an io_context of its own thread. Its reconcile records
// every call and answers as the test's policy says, after an optional pause.
class ControllerTest : public ApiFixture {
 protected:
  struct Call {
    std::string key;
    std::chrono::steady_clock::time_point at;
  };

  void TearDown() override {
    if (controller_) {
      controller_->stop();
    }
    work_.reset();
    ioc_.stop();
    if (loop_.joinable()) {
      loop_.join();
    }
  }

  Controller& make(ControllerOptions options) {
    controller_ = std::make_unique<Controller>(net::make_strand(ioc_), *store_, std::move(options),
                                               [this](std::string key) { return reconcile(std::move(key)); });
    return *controller_;
  }
  void start() {
    controller_->start();
    loop_ = std::thread([this] { ioc_.run(); });
  }

  net::awaitable<Outcome> reconcile(std::string key) {
    int n = 0;
    {
      std::lock_guard lock(mu_);
      calls_.push_back({key, std::chrono::steady_clock::now()});
      n = ++count_[key];
      max_active_ = std::max(max_active_, ++active_[key]);
    }
    if (pause_.count() > 0) {
      net::steady_timer t(co_await net::this_coro::executor, pause_);
      co_await t.async_wait(net::as_tuple(net::use_awaitable));
    }
    {
      std::lock_guard lock(mu_);
      --active_[key];
    }
    if (throw_first_ && n == 1) {
      throw std::runtime_error("reconcile threw");
    }
    co_return policy_ ? policy_(key, n) : Outcome::done();
  }

  int count(const std::string& key) {
    std::lock_guard lock(mu_);
    return count_[key];
  }
  std::vector<Call> callsOf(const std::string& key) {
    std::lock_guard lock(mu_);
    std::vector<Call> out;
    for (const auto& c : calls_) {
      if (c.key == key) {
        out.push_back(c);
      }
    }
    return out;
  }
  void createAgent(const std::string& name) {
    Json a = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "Agent"}, {"metadata", {{"name", name}}}};
    ASSERT_EQ(call(http::verb::post, kAgents, a.dump()).status, 201u);
  }
  // A relist of every agent (counted in `relists`), as keys "agent-NAME".
  Controller::Relister relistAgents(std::atomic<int>& relists) {
    return [this, &relists](int64_t) {
      ++relists;
      Controller::Keys keys;
      for (const auto& rec : store_->list(agentsKey()).first) {
        keys.push_back("agent-" + rec->name);
      }
      return keys;
    };
  }
  std::string agentsKey() const { return resourceKey(*registry_.find(model::kTenancyGroup, model::kTenancyVersion, "agents")); }

  net::io_context ioc_;
  net::executor_work_guard<net::io_context::executor_type> work_ = net::make_work_guard(ioc_);
  std::unique_ptr<Controller> controller_;
  std::thread loop_;

  // Set before start().
  std::function<Outcome(const std::string& key, int call)> policy_;
  milliseconds pause_{0};
  bool throw_first_ = false;

  std::mutex mu_;
  std::vector<Call> calls_;
  std::map<std::string, int> count_;
  std::map<std::string, int> active_;
  int max_active_ = 0;
};

TEST_F(ControllerTest, RelistsAtStartThenMapsEventsToKeys) {
  createAgent("before");
  std::atomic<int> relists{0};
  auto& c = make({"test", 2});
  c.watch(agentsKey(), [](const EventPtr& ev) { return Controller::Keys{"agent-" + ev->object->name}; });
  c.relist(relistAgents(relists));
  start();
  EXPECT_TRUE(test::waitFor([&] { return count("agent-before") == 1; }, milliseconds(5000), "the relisted key"));
  createAgent("after");
  EXPECT_TRUE(test::waitFor([&] { return count("agent-after") == 1; }, milliseconds(5000), "the watched key"));
  EXPECT_EQ(relists.load(), 1);
  EXPECT_EQ(count("agent-before"), 1);
}

// A controller of the leader only: while another replica leads, its watch runs and keys are
// dropped unreconciled; when the lead comes it looks at everything (relist); when the lead goes
// it stops again.
TEST_F(ControllerTest, OnlyWhileLeadingReconcilesNothingUntilTheLeadComesThenEverything) {
  createAgent("before");
  Leadership lead;
  std::atomic<int> relists{0};
  auto& c = make({"test", 1});
  c.watch(agentsKey(), [](const EventPtr& ev) { return Controller::Keys{"agent-" + ev->object->name}; });
  c.relist(relistAgents(relists));
  c.onlyWhileLeading(&lead);
  start();
  EXPECT_TRUE(test::waitFor([&] { return relists.load() == 1; }, milliseconds(5000), "the first relist"));
  createAgent("meanwhile");
  std::this_thread::sleep_for(milliseconds(200));  // (what must not happen: nothing to wait for)
  EXPECT_EQ(count("agent-before"), 0);
  EXPECT_EQ(count("agent-meanwhile"), 0);
  lead.set(7);
  EXPECT_TRUE(test::waitFor([&] { return count("agent-before") == 1 && count("agent-meanwhile") == 1; },
                            milliseconds(5000), "every key once the lead is taken"));
  EXPECT_EQ(relists.load(), 2);
  lead.set(0);
  createAgent("after");
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(count("agent-after"), 0);
}

// A mapper may answer several keys (a repeated one is one item) or none.
TEST_F(ControllerTest, AnEventMayMapToManyKeysOrNone) {
  auto& c = make({"test", 1});
  c.watch(agentsKey(), [](const EventPtr& ev) {
    return ev->object->name == "quiet" ? Controller::Keys{} : Controller::Keys{"x", "y", "x"};
  });
  std::atomic<bool> subscribed{false};
  c.relist([&](int64_t) {
    subscribed = true;  // events from here on reach the mapper
    return Controller::Keys{};
  });
  start();
  ASSERT_TRUE(test::waitFor([&] { return subscribed.load(); }, milliseconds(5000), "the subscription"));
  createAgent("quiet");
  createAgent("loud");
  EXPECT_TRUE(test::waitFor([&] { return count("x") >= 1 && count("y") == 1; }, milliseconds(5000), "x and y"));
  std::lock_guard lock(mu_);
  for (const auto& call : calls_) {
    EXPECT_TRUE(call.key == "x" || call.key == "y") << call.key;
  }
}

TEST_F(ControllerTest, AFailingReconcileIsRetriedWithGrowingBackoffAndForgottenOnSuccess) {
  policy_ = [](const std::string&, int n) { return n <= 3 ? Outcome::retry("not yet") : Outcome::done(); };
  make({"test", 4, BackoffOptions{milliseconds(20), milliseconds(1000)}});
  start();
  controller_->queue().add("k");
  ASSERT_TRUE(test::waitFor([&] { return count("k") == 4; }, milliseconds(5000), "k reconciled four times"));
  auto calls = callsOf("k");
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_GE(calls[1].at - calls[0].at, milliseconds(20));
  EXPECT_GE(calls[2].at - calls[1].at, milliseconds(40));
  EXPECT_GE(calls[3].at - calls[2].at, milliseconds(80));
  EXPECT_TRUE(test::waitFor([&] { return controller_->queue().failures("k") == 0; }, milliseconds(5000),
                            "k's failures forgotten"));
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(count("k"), 4) << "reconciled again after success";
}

TEST_F(ControllerTest, AnExceptionCountsAsAFailure) {
  throw_first_ = true;
  make({"test", 1, BackoffOptions{milliseconds(10), milliseconds(100)}});
  start();
  controller_->queue().add("k");
  EXPECT_TRUE(test::waitFor([&] { return count("k") == 2; }, milliseconds(5000), "k retried after throwing"));
}

TEST_F(ControllerTest, RequeueAfterLooksAgainAfterTheDelay) {
  policy_ = [](const std::string&, int n) { return n <= 2 ? Outcome::requeueAfter(milliseconds(60)) : Outcome::done(); };
  make({"test", 2});
  start();
  controller_->queue().add("probe");
  ASSERT_TRUE(test::waitFor([&] { return count("probe") == 3; }, milliseconds(5000), "probe looked at three times"));
  auto calls = callsOf("probe");
  EXPECT_GE(calls[1].at - calls[0].at, milliseconds(60));
  EXPECT_GE(calls[2].at - calls[1].at, milliseconds(60));
  EXPECT_EQ(controller_->queue().failures("probe"), 0);
}

TEST_F(ControllerTest, AKeyIsNeverReconciledByTwoWorkersAtOnce) {
  pause_ = milliseconds(100);
  make({"test", 8});
  start();
  controller_->queue().add("k");
  controller_->queue().add("other");
  ASSERT_TRUE(test::waitFor([&] { return count("k") == 1; }, milliseconds(5000), "k being reconciled"));
  for (int i = 0; i < 5; ++i) {
    controller_->queue().add("k");  // while it is reconciled: once more, afterwards
  }
  ASSERT_TRUE(test::waitFor([&] { return count("k") == 2; }, milliseconds(5000), "k reconciled again"));
  std::this_thread::sleep_for(milliseconds(250));
  EXPECT_EQ(count("k"), 2);
  auto calls = callsOf("k");
  EXPECT_GE(calls[1].at - calls[0].at, milliseconds(100)) << "the second began before the first ended";
  std::lock_guard lock(mu_);
  EXPECT_EQ(max_active_, 1);
}

TEST_F(ControllerTest, WorkersReconcileDifferentKeysAtOnce) {
  pause_ = milliseconds(300);
  make({"test", 4});
  start();
  auto start_at = std::chrono::steady_clock::now();
  for (const char* k : {"a", "b", "c", "d"}) {
    controller_->queue().add(k);
  }
  ASSERT_TRUE(test::waitFor([&] { return count("a") + count("b") + count("c") + count("d") == 4; },
                            milliseconds(5000), "four keys started"));
  EXPECT_LT(std::chrono::steady_clock::now() - start_at, milliseconds(300)) << "one at a time";
}

TEST_F(ControllerTest, AResyncEnqueuesItsKeysPeriodically) {
  auto& c = make({"test", 1});
  c.resync(milliseconds(50), [] { return Controller::Keys{"r1", "r2"}; });
  start();
  EXPECT_TRUE(test::waitFor([&] { return count("r1") >= 3 && count("r2") >= 3; }, milliseconds(5000),
                            "three resyncs"));
}

// The store drops a watcher that falls behind; the controller subscribes again and relists.
TEST_F(ControllerTest, AWatchThatFellBehindRelists) {
  std::atomic<int> relists{0};
  std::atomic<bool> stall{true};
  ControllerOptions options{"test", 1};
  options.watch_queue = 2;
  auto& c = make(options);
  c.watch(agentsKey(), [&](const EventPtr&) {
    if (stall.exchange(false)) {
      std::this_thread::sleep_for(milliseconds(300));  // the store's events pile up meanwhile
    }
    return Controller::Keys{};
  });
  c.relist([&](int64_t) {
    ++relists;
    return Controller::Keys{"relisted"};
  });
  start();
  ASSERT_TRUE(test::waitFor([&] { return count("relisted") == 1; }, milliseconds(5000), "the first relist"));
  for (int i = 0; i < 10; ++i) {
    createAgent("a" + std::to_string(i));
  }
  EXPECT_TRUE(test::waitFor([&] { return relists.load() >= 2; }, milliseconds(5000), "a second relist"));
  EXPECT_TRUE(test::waitFor([&] { return count("relisted") >= 2; }, milliseconds(5000), "its keys reconciled"));
}

TEST_F(ControllerTest, StopEndsTheWorkersAndDropsWhatIsQueued) {
  pause_ = milliseconds(100);
  auto& c = make({"test", 1});
  c.watch(agentsKey(), [](const EventPtr& ev) { return Controller::Keys{ev->object->name}; });
  c.resync(milliseconds(20), [] { return Controller::Keys{"resynced"}; });
  start();
  controller_->queue().add("first");
  controller_->queue().add("second");
  ASSERT_TRUE(test::waitFor([&] { return count("first") == 1; }, milliseconds(5000), "first started"));
  controller_->stop();
  EXPECT_TRUE(controller_->queue().shuttingDown());
  createAgent("after-stop");
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(count("second"), 0);
  EXPECT_EQ(count("after-stop"), 0);
  EXPECT_EQ(controller_->queue().processing(), 0u) << "the running reconcile did not finish";
}

}  // namespace
}  // namespace kflex::hub
