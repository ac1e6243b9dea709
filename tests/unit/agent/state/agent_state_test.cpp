// SPDX-License-Identifier: Apache-2.0
#include "agent/state/agent_state.hpp"

#include <gtest/gtest.h>

#include "shared/common/util.hpp"
#include "shared/store/sqlite.hpp"
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

TEST(ControlPlaneState, KeepsPortsNodeAgentAndHooksPerControlPlaneAcrossReopen) {
  test::TempDir dir;
  {
    auto s = AgentState::open(dir.path());
    ASSERT_TRUE(s) << s.error().message;
    auto cp = s.value()->controlPlane("cp-a");
    EXPECT_EQ(cp.name(), "cp-a");
    EXPECT_EQ(cp.port(PortRole::Api), 0) << "nothing kept yet";
    EXPECT_FALSE(cp.nodeAgent()) << "not decided yet";
    EXPECT_EQ(cp.hookRecords(), "");
    EXPECT_EQ(cp.nodeAgentHolder(), "");
    ASSERT_TRUE(cp.setPort(PortRole::Api, 31000));
    ASSERT_TRUE(cp.setPort(PortRole::ControllerManager, 31002));
    ASSERT_TRUE(cp.setNodeAgent(false));
    ASSERT_TRUE(cp.setHookRecords(R"({"h":{}})"));
    ASSERT_TRUE(cp.setNodeAgentHolder("cp-b"));
    ASSERT_TRUE(s.value()->controlPlane("cp-b").setNodeAgent(true));
  }
  auto s = AgentState::open(dir.path());
  ASSERT_TRUE(s);
  auto a = s.value()->controlPlane("cp-a");
  EXPECT_EQ(a.port(PortRole::Api), 31000);
  EXPECT_EQ(a.port(PortRole::ControllerManager), 31002);
  EXPECT_EQ(a.port(PortRole::Scheduler), 0);
  EXPECT_EQ(a.nodeAgent(), std::optional<bool>(false));
  EXPECT_EQ(a.hookRecords(), R"({"h":{}})");
  EXPECT_EQ(a.nodeAgentHolder(), "cp-b") << "one holder per host, whoever asks";
  auto b = s.value()->controlPlane("cp-b");
  EXPECT_EQ(b.nodeAgent(), std::optional<bool>(true));
  EXPECT_EQ(b.port(PortRole::Api), 0) << "each control plane its own";

  // Forgetting (after a removal) leaves nothing kept.
  ASSERT_TRUE(a.setPort(PortRole::Api, 0));
  ASSERT_TRUE(a.setNodeAgent(std::nullopt));
  EXPECT_EQ(a.port(PortRole::Api), 0);
  EXPECT_FALSE(a.nodeAgent());
}

TEST(ControlPlaneState, PortsOfDesiredCountOnlyDesiredControlPlanes) {
  test::TempDir dir;
  auto s = AgentState::open(dir.path());
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_TRUE(s.value()->applySnapshot(3, {{"cp-a", "{}"}, {"cp-b", "{}"}}));
  ASSERT_TRUE(s.value()->controlPlane("cp-a").setPort(PortRole::Api, 31000));
  ASSERT_TRUE(s.value()->controlPlane("cp-b").setPort(PortRole::Scheduler, 31005));
  ASSERT_TRUE(s.value()->controlPlane("gone").setPort(PortRole::Api, 32000));
  EXPECT_EQ(s.value()->controlPlane("cp-a").portsOfDesired(), (std::set<uint16_t>{31000, 31005}));
}

TEST(AgentState, StoringDesiredStateOrForgettingReportsTellsTheListenerWhich) {
  test::TempDir dir;
  auto s = AgentState::open(dir.path());
  ASSERT_TRUE(s) << s.error().message;
  std::vector<AgentState::Change> told;
  s.value()->setOnChange([&](AgentState::Change c) { told.push_back(c); });
  ASSERT_TRUE(s.value()->applySnapshot(1, {{"cp-a", "{}"}, {"cp-b", "{}"}}));
  ASSERT_TRUE(s.value()->outbox().enqueue({{"cp-a", "seen"}}));
  ASSERT_TRUE(s.value()->applyDelta(2, {}, {"cp-b"}));
  EXPECT_EQ(s.value()->desired().at(0).reported, "seen") << "a delta keeps what was reported";
  ASSERT_TRUE(s.value()->clearReported());
  EXPECT_EQ(s.value()->desired().at(0).reported, "");
  ASSERT_TRUE(s.value()->outbox().enqueue({{"cp-a", "seen"}}));
  ASSERT_TRUE(s.value()->applySnapshot(3, {{"cp-a", "{}"}}));
  EXPECT_EQ(s.value()->desired().at(0).reported, "") << "a snapshot is reported again in full";
  using C = AgentState::Change;
  EXPECT_EQ(told, (std::vector<C>{C::Desired, C::Desired, C::Reported, C::Desired}));
  ASSERT_TRUE(s.value()->set("k", "v"));
  EXPECT_EQ(told.size(), 4u) << "agent-wide values are not desired state";
}

TEST(Outbox, QueuesOneReportPerControlPlaneAndTellsTheListener) {
  test::TempDir dir;
  auto s = AgentState::open(dir.path());
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_TRUE(s.value()->applySnapshot(1, {{"cp-a", "{}"}}));
  auto& outbox = s.value()->outbox();
  int told = 0;
  outbox.setOnQueued([&] { ++told; });
  ASSERT_TRUE(outbox.enqueue({}));
  EXPECT_EQ(told, 0) << "nothing queued, nobody told";
  ASSERT_TRUE(outbox.enqueue({{"cp-a", "first"}}));
  ASSERT_TRUE(outbox.enqueue({{"cp-a", "second"}}));
  EXPECT_EQ(told, 2);
  auto pending = outbox.pending(10);
  ASSERT_EQ(pending.size(), 1u) << "an unsent older report is replaced";
  EXPECT_EQ(pending[0].body, "second");
  EXPECT_EQ(s.value()->desired()[0].reported, "second");
  ASSERT_TRUE(outbox.ack(pending[0].seq));
  EXPECT_TRUE(outbox.pending(10).empty());
}

// An agent.db written before the typed state (schema 2: ports, node-agent decisions and hook
// records under string keys) keeps all of it when an upgraded agent opens it.
TEST(AgentState, UpgradeKeepsWhatRuntimesKeptUnderTheOldKeys) {
  test::TempDir dir;
  {
    auto db = store::Database::open(dir.path() / "agent.db");
    ASSERT_TRUE(db) << db.error().message;
    ASSERT_TRUE(db.value()->exec(R"(
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE desired (name TEXT PRIMARY KEY, revision INTEGER NOT NULL, body TEXT NOT NULL,
                            reported TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
      CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, body TEXT NOT NULL);
      INSERT INTO desired (name, revision, body) VALUES ('cp-a', 7, '{}'), ('cp-b', 7, '{}');
      INSERT INTO meta (key, value) VALUES
        ('name', 'edge-1'), ('acknowledged_revision', '7'), ('k3s/node-agent', 'cp-a'),
        ('cp/cp-a/port', '31000'), ('cp/cp-a/kcm-port', '31002'), ('cp/cp-a/scheduler-port', '31004'),
        ('cp/cp-a/node-agent', '1'), ('hooks/cp-a', '{"h":{"applied":true}}'),
        ('cp/cp-b/port', '31010'), ('cp/cp-b/node-agent', '0'), ('cp/cp-b/kcm-port', ''),
        ('cp/cp-c/port', ''), ('cp/cp-c/node-agent', '');
      PRAGMA user_version = 2;)"));
  }
  auto s = AgentState::open(dir.path());
  ASSERT_TRUE(s) << s.error().message;
  auto a = s.value()->controlPlane("cp-a");
  EXPECT_EQ(a.port(PortRole::Api), 31000);
  EXPECT_EQ(a.port(PortRole::ControllerManager), 31002);
  EXPECT_EQ(a.port(PortRole::Scheduler), 31004);
  EXPECT_EQ(a.nodeAgent(), std::optional<bool>(true));
  EXPECT_EQ(a.hookRecords(), R"({"h":{"applied":true}})");
  EXPECT_EQ(a.nodeAgentHolder(), "cp-a");
  auto b = s.value()->controlPlane("cp-b");
  EXPECT_EQ(b.port(PortRole::Api), 31010);
  EXPECT_EQ(b.port(PortRole::ControllerManager), 0) << "\"\" was a forgotten port";
  EXPECT_EQ(b.nodeAgent(), std::optional<bool>(false));
  auto c = s.value()->controlPlane("cp-c");
  EXPECT_EQ(c.port(PortRole::Api), 0);
  EXPECT_FALSE(c.nodeAgent()) << "\"\" was an undecided node agent";
  EXPECT_EQ(a.portsOfDesired(), (std::set<uint16_t>{31000, 31002, 31004, 31010}));
  // What else was there is untouched, and the old keys are gone.
  EXPECT_EQ(s.value()->get("name").value_or(""), "edge-1");
  EXPECT_EQ(s.value()->acknowledgedRevision(), 7);
  EXPECT_EQ(s.value()->desired().size(), 2u);
  EXPECT_FALSE(s.value()->get("cp/cp-a/port"));
  EXPECT_FALSE(s.value()->get("hooks/cp-a"));
}

}  // namespace
}  // namespace kflex::agent
