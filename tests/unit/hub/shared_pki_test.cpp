// SPDX-License-Identifier: Apache-2.0
// The hub's CA and keys kept in the datastore for every replica (a throwaway PostgreSQL).
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <thread>

#include "hub/app/shared_pki.hpp"
#include "shared/common/util.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

namespace fs = std::filesystem;

tls::SecretBox key(char fill) { return tls::SecretBox::withKey(std::string(32, fill)).value(); }

std::unique_ptr<hub::SharedPki> vault(const test::PostgresServer& pg, char fill) {
  auto v = hub::SharedPki::open({pg.dsn(), pg.password()}, key(fill));
  EXPECT_TRUE(v) << v.error().message;
  return v ? std::move(v.value()) : nullptr;
}

// A step that makes the files a first start makes, unless they are there.
Result<void> firstStart(const fs::path& pki, const std::string& ca) {
  if (!fs::exists(pki / "ca.crt")) {
    if (auto r = writeFileAtomic(pki / "ca.crt", ca, 0644); !r) {
      return r;
    }
    if (auto r = writeFileAtomic(pki / "ca.key", "key of " + ca, 0600); !r) {
      return r;
    }
    return writeFileAtomic(pki / "encryption.key", "sealing key", 0600);
  }
  return {};
}

std::string contents(const fs::path& f) {
  auto text = readFile(f);
  return text ? text.value() : "(none)";
}

// Each test on a throwaway server of its own (skipped where PostgreSQL is not installed), with
// replicas' data dirs under `dir`.
class SharedPki : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!pg.problem().empty()) {
      GTEST_SKIP() << pg.problem();
    }
  }
  test::PostgresServer pg;
  test::TempDir dir;
};

TEST_F(SharedPki, TheFirstReplicasCaGoesToTheDatabaseSealedAndTheOthersUseIt) {
  fs::path a = dir.path() / "a" / "pki";
  fs::path b = dir.path() / "b" / "pki";
  ASSERT_TRUE(vault(pg, 'k')->withFiles(a, [&] { return firstStart(a, "CA one"); }));
  // Another replica, which has never run: it gets the same CA and keys, keys 0600.
  ASSERT_TRUE(vault(pg, 'k')->withFiles(b, [&] { return firstStart(b, "CA two"); }));
  EXPECT_EQ(contents(b / "ca.crt"), "CA one");
  EXPECT_EQ(contents(b / "ca.key"), "key of CA one");
  EXPECT_EQ(contents(b / "encryption.key"), "sealing key");
  struct stat st {};
  ASSERT_EQ(::stat((b / "ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Nothing of them is readable in the database without the key.
  auto conn = store::Connection::open({pg.dsn(), pg.password()});
  ASSERT_TRUE(conn);
  auto rows = conn.value()->query("SELECT name, sealed FROM kflex.secrets ORDER BY name");
  ASSERT_TRUE(rows) << rows.error().message;
  ASSERT_EQ(rows->size(), 3u);
  for (const auto& row : *rows) {
    auto raw = base64Decode(row[1].value_or(""));
    ASSERT_TRUE(raw);
    EXPECT_EQ(raw->find("CA one"), std::string::npos) << *row[0];
    EXPECT_EQ(raw->find("sealing key"), std::string::npos) << *row[0];
  }
}

TEST_F(SharedPki, AReplicaWithAnotherKeyIsRefusedWithWhatToDo) {
  fs::path a = dir.path() / "a" / "pki";
  ASSERT_TRUE(vault(pg, 'k')->withFiles(a, [&] { return firstStart(a, "CA one"); }));
  fs::path b = dir.path() / "b" / "pki";
  bool ran = false;
  auto r = vault(pg, 'x')->withFiles(b, [&] {
    ran = true;
    return Result<void>{};
  });
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("same --secrets-key-file"), std::string::npos) << r.error().message;
  EXPECT_FALSE(ran);
  EXPECT_FALSE(fs::exists(b / "ca.crt"));
}

TEST_F(SharedPki, TheDatabaseIsTheTruthAndAStepsChangesGoBack) {
  fs::path a = dir.path() / "a" / "pki";
  fs::path b = dir.path() / "b" / "pki";
  ASSERT_TRUE(vault(pg, 'k')->withFiles(a, [&] { return firstStart(a, "CA one"); }));
  // A replica with files of its own from before (a CA, a rotation): the database's replace them.
  fs::create_directories(b);
  ASSERT_TRUE(writeFileAtomic(b / "ca.crt", "an old CA", 0644));
  ASSERT_TRUE(writeFileAtomic(b / "rotation.json", "{}", 0644));
  ASSERT_TRUE(vault(pg, 'k')->withFiles(b, [] { return Result<void>{}; }));
  EXPECT_EQ(contents(b / "ca.crt"), "CA one");
  EXPECT_FALSE(fs::exists(b / "rotation.json"));
  // A rotation on one replica (its step changes the CA and adds the overlap) reaches the others.
  ASSERT_TRUE(vault(pg, 'k')->withFiles(a, [&]() -> Result<void> {
    if (auto r = writeFileAtomic(a / "ca-previous.crt", "CA one", 0644); !r) {
      return r;
    }
    if (auto r = writeFileAtomic(a / "rotation.json", "{\"previousUntil\":\"later\"}", 0644); !r) {
      return r;
    }
    return writeFileAtomic(a / "ca.crt", "CA two", 0644);
  }));
  ASSERT_TRUE(vault(pg, 'k')->withFiles(b, [] { return Result<void>{}; }));
  EXPECT_EQ(contents(b / "ca.crt"), "CA two");
  EXPECT_EQ(contents(b / "ca-previous.crt"), "CA one");
  EXPECT_EQ(contents(b / "rotation.json"), "{\"previousUntil\":\"later\"}");
}

TEST_F(SharedPki, ReplicasStartingAtOnceOnAnEmptyDatabaseEndWithOneCa) {
  std::vector<std::thread> starts;
  for (int i = 0; i < 4; ++i) {
    starts.emplace_back([&, i] {
      fs::path pki = dir.path() / std::to_string(i) / "pki";
      auto v = vault(pg, 'k');
      ASSERT_TRUE(v);
      EXPECT_TRUE(v->withFiles(pki, [&] { return firstStart(pki, "CA of " + std::to_string(i)); }));
    });
  }
  for (auto& t : starts) {
    t.join();
  }
  std::string first = contents(dir.path() / "0" / "pki" / "ca.crt");
  EXPECT_TRUE(first.starts_with("CA of ")) << first;
  for (int i = 1; i < 4; ++i) {
    EXPECT_EQ(contents(dir.path() / std::to_string(i) / "pki" / "ca.crt"), first);
  }
}

}  // namespace
}  // namespace kflex::test
