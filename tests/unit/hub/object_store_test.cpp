// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <fstream>
#include <future>

#include "hub/store/object_store.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::hub {
namespace {

Mutation putObject(const std::string& name, const std::string& value) {
  return [name, value](const ObjectRecord*, int64_t) {
    Decision d;
    d.kind = Decision::Kind::Put;
    d.object = {{"metadata", {{"name", name}, {"labels", {{"v", value}}}}}};
    return d;
  };
}

Mutation deleteObject() {
  return [](const ObjectRecord* cur, int64_t) {
    Decision d;
    d.kind = cur ? Decision::Kind::Delete : Decision::Kind::Fail;
    d.status = 404;
    return d;
  };
}

WriteResult write(ObjectStore& s, const std::string& name, Mutation m) {
  std::promise<WriteResult> promise;
  auto future = promise.get_future();
  s.write("g/things", name, std::move(m), [&](WriteResult r) { promise.set_value(std::move(r)); });
  if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    ADD_FAILURE() << "write did not complete in 30 s";
    return {};
  }
  return future.get();
}

TEST(ObjectStore, OneRevisionForEveryWriteAndPersistence) {
  test::TempDir dir;
  {
    auto s = ObjectStore::open(dir.path() / "hub.db", {});
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_EQ(write(*s.value(), "a", putObject("a", "1")).object->revision, 1);
    EXPECT_EQ(write(*s.value(), "b", putObject("b", "1")).object->revision, 2);
    EXPECT_EQ(write(*s.value(), "a", putObject("a", "2")).object->revision, 3);
    EXPECT_EQ(write(*s.value(), "b", deleteObject()).object->revision, 4);
    EXPECT_EQ(s.value()->revision(), 4);
    auto obj = s.value()->get("g/things", "a");
    ASSERT_TRUE(obj);
    EXPECT_EQ(obj->labels.at("v"), "2");
    EXPECT_NE(obj->bytes.find("\"resourceVersion\":\"3\""), std::string::npos);
  }
  auto s = ObjectStore::open(dir.path() / "hub.db", {});
  ASSERT_TRUE(s);
  EXPECT_EQ(s.value()->revision(), 4);
  EXPECT_EQ(s.value()->list("g/things").first.size(), 1u);
  // Watch resumes across the restart from any kept revision.
  auto w = s.value()->watch(1, net::system_executor());
  ASSERT_TRUE(w);
  ASSERT_EQ(w->replay.size(), 3u);
  EXPECT_EQ(w->replay[0]->revision, 2);
  EXPECT_EQ(w->replay[2]->type, EventType::Deleted);
  s.value()->unwatch(w->id);
}

// A hub.db of schema version 1 (objects in a WITHOUT ROWID table) is moved to version 2 at the
// first start, with every object and retained event; later writes update objects in place.
TEST(ObjectStore, MigratesSchemaVersion1) {
  test::TempDir dir;
  {
    auto db = store::Database::open(dir.path() / "hub.db").value();
    ASSERT_TRUE(db->exec(R"(
      CREATE TABLE objects (resource TEXT NOT NULL, name TEXT NOT NULL, revision INTEGER NOT NULL,
                            body BLOB NOT NULL, PRIMARY KEY (resource, name)) WITHOUT ROWID;
      CREATE TABLE events (revision INTEGER PRIMARY KEY, type INTEGER NOT NULL, resource TEXT NOT NULL,
                           name TEXT NOT NULL, body BLOB NOT NULL);
      CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      INSERT INTO meta VALUES ('revision', 2), ('compacted', 0);
      INSERT INTO objects VALUES ('g/things', 'a', 1, '{"metadata":{"name":"a","resourceVersion":"1","labels":{"v":"1"}}}'),
                                 ('g/things', 'b', 2, '{"metadata":{"name":"b","resourceVersion":"2"}}');
      INSERT INTO events VALUES (1, 0, 'g/things', 'a', '{"metadata":{"name":"a","resourceVersion":"1","labels":{"v":"1"}}}'),
                                (2, 0, 'g/things', 'b', '{"metadata":{"name":"b","resourceVersion":"2"}}');
      PRAGMA user_version = 1;)"));
  }
  {
    auto s = ObjectStore::open(dir.path() / "hub.db", {});
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_EQ(s.value()->revision(), 2);
    ASSERT_EQ(s.value()->list("g/things").first.size(), 2u);
    EXPECT_EQ(s.value()->get("g/things", "a")->labels.at("v"), "1");
    EXPECT_EQ(write(*s.value(), "a", putObject("a", "2")).object->revision, 3);
    EXPECT_EQ(write(*s.value(), "c", putObject("c", "1")).object->revision, 4);
  }
  auto s = ObjectStore::open(dir.path() / "hub.db", {});
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_EQ(s.value()->list("g/things").first.size(), 3u);
  EXPECT_EQ(s.value()->get("g/things", "a")->labels.at("v"), "2");
  auto w = s.value()->watch(1, net::system_executor());
  ASSERT_TRUE(w);
  EXPECT_EQ(w->replay.size(), 3u);
  s.value()->unwatch(w->id);
  s.value()->stop();
  auto db = store::Database::open(dir.path() / "hub.db").value();
  EXPECT_EQ(db->userVersion().value(), 2);
  auto rows = store::Statement::prepare(*db, "SELECT count(*) FROM objects WHERE resource = 'g/things'").value();
  ASSERT_TRUE(rows.step().value());
  EXPECT_EQ(rows.columnInt(0), 3);
}

TEST(ObjectStore, CompactedRevisionsAreGone) {
  test::TempDir dir;
  StoreOptions o;
  o.event_retention = 100;
  auto s = ObjectStore::open(dir.path() / "hub.db", o);
  ASSERT_TRUE(s);
  for (int i = 0; i < 250; ++i) {
    write(*s.value(), "a", putObject("a", std::to_string(i)));
  }
  auto old = s.value()->watch(5, net::system_executor());
  ASSERT_FALSE(old);
  EXPECT_NE(old.error().message.find("too old resource version"), std::string::npos);
  auto recent = s.value()->watch(240, net::system_executor());
  ASSERT_TRUE(recent);
  EXPECT_EQ(recent->replay.size(), 10u);
}

TEST(ObjectStore, FailedMutationLeavesNothing) {
  test::TempDir dir;
  auto s = ObjectStore::open(dir.path() / "hub.db", {});
  auto r = write(*s.value(), "x", deleteObject());
  EXPECT_EQ(r.decision.kind, Decision::Kind::Fail);
  EXPECT_EQ(s.value()->revision(), 0);
}

TEST(ObjectStore, RefusesAFileThatIsNotADatabase) {
  test::TempDir dir;
  std::ofstream(dir.path() / "hub.db") << "this is not sqlite, just some text that fills the header page......";
  auto s = ObjectStore::open(dir.path() / "hub.db", {});
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("hub.db"), std::string::npos);
  EXPECT_NE(s.error().message.find("not a database"), std::string::npos);
}

TEST(ObjectStore, ConcurrentWritersAreGroupCommitted) {
  test::TempDir dir;
  auto s = ObjectStore::open(dir.path() / "hub.db", {});
  std::atomic<int> done{0};
  constexpr int kWrites = 400;
  for (int i = 0; i < kWrites; ++i) {
    std::string name = "n" + std::to_string(i);
    s.value()->write("g/things", name, putObject(name, "v"), [&](WriteResult r) {
      if (r.object) {
        ++done;
      }
    });
  }
  ASSERT_TRUE(test::waitFor([&] { return done.load() == kWrites; }, std::chrono::seconds(30), "all writes"));
  EXPECT_EQ(s.value()->revision(), kWrites);
  EXPECT_EQ(s.value()->list("g/things").first.size(), size_t(kWrites));
}

}  // namespace
}  // namespace kflex::hub
