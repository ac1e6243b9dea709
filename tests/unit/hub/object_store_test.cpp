// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <fstream>
#include <future>

#include "hub/store/object_store.hpp"
#include "hub/store/store_backend.hpp"
#include "shared/store/sqlite.hpp"
#include "tests/support/test_support.hpp"
#include "tests/unit/hub/store_writes.hpp"

namespace kflex::hub {
namespace {

using namespace test_writes;

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

// A watch of one object replays only that object's events, from a revision or as current state.
TEST(ObjectStore, AReplayFilterKeepsOnlyTheWatchedObjects) {
  test::TempDir dir;
  auto s = ObjectStore::open(dir.path() / "hub.db", {});
  ASSERT_TRUE(s) << s.error().message;
  for (int i = 0; i < 50; ++i) {
    write(*s.value(), "o" + std::to_string(i), putObject("o" + std::to_string(i), "1"));
  }
  write(*s.value(), "o7", putObject("o7", "2"));
  auto only7 = [](const ObjectRecord& o) { return o.name == "o7"; };
  auto current = s.value()->watch(0, net::system_executor(), 0, only7);
  ASSERT_TRUE(current);
  ASSERT_EQ(current->replay.size(), 1u);
  EXPECT_EQ(current->replay[0]->object->name, "o7");
  EXPECT_EQ(current->replay[0]->revision, 51);
  auto since = s.value()->watch(1, net::system_executor(), 0, only7);
  ASSERT_TRUE(since);
  ASSERT_EQ(since->replay.size(), 2u);
  EXPECT_EQ(since->replay[0]->revision, 8);
  EXPECT_EQ(since->replay[1]->revision, 51);
  auto everything = s.value()->watch(0, net::system_executor());
  ASSERT_TRUE(everything);
  EXPECT_EQ(everything->replay.size(), 50u);
  for (uint64_t id : {current->id, since->id, everything->id}) {
    s.value()->unwatch(id);
  }
}

// A hub.db of schema version 1 (objects in a WITHOUT ROWID table) is moved to the current version
// at the first start, with every object and retained event; later writes update objects in place.
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
  EXPECT_EQ(db->userVersion().value(), 3);
  auto rows = store::Statement::prepare(*db, "SELECT count(*) FROM objects WHERE resource = 'g/things'").value();
  ASSERT_TRUE(rows.step().value());
  EXPECT_EQ(rows.columnInt(0), 3);
}

// Version 2 kept each body twice (object row and event row). Version 3 keeps it once, in the
// event row: the migration gives a current version whose event was compacted away its row back,
// and compaction from then on keeps the events that hold current versions.
TEST(ObjectStore, MigratesSchemaVersion2AndCompactionKeepsCurrentVersions) {
  test::TempDir dir;
  {
    auto db = store::Database::open(dir.path() / "hub.db").value();
    ASSERT_TRUE(db->exec(R"(
      CREATE TABLE objects (id INTEGER PRIMARY KEY, resource TEXT NOT NULL, name TEXT NOT NULL,
                            revision INTEGER NOT NULL, body BLOB NOT NULL);
      CREATE UNIQUE INDEX objects_key ON objects (resource, name);
      CREATE TABLE events (revision INTEGER PRIMARY KEY, type INTEGER NOT NULL, resource TEXT NOT NULL,
                           name TEXT NOT NULL, body BLOB NOT NULL);
      CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      INSERT INTO meta VALUES ('revision', 7), ('compacted', 5);
      INSERT INTO objects (resource, name, revision, body) VALUES
        ('g/things', 'old', 3, '{"metadata":{"name":"old","resourceVersion":"3","labels":{"v":"old"}}}'),
        ('g/things', 'new', 7, '{"metadata":{"name":"new","resourceVersion":"7","labels":{"v":"new"}}}');
      INSERT INTO events VALUES (6, 0, 'g/things', 'gone', '{"metadata":{"name":"gone","resourceVersion":"6"}}'),
                                (7, 0, 'g/things', 'new', '{"metadata":{"name":"new","resourceVersion":"7","labels":{"v":"new"}}}');
      PRAGMA user_version = 2;)"));
  }
  StoreOptions o;
  o.event_retention = 100;
  {
    auto s = ObjectStore::open(dir.path() / "hub.db", o);
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_EQ(s.value()->revision(), 7);
    EXPECT_EQ(s.value()->get("g/things", "old")->labels.at("v"), "old");
    EXPECT_EQ(s.value()->get("g/things", "new")->labels.at("v"), "new");
    auto w = s.value()->watch(5, net::system_executor());
    ASSERT_TRUE(w);
    EXPECT_EQ(w->replay.size(), 2u);  // revisions 6 and 7; 3 was compacted before
    s.value()->unwatch(w->id);
    // Enough writes to another object to compact everything old several times over.
    for (int i = 0; i < 400; ++i) {
      write(*s.value(), "busy", putObject("busy", std::to_string(i)));
    }
    EXPECT_EQ(s.value()->revision(), 407);
  }
  auto s = ObjectStore::open(dir.path() / "hub.db", o);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s.value()->revision(), 407);
  EXPECT_EQ(s.value()->list("g/things").first.size(), 3u);
  EXPECT_EQ(s.value()->get("g/things", "old")->labels.at("v"), "old");
  EXPECT_EQ(s.value()->get("g/things", "busy")->labels.at("v"), "399");
  EXPECT_FALSE(s.value()->watch(200, net::system_executor()));
  s.value()->stop();
  auto db = store::Database::open(dir.path() / "hub.db").value();
  EXPECT_EQ(db->userVersion().value(), 3);
  // Each body once: the events kept are the retained ones plus the two current versions older
  // than them.
  auto rows = store::Statement::prepare(*db, "SELECT count(*), min(revision) FROM events").value();
  ASSERT_TRUE(rows.step().value());
  EXPECT_EQ(rows.columnInt(1), 3);
  EXPECT_LE(rows.columnInt(0), 2 + 100 + 100 / 10 + 1);
}

// One store per file: a second opener (another hub on the same data dir) is refused at once,
// naming the file; once the first stops, the file is free.
TEST(ObjectStore, ASecondOpenerOfTheFileIsRefused) {
  test::TempDir dir;
  auto first = ObjectStore::open(dir.path() / "hub.db", {});
  ASSERT_TRUE(first) << first.error().message;
  write(*first.value(), "a", putObject("a", "1"));
  auto start = std::chrono::steady_clock::now();
  auto second = ObjectStore::open(dir.path() / "hub.db", {});
  ASSERT_FALSE(second);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_NE(second.error().message.find("hub.db: in use by another process"), std::string::npos)
      << second.error().message;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "hub.db-shm"));  // the log's index is private
  first.value()->stop();
  EXPECT_EQ(first.value()->get("g/things", "a")->labels.at("v"), "1");  // still served from memory
  auto again = ObjectStore::open(dir.path() / "hub.db", {});
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again.value()->get("g/things", "a")->labels.at("v"), "1");
}

// A hub.db whose object row names a version that is not stored is refused, naming the object.
TEST(ObjectStore, RefusesAnObjectWithoutItsBody) {
  test::TempDir dir;
  {
    auto s = ObjectStore::open(dir.path() / "hub.db", {});
    ASSERT_TRUE(s);
    write(*s.value(), "a", putObject("a", "1"));
  }
  {
    auto db = store::Database::open(dir.path() / "hub.db").value();
    ASSERT_TRUE(db->exec("DELETE FROM events"));
  }
  auto s = ObjectStore::open(dir.path() / "hub.db", {});
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("g/things a has no body"), std::string::npos) << s.error().message;
}

// Compaction visits each revision range once: a current version it kept there goes as soon as it
// is superseded or deleted, and the rows at or below the compacted revision are exactly the
// current versions that old.
TEST(ObjectStore, SupersededVersionsBelowTheCompactedRevisionGo) {
  test::TempDir dir;
  StoreOptions o;
  o.event_retention = 100;
  {
    auto s = ObjectStore::open(dir.path() / "hub.db", o);
    ASSERT_TRUE(s);
    for (const char* name : {"a", "b", "c", "d", "e"}) {
      write(*s.value(), name, putObject(name, "1"));
    }
    for (int i = 0; i < 400; ++i) {
      write(*s.value(), "busy", putObject("busy", std::to_string(i)));
    }
    write(*s.value(), "a", putObject("a", "2"));
    EXPECT_EQ(write(*s.value(), "b", deleteObject()).decision.kind, Decision::Kind::Delete);
    for (int i = 0; i < 400; ++i) {
      write(*s.value(), "busy", putObject("busy", std::to_string(i)));
    }
    s.value()->stop();
  }
  {
    auto db = store::Database::open(dir.path() / "hub.db").value();
    auto compacted = store::Statement::prepare(*db, "SELECT value FROM meta WHERE key = 'compacted'").value();
    ASSERT_TRUE(compacted.step().value());
    ASSERT_GT(compacted.columnInt(0), 407);  // past a's and b's last writes
    auto old = store::Statement::prepare(*db, "SELECT group_concat(name) FROM (SELECT name FROM events "
                                               "WHERE revision <= ? ORDER BY revision)").value();
    ASSERT_TRUE(old.bind(1, compacted.columnInt(0)).step().value());
    EXPECT_EQ(old.columnText(0), "c,d,e,a");  // a at its new version; b gone with its delete
  }
  auto s = ObjectStore::open(dir.path() / "hub.db", o);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s.value()->list("g/things").first.size(), 5u);  // a, c, d, e, busy
  EXPECT_EQ(s.value()->get("g/things", "a")->labels.at("v"), "2");
  EXPECT_EQ(s.value()->get("g/things", "b"), nullptr);
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

// Writes queued back to back read each other's results although a group is made durable (and
// shown in memory) only after the writer has moved on to the next group; and each is answered
// only once readers can see it.
TEST(ObjectStore, QueuedWritesSeeEarlierGroupsBeforeTheyAreSynced) {
  test::TempDir dir;
  auto s = ObjectStore::open(dir.path() / "hub.db", {});
  ASSERT_TRUE(s);
  ObjectStore& store = *s.value();
  constexpr int kWrites = 300;
  std::atomic<int> answered{0};
  std::atomic<int> unseen{0};
  auto increment = [](const ObjectRecord* cur, int64_t) {
    int n = cur ? std::stoi(cur->labels.at("n")) : 0;
    Decision d;
    d.kind = Decision::Kind::Put;
    d.object = {{"metadata", {{"name", "counter"}, {"labels", {{"n", std::to_string(n + 1)}}}}}};
    return d;
  };
  for (int i = 0; i < kWrites; ++i) {
    store.write("g/things", "counter", increment, [&](WriteResult r) {
      auto now = store.get("g/things", "counter");
      if (!r.object || !now || now->revision < r.object->revision || store.revision() < r.object->revision) {
        ++unseen;
      }
      ++answered;
    });
  }
  ASSERT_TRUE(test::waitFor([&] { return answered.load() == kWrites; }, std::chrono::seconds(30), "all writes"));
  EXPECT_EQ(unseen.load(), 0);
  EXPECT_EQ(store.get("g/things", "counter")->labels.at("n"), std::to_string(kWrites));
  EXPECT_EQ(store.revision(), kWrites);
  store.stop();
  auto again = ObjectStore::open(dir.path() / "hub.db", {});
  ASSERT_TRUE(again);
  EXPECT_EQ(again.value()->get("g/things", "counter")->labels.at("n"), std::to_string(kWrites));
}

}  // namespace
}  // namespace kflex::hub

// The store behind another backend: a group is stored as one transaction (begin ... commit), and
// a backend that fails fails the whole group, stores nothing of it and the store goes on.
namespace kflex::hub {
namespace {

struct Calls {
  std::vector<std::string> log;
  bool fail_events = false;
  int syncs = 0;
};

class RecordingBackend : public StoreBackend {
 public:
  explicit RecordingBackend(Calls& calls) : calls_(calls) {}
  const std::string& where() const override { return where_; }
  Result<LoadedState> load() override {
    LoadedState s;
    s.revision = 41;  // another store's history: revisions go on from there
    s.objects.push_back(storedRecord("g/things", "old", 41, R"({"metadata":{"name":"old","resourceVersion":"41"}})"));
    return s;
  }
  Result<Changes> begin() override {
    if (auto r = note("begin"); !r) {
      return r.error();
    }
    return Changes{};
  }
  Result<void> put(const std::string&, const std::string& name, int64_t revision) override {
    return note("put " + name + " " + std::to_string(revision));
  }
  Result<void> remove(const std::string&, const std::string& name) override { return note("remove " + name); }
  Result<void> appendEvent(const Event& e) override {
    if (calls_.fail_events) {
      return fail(Errc::NoSpace, "no room left");
    }
    return note("event " + std::to_string(e.revision));
  }
  Result<void> dropEvent(int64_t revision) override { return note("drop " + std::to_string(revision)); }
  Result<void> compact(int64_t from, int64_t to) override {
    return note("compact " + std::to_string(from) + " " + std::to_string(to));
  }
  Result<void> setMeta(int64_t revision, int64_t compacted) override {
    return note("meta " + std::to_string(revision) + " " + std::to_string(compacted));
  }
  Result<void> commit() override { return note("commit"); }
  void rollback() override { (void)note("rollback"); }
  Result<void> sync() override {
    ++calls_.syncs;
    return {};
  }

 private:
  Result<void> note(std::string what) {
    calls_.log.push_back(std::move(what));
    return {};
  }
  Calls& calls_;
  std::string where_ = "recording";
};

TEST(ObjectStoreBackend, AGroupIsOneTransactionAndAFailedOneStoresNothing) {
  Calls calls;
  auto s = ObjectStore::open(std::make_unique<RecordingBackend>(calls), {});
  ASSERT_TRUE(s) << s.error().message;
  ObjectStore& store = *s.value();
  EXPECT_EQ(store.revision(), 41);
  ASSERT_TRUE(store.get("g/things", "old"));

  EXPECT_EQ(write(store, "a", putObject("a", "1")).object->revision, 42);
  EXPECT_EQ(calls.log, (std::vector<std::string>{"begin", "put a 42", "event 42", "commit"}));
  EXPECT_GE(calls.syncs, 1);  // made durable before the writer heard

  calls.log.clear();
  calls.fail_events = true;
  WriteResult failed = write(store, "b", putObject("b", "1"));
  EXPECT_EQ(failed.decision.kind, Decision::Kind::Fail);
  EXPECT_NE(failed.decision.message.find("no room left"), std::string::npos);
  EXPECT_NE(failed.decision.message.find("disk is full"), std::string::npos) << failed.decision.message;
  EXPECT_EQ(calls.log, (std::vector<std::string>{"begin", "put b 43", "rollback"}));
  EXPECT_FALSE(store.get("g/things", "b"));
  EXPECT_EQ(store.revision(), 42);

  // A write that changes nothing ends its transaction empty; the next one gets the next revision.
  calls.log.clear();
  calls.fail_events = false;
  WriteResult missing = write(store, "nothing", deleteObject());
  EXPECT_EQ(missing.decision.kind, Decision::Kind::Fail);
  EXPECT_EQ(calls.log, (std::vector<std::string>{"begin", "rollback"}));
  EXPECT_EQ(write(store, "b", putObject("b", "2")).object->revision, 43);
}

}  // namespace
}  // namespace kflex::hub
