// SPDX-License-Identifier: Apache-2.0
#include "hub/agents/status_limiter.hpp"

#include <gtest/gtest.h>

#include <string>

namespace kflex::hub {
namespace {

using std::chrono::milliseconds;
using Limiter = StatusLimiter<std::string>;

constexpr StatusLimits kLimits{milliseconds(1000), 10, 3};  // 1 s per control plane; 10/s, burst 3

Limiter::TimePoint t0() { return Limiter::TimePoint(std::chrono::hours(1)); }

TEST(StatusLimiter, TheFirstReportGoesAtOnceTheLatestWinsAfterTheInterval) {
  Limiter l(kLimits, t0());
  EXPECT_FALSE(l.offer("cp", "r1"));
  auto n = l.next(t0());
  ASSERT_TRUE(n.ready);
  EXPECT_EQ(n.ready->first, "cp");
  EXPECT_EQ(n.ready->second, "r1");
  EXPECT_TRUE(l.empty());
  // Within the interval, reports wait; each replaces the one before (which is handed back).
  EXPECT_FALSE(l.offer("cp", "r2"));
  EXPECT_EQ(l.offer("cp", "r3"), "r2");
  n = l.next(t0() + milliseconds(10));
  EXPECT_FALSE(n.ready);
  EXPECT_EQ(n.at, t0() + milliseconds(1000));
  n = l.next(t0() + milliseconds(1000));
  ASSERT_TRUE(n.ready);
  EXPECT_EQ(n.ready->second, "r3");
  // Nothing waits.
  n = l.next(t0() + milliseconds(1001));
  EXPECT_FALSE(n.ready);
  EXPECT_FALSE(n.at);
}

TEST(StatusLimiter, AnAgentsWritesTakeTokensFromABucket) {
  Limiter l(kLimits, t0());
  for (const char* cp : {"a", "b", "c", "d", "e"}) {
    l.offer(cp, cp);
  }
  // The burst: three at once.
  for (const char* cp : {"a", "b", "c"}) {
    auto n = l.next(t0());
    ASSERT_TRUE(n.ready) << cp;
    EXPECT_EQ(n.ready->first, cp);
  }
  // Then one every 100 ms (10 a second).
  auto n = l.next(t0());
  EXPECT_FALSE(n.ready);
  EXPECT_EQ(n.at, t0() + milliseconds(100));
  n = l.next(t0() + milliseconds(100));
  ASSERT_TRUE(n.ready);
  EXPECT_EQ(n.ready->first, "d");
  n = l.next(t0() + milliseconds(150));
  EXPECT_FALSE(n.ready);
  EXPECT_EQ(n.at, t0() + milliseconds(200));
  n = l.next(t0() + milliseconds(200));
  ASSERT_TRUE(n.ready);
  EXPECT_EQ(n.ready->first, "e");
}

// A control plane that flaps as fast as it can: one write per interval, and the others, reported
// once, are not held back by it.
TEST(StatusLimiter, AFlappingControlPlaneIsCoalescedAndHoldsNobodyBack) {
  Limiter l(StatusLimits{milliseconds(200), 5, 5}, t0());
  size_t writes = 0;
  size_t flapping_writes = 0;
  std::string last;
  bool quiet_written = false;
  for (int ms = 0; ms < 10000; ++ms) {
    auto now = t0() + milliseconds(ms);
    l.offer("flap", "report " + std::to_string(ms));
    if (ms == 5000) {
      l.offer("quiet", "once");
    }
    while (auto n = l.next(now).ready) {
      ++writes;
      if (n->first == "flap") {
        ++flapping_writes;
        last = n->second;
      } else {
        quiet_written = true;
        EXPECT_LE(ms, 5200);  // within one interval of the flapping one's next turn
      }
    }
  }
  // At most one write per 200 ms for the flapping one, and the last report is what is written
  // once the flapping stops.
  EXPECT_LE(flapping_writes, 51u);
  EXPECT_TRUE(quiet_written);
  EXPECT_EQ(writes, flapping_writes + 1);
  auto end = t0() + milliseconds(10000);
  auto n = l.next(end);
  if (!n.ready) {
    ASSERT_TRUE(n.at);
    n = l.next(*n.at);
  }
  ASSERT_TRUE(n.ready);
  EXPECT_EQ(n.ready->second, "report 9999");
}

TEST(StatusLimiter, ManyControlPlanesFlappingAreBoundedByTheBucket) {
  Limiter l(StatusLimits{milliseconds(100), 5, 5}, t0());
  size_t writes = 0;
  for (int ms = 0; ms < 4000; ++ms) {
    auto now = t0() + milliseconds(ms);
    l.offer("cp-" + std::to_string(ms % 8), "r");
    while (l.next(now).ready) {
      ++writes;
    }
  }
  // 8 control planes could be written 80 times a second by their interval; the agent's bucket
  // allows 5 at once and 5 a second.
  EXPECT_LE(writes, 5u + 5u * 4u);
  EXPECT_GE(writes, 5u + 5u * 4u - 1u);
}

TEST(StatusLimiter, SettlesOnceTheIntervalsRanOutAndTheBucketIsFull) {
  Limiter l(kLimits, t0());
  EXPECT_LE(l.settledAt(), t0());
  l.offer("cp", "r");
  ASSERT_TRUE(l.next(t0()).ready);
  // The interval (1 s) ends after the bucket is full again (one token: 100 ms).
  EXPECT_EQ(l.settledAt(), t0() + milliseconds(1000));
  EXPECT_TRUE(l.empty());
}

TEST(StatusLimiter, TakeAnyIgnoresTheLimits) {
  Limiter l(kLimits, t0());
  l.offer("a", "1");
  ASSERT_TRUE(l.next(t0()).ready);
  l.offer("a", "2");
  l.offer("b", "3");
  auto first = l.takeAny();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->second, "2");
  auto second = l.takeAny();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->second, "3");
  EXPECT_FALSE(l.takeAny());
  EXPECT_TRUE(l.empty());
}

}  // namespace
}  // namespace kflex::hub
