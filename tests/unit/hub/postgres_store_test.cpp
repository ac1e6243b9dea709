// SPDX-License-Identifier: Apache-2.0
// The object store on PostgreSQL (a throwaway server from Debian's package, on a private port).
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "hub/store/object_store.hpp"
#include "hub/store/postgres_backend.hpp"
#include "hub/store/store_backend.hpp"
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

// Each test on a throwaway server of its own (skipped where PostgreSQL is not installed).
class PostgresStore : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!pg.problem().empty()) {
      GTEST_SKIP() << pg.problem();
    }
  }
  test::PostgresServer pg;
};

TEST_F(PostgresStore, WritesAreStoredInRevisionOrderAndReadBackAfterARestart) {
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

TEST_F(PostgresStore, CompactionKeepsCurrentVersionsAndTooOldIsGone) {
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

// Updates the object only when its current version is `expected` (a resourceVersion check).
Mutation updateIfAt(int64_t expected, const std::string& name, const std::string& value) {
  return [=](const ObjectRecord* cur, int64_t) {
    Decision d;
    if (!cur || cur->revision != expected) {
      d.kind = Decision::Kind::Fail;
      d.code = Errc::Conflict;
      d.message = "stale";
      return d;
    }
    d.kind = Decision::Kind::Put;
    d.object = {{"metadata", {{"name", name}, {"labels", {{"v", value}}}}}};
    return d;
  };
}

// Waits (10 s at most) until `check` holds.
template <class F>
bool eventually(F check) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!check()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

TEST_F(PostgresStore, TwoReplicasShareOneRevisionOrderAndEachSeesTheOthersWrites) {
  auto a = openOn(pg);
  ASSERT_TRUE(a) << a.error().message;
  auto b = openOn(pg);
  ASSERT_TRUE(b) << b.error().message;
  ObjectStore& one = *a.value();
  ObjectStore& two = *b.value();
  EXPECT_EQ(write(one, "a", putObject("a", "1")).object->revision, 1);
  // The second replica's group first takes in the first's: the next revision, not a reused one.
  EXPECT_EQ(write(two, "b", putObject("b", "1")).object->revision, 2);
  EXPECT_TRUE(two.get("g/things", "a"));
  // And the first hears of it without writing (its follower).
  EXPECT_TRUE(eventually([&] { return one.revision() == 2 && one.get("g/things", "b"); }));
  // A create is unique across replicas; a resourceVersion check holds across them.
  WriteResult again = write(two, "a", createThing("a"));
  EXPECT_EQ(again.decision.code, Errc::Conflict);
  EXPECT_EQ(write(two, "a", updateIfAt(1, "a", "2")).object->revision, 3);
  WriteResult stale = write(one, "a", updateIfAt(1, "a", "3"));
  EXPECT_EQ(stale.decision.kind, Decision::Kind::Fail);
  EXPECT_EQ(stale.decision.code, Errc::Conflict);
  EXPECT_EQ(one.get("g/things", "a")->labels.at("v"), "2");
}

TEST_F(PostgresStore, CreatesOfOneNameRacingOnTwoReplicasMakeExactlyOne) {
  auto a = openOn(pg);
  ASSERT_TRUE(a) << a.error().message;
  auto b = openOn(pg);
  ASSERT_TRUE(b) << b.error().message;
  constexpr int kNames = 50;
  std::mutex mu;
  std::map<std::string, int> created;
  int answered = 0;
  std::condition_variable cv;
  auto done = [&](const std::string& name) {
    return [&, name](WriteResult r) {
      std::lock_guard lock(mu);
      if (r.decision.kind == Decision::Kind::Put) {
        ++created[name];
      } else {
        EXPECT_EQ(r.decision.code, Errc::Conflict) << r.decision.message;
      }
      ++answered;
      cv.notify_all();
    };
  };
  for (int i = 0; i < kNames; ++i) {
    std::string name = "n" + std::to_string(i);
    a.value()->write("g/things", name, createThing(name), done(name));
    b.value()->write("g/things", name, createThing(name), done(name));
  }
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return answered == 2 * kNames; }));
  EXPECT_EQ(created.size(), size_t(kNames));
  for (const auto& [name, n] : created) {
    EXPECT_EQ(n, 1) << name;
  }
  EXPECT_EQ(a.value()->revision() >= kNames || b.value()->revision() >= kNames, true);
}

TEST_F(PostgresStore, AWatchOnOneReplicaSeesEveryWriteOfTheOtherOnceInOrder) {
  auto a = openOn(pg);
  ASSERT_TRUE(a) << a.error().message;
  auto b = openOn(pg);
  ASSERT_TRUE(b) << b.error().message;
  net::io_context ioc;
  auto w = b.value()->watch(b.value()->revision(), ioc.get_executor(), 100000);
  ASSERT_TRUE(w) << w.error().message;
  // Writes on both, the first's in bursts (groups of many), the second's one by one.
  constexpr int kWrites = 300;
  std::atomic<int> answered{0};
  for (int i = 0; i < kWrites; ++i) {
    std::string name = "o" + std::to_string(i % 37);
    a.value()->write("g/things", name, putObject(name, std::to_string(i)), [&](WriteResult) { ++answered; });
    if (i % 10 == 0) {
      write(*b.value(), "mine", putObject("mine", std::to_string(i)));
    }
  }
  ASSERT_TRUE(eventually([&] { return answered == kWrites; }));
  const int64_t last = kWrites + kWrites / 10;
  ASSERT_TRUE(eventually([&] { return b.value()->revision() == last; })) << b.value()->revision();
  std::vector<int64_t> seen;
  while (ioc.poll() > 0 || seen.size() < size_t(last)) {
    EventPtr ev;
    if (!w->channel->try_receive([&](boost::system::error_code, EventPtr e) { ev = std::move(e); })) {
      break;
    }
    seen.push_back(ev->revision);
  }
  ASSERT_EQ(seen.size(), size_t(last));
  for (size_t i = 0; i < seen.size(); ++i) {
    ASSERT_EQ(seen[i], int64_t(i) + 1);
  }
  b.value()->unwatch(w->id);
}

// A backend that never hears of other writers between its own groups (no follower), so that it
// falls behind on purpose.
class Deaf : public StoreBackend {
 public:
  explicit Deaf(std::unique_ptr<StoreBackend> inner) : inner_(std::move(inner)) {}
  const std::string& where() const override { return inner_->where(); }
  Result<LoadedState> load() override { return inner_->load(); }
  Result<Changes> begin() override { return inner_->begin(); }
  Result<void> put(const std::string& r, const std::string& n, int64_t rev) override { return inner_->put(r, n, rev); }
  Result<void> remove(const std::string& r, const std::string& n) override { return inner_->remove(r, n); }
  Result<void> appendEvent(const Event& e) override { return inner_->appendEvent(e); }
  Result<void> dropEvent(int64_t rev) override { return inner_->dropEvent(rev); }
  Result<void> compact(int64_t from, int64_t to) override { return inner_->compact(from, to); }
  Result<void> setMeta(int64_t rev, int64_t compacted) override { return inner_->setMeta(rev, compacted); }
  Result<void> commit() override { return inner_->commit(); }
  void rollback() override { inner_->rollback(); }
  Result<void> sync() override { return inner_->sync(); }

 protected:
  std::unique_ptr<StoreBackend> inner_;
};

TEST_F(PostgresStore, AReplicaBehindTheCompactionReadsEverythingAgainAndItsWatchesEnd) {
  StoreOptions options;
  options.event_retention = 10;
  auto a = openOn(pg, options);
  ASSERT_TRUE(a) << a.error().message;
  write(*a.value(), "gone", putObject("gone", "1"));
  auto inner = PostgresBackend::open({pg.dsn(), pg.password()});
  ASSERT_TRUE(inner) << inner.error().message;
  auto b = ObjectStore::open(std::make_unique<Deaf>(std::move(inner.value())), options);
  ASSERT_TRUE(b) << b.error().message;
  ASSERT_TRUE(b.value()->get("g/things", "gone"));
  net::io_context ioc;
  auto w = b.value()->watch(b.value()->revision(), ioc.get_executor());
  ASSERT_TRUE(w) << w.error().message;
  write(*a.value(), "gone", deleteObject());
  for (int i = 0; i < 40; ++i) {
    write(*a.value(), "busy", putObject("busy", std::to_string(i)));
  }
  // Its next group finds the events it missed compacted away: it reads everything again.
  WriteResult r = write(*b.value(), "mine", putObject("mine", "1"));
  ASSERT_EQ(r.decision.kind, Decision::Kind::Put) << r.decision.message;
  EXPECT_EQ(r.object->revision, 43);
  EXPECT_FALSE(b.value()->get("g/things", "gone"));
  EXPECT_EQ(b.value()->get("g/things", "busy")->labels.at("v"), "39");
  EXPECT_EQ(b.value()->revision(), 43);
  // Its watcher missed events: the watch ends, and the watcher lists again.
  bool closed = false;
  w->channel->async_receive([&](boost::system::error_code ec, EventPtr) { closed = bool(ec); });
  ioc.run_for(std::chrono::seconds(5));
  EXPECT_TRUE(closed);
}

// A follower that never hears anything: the replica learns of the others' writes only when it
// asks (fresh()) or writes.
class Muted : public Deaf {
 public:
  explicit Muted(std::unique_ptr<StoreBackend> inner) : Deaf(std::move(inner)) {}
  Result<Changes> catchUp() override { return inner_->catchUp(); }
  std::unique_ptr<ChangeSignal> changeSignal() override { return std::make_unique<Silence>(); }

 private:
  class Silence : public ChangeSignal {
   public:
    int64_t wait(std::chrono::milliseconds) override {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return woken_; });
      woken_ = false;
      return 0;  // (only when the store stops)
    }
    void interrupt() override {
      std::lock_guard lock(mutex_);
      woken_ = true;
      cv_.notify_all();
    }

   private:
    std::mutex mutex_;
    std::condition_variable cv_;
    bool woken_ = false;
  };
};

TEST_F(PostgresStore, FreshWaitsForWhatOtherReplicasCommittedBeforeIt) {
  auto a = openOn(pg);
  ASSERT_TRUE(a) << a.error().message;
  auto inner = PostgresBackend::open({pg.dsn(), pg.password()});
  ASSERT_TRUE(inner) << inner.error().message;
  auto b = ObjectStore::open(std::make_unique<Muted>(std::move(inner.value())), {});
  ASSERT_TRUE(b) << b.error().message;
  ASSERT_TRUE(b.value()->shared());
  write(*a.value(), "x", putObject("x", "1"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(b.value()->get("g/things", "x"));  // it has not heard
  std::promise<bool> done;
  b.value()->fresh([&](bool current) { done.set_value(current); });
  auto answered = done.get_future();
  ASSERT_EQ(answered.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(answered.get());
  ASSERT_TRUE(b.value()->get("g/things", "x"));
  EXPECT_EQ(b.value()->revision(), 1);
}

TEST_F(PostgresStore, AReplicaFollowsTheOthersAgainAfterTheDatabaseRestarts) {
  auto a = openOn(pg);
  ASSERT_TRUE(a) << a.error().message;
  auto b = openOn(pg);
  ASSERT_TRUE(b) << b.error().message;
  write(*a.value(), "x", putObject("x", "1"));
  ASSERT_TRUE(eventually([&] { return b.value()->revision() == 1; }));
  pg.stop();
  ASSERT_TRUE(pg.start());
  // The first write after the restart may find its connection gone (503), then it reconnects.
  WriteResult r = write(*a.value(), "x", putObject("x", "2"));
  if (r.decision.kind != Decision::Kind::Put) {
    EXPECT_EQ(r.decision.code, Errc::Unavailable) << r.decision.message;
    r = write(*a.value(), "x", putObject("x", "2"));
  }
  ASSERT_EQ(r.decision.kind, Decision::Kind::Put) << r.decision.message;
  EXPECT_TRUE(eventually([&] { return b.value()->get("g/things", "x")->labels.at("v") == "2"; }));
}

// The controllers' lead: one holder at a time; it passes when its holder stops renewing (or
// resigns), with a new term; a write fenced by an old term is refused.
TEST_F(PostgresStore, TheLeadPassesWithANewTermAndAnOldTermsWritesAreRefused) {
  auto s = openOn(pg);
  ASSERT_TRUE(s) << s.error().message;
  ObjectStore& store = *s.value();
  auto one = store.leaderElection("one", std::chrono::seconds(1));
  auto two = store.leaderElection("two", std::chrono::seconds(1));
  ASSERT_TRUE(one && two);
  auto t1 = one->campaign();
  ASSERT_TRUE(t1) << t1.error().message;
  EXPECT_EQ(t1.value(), 1);
  EXPECT_EQ(two->campaign().value(), 0);
  EXPECT_EQ(one->campaign().value(), 1);  // renewed
  EXPECT_EQ(two->campaign().value(), 0);
  // A fenced write of the current term is stored.
  auto fenced = [&](int64_t term, const std::string& value) {
    std::promise<WriteResult> p;
    auto f = p.get_future();
    store.write("g/things", "x", term, putObject("x", value), [&](WriteResult r) { p.set_value(std::move(r)); });
    return f.get();
  };
  EXPECT_EQ(fenced(1, "a").decision.kind, Decision::Kind::Put);
  // The holder stops renewing (paused): after the lease another replica takes the lead.
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  EXPECT_EQ(two->campaign().value(), 2);
  EXPECT_EQ(one->campaign().value(), 0);  // its renewal fails: deposed
  WriteResult late = fenced(1, "late");
  EXPECT_EQ(late.decision.kind, Decision::Kind::Fail);
  EXPECT_EQ(late.decision.code, Errc::Conflict);
  EXPECT_NE(late.decision.message.find("no longer leads"), std::string::npos) << late.decision.message;
  EXPECT_EQ(store.get("g/things", "x")->labels.at("v"), "a");
  EXPECT_EQ(fenced(2, "b").decision.kind, Decision::Kind::Put);
  // Unfenced writes (users', agents') go on whoever leads.
  EXPECT_EQ(write(store, "y", putObject("y", "1")).decision.kind, Decision::Kind::Put);
  // A leader that stops cleanly hands the lead over at once.
  two->resign();
  EXPECT_EQ(one->campaign().value(), 3);
}

// A group's rows go in one statement per table: an object written twice, or deleted and made
// again, in one group ends as the group's last write says, in the database as in memory.
TEST_F(PostgresStore, ObjectsWrittenSeveralTimesInOneGroupAreStoredAsTheLastWriteSays) {
  std::map<std::string, std::string> memory;
  int64_t revision = 0;
  {
    auto s = openOn(pg);
    ASSERT_TRUE(s) << s.error().message;
    ObjectStore& store = *s.value();
    write(store, "gone", putObject("gone", "0"));
    std::atomic<int> answered{0};
    std::atomic<int> failed{0};  // other than deleting what is not there
    auto done = [&](WriteResult r) {
      if (r.decision.kind == Decision::Kind::Fail && r.decision.code != Errc::NotFound) {
        ++failed;
      }
      ++answered;
    };
    constexpr int kWrites = 300;
    for (int i = 0; i < kWrites; ++i) {
      std::string name = "o" + std::to_string(i % 5);
      Mutation m = i % 7 == 3 ? deleteObject() : putObject(name, std::to_string(i));
      store.write("g/things", name, std::move(m), done);
      if (i == 150) {
        store.write("g/things", "gone", deleteObject(), done);
      }
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (answered < kWrites + 1 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(answered.load(), kWrites + 1);
    EXPECT_EQ(failed.load(), 0);
    for (const auto& o : store.list("g/things").first) {
      memory[o->name] = o->bytes;
    }
    revision = store.revision();
  }
  auto again = openOn(pg);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again.value()->revision(), revision);
  std::map<std::string, std::string> stored;
  for (const auto& o : again.value()->list("g/things").first) {
    stored[o->name] = o->bytes;
  }
  EXPECT_EQ(stored, memory);
  EXPECT_EQ(stored.count("gone"), 0u);
}

TEST(PostgresTarget, AnUnreachableServerIsAClearError) {
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
TEST_F(PostgresStore, WhileTheDatabaseIsDownWritesAreUnavailableThenTheyResume) {
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
  // Nor can it promise a consistent read: fresh() says memory may be behind.
  std::promise<bool> fresh;
  store.fresh([&](bool current) { fresh.set_value(current); });
  auto answered = fresh.get_future();
  ASSERT_EQ(answered.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_FALSE(answered.get());
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
