// SPDX-License-Identifier: Apache-2.0
#include "agent/state/agent_state.hpp"

#include <gtest/gtest.h>

#include "shared/common/util.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::agent {
namespace {

TEST(AgentState, KeepsValuesAcrossReopen) {
  test::TempDir dir;
  {
    auto s = AgentState::open(dir.path());
    ASSERT_TRUE(s) << s.error().message;
    ASSERT_TRUE(s.value()->set({{"a", "1"}, {"b", "2"}}));
  }
  auto s = AgentState::open(dir.path());
  ASSERT_TRUE(s);
  EXPECT_EQ(s.value()->get("a").value_or(""), "1");
  EXPECT_FALSE(s.value()->get("missing"));
  EXPECT_TRUE(s.value()->movedAside().empty());
}

TEST(AgentState, CorruptFileIsMovedAsideNotLost) {
  test::TempDir dir;
  std::string garbage(4096, 'x');
  ASSERT_TRUE(writeFileAtomic(dir.path() / "agent.db", garbage, 0600));
  auto ro = AgentState::open(dir.path(), true);
  EXPECT_FALSE(ro);  // read-only never moves anything
  auto s = AgentState::open(dir.path());
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_FALSE(s.value()->movedAside().empty());
  EXPECT_EQ(readFile(s.value()->movedAside()).value(), garbage);
  EXPECT_TRUE(s.value()->set("k", "v"));
}

}  // namespace
}  // namespace kflex::agent
