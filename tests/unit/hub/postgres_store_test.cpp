// SPDX-License-Identifier: Apache-2.0
// The object store on PostgreSQL (a throwaway server from Debian's package, on a private port).
#include <gtest/gtest.h>

#include "hub/store/object_store.hpp"
#include "hub/store/postgres_backend.hpp"
#include "tests/support/test_support.hpp"
#include "tests/unit/hub/store_writes.hpp"

namespace kflex::hub {
namespace {

using namespace test_writes;

Mutation createThing(const std::string& name) {
  return [name](const ObjectRecord* cur, int64_t) {
    Decision d;
    if (cur) {
      d.kind = Decision::Kind::Fail;
      d.code = Errc::Conflict;
      d.message = name + " already exists";
      return d;
    }
    d.kind = Decision::Kind::Put;
    d.object = {{"metadata", {{"name", name}}}};
    return d;
  };
}

Result<std::unique_ptr<ObjectStore>> openOn(const test::PostgresServer& pg, StoreOptions options = {}) {
  auto backend = PostgresBackend::open({pg.dsn(), pg.password()});
  if (!backend) {
    return backend.error();
  }
  return ObjectStore::open(std::move(backend.value()), options);
}

TEST(PostgresStore, WritesAreStoredInRevisionOrderAndReadBackAfterARestart) {
  test::PostgresServer pg;
  if (!pg.problem().empty()) {
    GTEST_SKIP() << pg.problem();
  }
  {
    auto s = openOn(pg);
    ASSERT_TRUE(s) << s.error().message;
    ObjectStore& store = *s.value();
    EXPECT_EQ(write(store, "a", putObject("a", "1")).object->revision, 1);
    EXPECT_EQ(write(store, "b", putObject("b", "1")).object->revision, 2);
    EXPECT_EQ(write(store, "a", putObject("a", "2")).object->revision, 3);
    EXPECT_EQ(write(store, "b", deleteObject()).object->revision, 4);
    WriteResult again = write(store, "a", createThing("a"));
    EXPECT_EQ(again.decision.kind, Decision::Kind::Fail);
    EXPECT_EQ(again.decision.code, Errc::Conflict);
  }
  auto s = openOn(pg);
  ASSERT_TRUE(s) << s.error().message;
  ObjectStore& store = *s.value();
  EXPECT_EQ(store.revision(), 4);
  auto a = store.get("g/things", "a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->labels.at("v"), "2");
  EXPECT_NE(a->bytes.find("\"resourceVersion\":\"3\""), std::string::npos) << a->bytes;
  EXPECT_FALSE(store.get("g/things", "b"));
  // Watches resume from any kept revision, across the restart.
  auto w = store.watch(1, net::system_executor());
  ASSERT_TRUE(w) << w.error().message;
  ASSERT_EQ(w->replay.size(), 3u);
  EXPECT_EQ(w->replay[0]->revision, 2);
  EXPECT_EQ(w->replay[2]->type, EventType::Deleted);
  store.unwatch(w->id);
  EXPECT_EQ(write(store, "c", putObject("c", "1")).object->revision, 5);
}

TEST(PostgresStore, CompactionKeepsCurrentVersionsAndTooOldIsGone) {
  test::PostgresServer pg;
  if (!pg.problem().empty()) {
    GTEST_SKIP() << pg.problem();
  }
  StoreOptions options;
  options.event_retention = 10;
  {
    auto s = openOn(pg, options);
    ASSERT_TRUE(s) << s.error().message;
    write(*s.value(), "kept", putObject("kept", "1"));
    for (int i = 0; i < 40; ++i) {
      write(*s.value(), "busy", putObject("busy", std::to_string(i)));
    }
  }
  auto s = openOn(pg, options);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s.value()->revision(), 41);
  ASSERT_TRUE(s.value()->get("g/things", "kept"));
  EXPECT_EQ(s.value()->get("g/things", "busy")->labels.at("v"), "39");
  EXPECT_FALSE(s.value()->watch(2, net::system_executor()));  // compacted: 410 Gone for the API
}

TEST(PostgresStore, ASecondHubOnTheSameDatabaseIsRefusedItsWrites) {
  test::PostgresServer pg;
  if (!pg.problem().empty()) {
    GTEST_SKIP() << pg.problem();
  }
  auto first = openOn(pg);
  ASSERT_TRUE(first) << first.error().message;
  auto second = openOn(pg);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(write(*first.value(), "a", putObject("a", "1")).object->revision, 1);
  // The second hub's memory is behind: its write fails instead of reusing revision 1.
  WriteResult stale = write(*second.value(), "b", putObject("b", "1"));
  EXPECT_EQ(stale.decision.kind, Decision::Kind::Fail);
  EXPECT_NE(stale.decision.message.find("another kflex-hub has written to this database"), std::string::npos)
      << stale.decision.message;
  EXPECT_EQ(write(*first.value(), "c", putObject("c", "1")).object->revision, 2);
}

TEST(PostgresStore, AnUnreachableServerIsAClearError) {
  auto backend = PostgresBackend::open({"postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2", ""});
  ASSERT_FALSE(backend);
  EXPECT_NE(backend.error().message.find("cannot connect to PostgreSQL at postgres://postgres@127.0.0.1:1/postgres"),
            std::string::npos)
      << backend.error().message;
}

}  // namespace
}  // namespace kflex::hub

namespace kflex::hub {
namespace {

using namespace test_writes;

// The database restarts under the hub: writes meanwhile fail as unavailable (503 for the API),
// nothing half-stored; once it is back the hub reconnects and goes on from its revision.
TEST(PostgresStore, WhileTheDatabaseIsDownWritesAreUnavailableThenTheyResume) {
  test::PostgresServer pg;
  if (!pg.problem().empty()) {
    GTEST_SKIP() << pg.problem();
  }
  auto backend = PostgresBackend::open({pg.dsn(), pg.password()});
  ASSERT_TRUE(backend) << backend.error().message;
  auto s = ObjectStore::open(std::move(backend.value()), {});
  ASSERT_TRUE(s) << s.error().message;
  ObjectStore& store = *s.value();
  EXPECT_EQ(write(store, "a", putObject("a", "1")).object->revision, 1);
  pg.stop();
  WriteResult down = write(store, "b", putObject("b", "1"));
  EXPECT_EQ(down.decision.kind, Decision::Kind::Fail);
  EXPECT_EQ(down.decision.code, Errc::Unavailable) << down.decision.message;
  EXPECT_FALSE(store.get("g/things", "b"));
  ASSERT_TRUE(pg.start());
  WriteResult up = write(store, "b", putObject("b", "2"));
  ASSERT_EQ(up.decision.kind, Decision::Kind::Put) << up.decision.message;
  EXPECT_EQ(up.object->revision, 2);
  EXPECT_EQ(store.get("g/things", "b")->labels.at("v"), "2");
}

}  // namespace
}  // namespace kflex::hub

namespace kflex::store {
namespace {

// Session settings given at open hold on every connection, a reconnection included (the store
// relies on it for synchronous_commit).
TEST(PostgresConnection, SessionSettingsHoldAcrossAReconnect) {
  test::PostgresServer pg;
  if (!pg.problem().empty()) {
    GTEST_SKIP() << pg.problem();
  }
  auto c = Connection::open({pg.dsn(), pg.password()}, std::chrono::seconds(10), "-c application_name=kflex-test");
  ASSERT_TRUE(c) << c.error().message;
  auto name = c.value()->query("SHOW application_name");
  ASSERT_TRUE(name) << name.error().message;
  EXPECT_EQ(name->at(0).at(0), "kflex-test");
  ASSERT_TRUE(c.value()->reconnect());
  name = c.value()->query("SHOW application_name");
  ASSERT_TRUE(name) << name.error().message;
  EXPECT_EQ(name->at(0).at(0), "kflex-test");
}

}  // namespace
}  // namespace kflex::store
