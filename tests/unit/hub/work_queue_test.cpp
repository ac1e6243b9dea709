// SPDX-License-Identifier: Apache-2.0
#include "hub/controller/work_queue.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/test_support.hpp"

namespace kflex::hub {
namespace {

using std::chrono::milliseconds;

// A queue on a strand of an io_context that runs on a thread of its own; the test takes keys out
// as a worker would (get() on the strand), each with a deadline.
class WorkQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loop_ = std::thread([this] { ioc_.run(); });
  }
  void TearDown() override {
    queue_.shutDown();
    work_.reset();
    ioc_.stop();
    loop_.join();
  }

  // One get(); what it returned (the outer optional is empty while it has not returned).
  struct Taken {
    std::mutex mu;
    bool returned = false;
    std::optional<std::string> key;
  };
  std::shared_ptr<Taken> startGet() {
    auto taken = std::make_shared<Taken>();
    net::co_spawn(strand_, queue_.get(), [taken](std::exception_ptr, std::optional<std::string> key) {
      std::lock_guard lock(taken->mu);
      taken->key = std::move(key);
      taken->returned = true;
    });
    return taken;
  }
  static bool returned(const std::shared_ptr<Taken>& t) {
    std::lock_guard lock(t->mu);
    return t->returned;
  }
  // The next key, waiting at most `timeout`; "" when none came (or the queue shut down).
  std::string next(milliseconds timeout = milliseconds(5000)) {
    auto taken = startGet();
    if (!test::waitFor([&] { return returned(taken); }, timeout, "a key from the queue")) {
      return "";
    }
    std::lock_guard lock(taken->mu);
    return taken->key.value_or("");
  }

  net::io_context ioc_;
  net::executor_work_guard<net::io_context::executor_type> work_ = net::make_work_guard(ioc_);
  net::strand<net::io_context::executor_type> strand_ = net::make_strand(ioc_);
  WorkQueue queue_{strand_, BackoffOptions{milliseconds(20), milliseconds(160)}};
  std::thread loop_;
};

TEST(KeyBackoff, GrowsPerKeyUpToTheCapAndStartsOverWhenForgotten) {
  KeyBackoff backoff({milliseconds(10), milliseconds(80)});
  EXPECT_EQ(backoff.when("a"), milliseconds(10));
  EXPECT_EQ(backoff.when("a"), milliseconds(20));
  EXPECT_EQ(backoff.when("a"), milliseconds(40));
  EXPECT_EQ(backoff.when("a"), milliseconds(80));
  EXPECT_EQ(backoff.when("a"), milliseconds(80));
  EXPECT_EQ(backoff.failures("a"), 5);
  EXPECT_EQ(backoff.when("b"), milliseconds(10));  // every key has its own count
  backoff.forget("a");
  EXPECT_EQ(backoff.failures("a"), 0);
  EXPECT_EQ(backoff.when("a"), milliseconds(10));
  for (int i = 0; i < 100; ++i) {
    backoff.when("c");  // (no overflow after many failures)
  }
  EXPECT_EQ(backoff.when("c"), milliseconds(80));
}

TEST_F(WorkQueueTest, AKeyAddedWhileQueuedIsOneItemAndOrderIsKept) {
  queue_.add("a");
  queue_.add("b");
  queue_.add("a");
  queue_.add("c");
  queue_.add("b");
  EXPECT_EQ(queue_.size(), 3u);
  EXPECT_EQ(next(), "a");
  EXPECT_EQ(next(), "b");
  EXPECT_EQ(next(), "c");
  EXPECT_EQ(queue_.size(), 0u);
  EXPECT_EQ(queue_.processing(), 3u);
}

TEST_F(WorkQueueTest, AKeyAddedWhileProcessedComesBackOnlyAfterDone) {
  queue_.add("a");
  ASSERT_EQ(next(), "a");
  queue_.add("a");
  queue_.add("a");
  EXPECT_EQ(queue_.size(), 0u) << "handed out again while processed";
  auto waiting = startGet();
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_FALSE(returned(waiting));
  queue_.done("a");
  ASSERT_TRUE(test::waitFor([&] { return returned(waiting); }, milliseconds(5000), "a again after done()"));
  EXPECT_EQ(waiting->key.value_or(""), "a");
  EXPECT_EQ(queue_.size(), 0u) << "two adds while processed are one item";
  queue_.done("a");
  EXPECT_EQ(queue_.size(), 0u) << "not added since: not queued again";
}

TEST_F(WorkQueueTest, AWaitingGetIsWokenByAnAddFromAnotherThread) {
  auto waiting = startGet();
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_FALSE(returned(waiting));
  std::thread([this] { queue_.add("x"); }).join();
  ASSERT_TRUE(test::waitFor([&] { return returned(waiting); }, milliseconds(5000), "the waiting get() woken"));
  EXPECT_EQ(waiting->key.value_or(""), "x");
}

TEST_F(WorkQueueTest, AddAfterQueuesOnceTheDelayHasPassedAndTheEarliestDelayWins) {
  auto start = std::chrono::steady_clock::now();
  queue_.addAfter("late", milliseconds(100));
  queue_.addAfter("soon", milliseconds(10000));
  queue_.addAfter("soon", milliseconds(50));     // sooner: replaces the later one
  queue_.addAfter("late", milliseconds(10000));  // later: the earlier one stays
  EXPECT_EQ(queue_.size(), 0u);
  EXPECT_EQ(queue_.delayed(), 2u);
  EXPECT_EQ(next(), "soon");
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(50));
  EXPECT_EQ(next(), "late");
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(100));
  EXPECT_EQ(queue_.delayed(), 0u);
  queue_.addAfter("now", milliseconds(0));
  EXPECT_EQ(queue_.size(), 1u);
}

TEST_F(WorkQueueTest, AKeyDueWhileQueuedIsStillOneItem) {
  queue_.add("a");
  queue_.addAfter("a", milliseconds(20));
  ASSERT_TRUE(test::waitFor([&] { return queue_.delayed() == 0; }, milliseconds(5000), "the delay to pass"));
  EXPECT_EQ(queue_.size(), 1u);
}

TEST_F(WorkQueueTest, RateLimitedAddsWaitLongerAfterEachFailureUntilForgotten) {
  auto waited = [&] {
    auto start = std::chrono::steady_clock::now();
    queue_.addRateLimited("k");
    EXPECT_EQ(next(), "k");
    queue_.done("k");
    return std::chrono::steady_clock::now() - start;
  };
  EXPECT_GE(waited(), milliseconds(20));
  EXPECT_GE(waited(), milliseconds(40));
  EXPECT_GE(waited(), milliseconds(80));
  EXPECT_EQ(queue_.failures("k"), 3);
  queue_.forget("k");
  EXPECT_EQ(queue_.failures("k"), 0);
  auto again = waited();
  EXPECT_GE(again, milliseconds(20));
  EXPECT_EQ(queue_.failures("k"), 1);
}

TEST_F(WorkQueueTest, ShutDownWakesEveryWaiterAndDropsWhatIsLeft) {
  std::vector<std::shared_ptr<Taken>> waiting;
  for (int i = 0; i < 3; ++i) {
    waiting.push_back(startGet());
  }
  queue_.addAfter("later", milliseconds(50));
  std::this_thread::sleep_for(milliseconds(20));
  queue_.shutDown();
  for (const auto& w : waiting) {
    ASSERT_TRUE(test::waitFor([&] { return returned(w); }, milliseconds(5000), "a waiting get() to end"));
    EXPECT_FALSE(w->key.has_value());
  }
  EXPECT_TRUE(queue_.shuttingDown());
  EXPECT_EQ(queue_.delayed(), 0u);
  queue_.add("ignored");
  EXPECT_EQ(queue_.size(), 0u);
  std::this_thread::sleep_for(milliseconds(80));
  EXPECT_EQ(queue_.size(), 0u) << "a delayed key came after shutdown";
  auto after = startGet();
  ASSERT_TRUE(test::waitFor([&] { return returned(after); }, milliseconds(5000), "get() after shutdown to end"));
  EXPECT_FALSE(after->key.has_value());
}

}  // namespace
}  // namespace kflex::hub
