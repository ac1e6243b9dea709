// SPDX-License-Identifier: Apache-2.0
#include "hub/app/shared_pki.hpp"

#include <map>
#include <optional>

#include "hub/store/postgres_backend.hpp"
#include "shared/common/log.hpp"
#include "shared/common/util.hpp"

namespace kflex::hub {
namespace fs = std::filesystem;
namespace {

// The advisory lock every replica takes around its PKI step (an arbitrary constant: "kflexPKI").
constexpr const char* kLock = "SELECT pg_advisory_xact_lock(7022654180773562441)";


bool isPrivate(const std::string& name) { return name.ends_with(".key"); }

}  // namespace

const std::vector<std::string>& sharedPkiFiles() {
  static const std::vector<std::string> files = {"ca.crt",        "ca.key",        "ca-previous.crt",
                                                 "ca-cross.crt",  "rotation.json", "encryption.key"};
  return files;
}

Result<std::unique_ptr<SharedPki>> SharedPki::open(const store::PostgresTarget& target, tls::SecretBox box) {
  auto conn = store::Connection::open(target, std::chrono::seconds(10), "-c synchronous_commit=on");
  if (!conn) {
    return conn.error();
  }
  if (auto r = migrateSchema(*conn.value(), store::redacted(target.dsn)); !r) {
    return r.error();
  }
  return std::unique_ptr<SharedPki>(new SharedPki(std::move(conn.value()), std::move(box), store::redacted(target.dsn)));
}

Result<void> SharedPki::withFiles(const fs::path& pki_dir, const std::function<Result<void>()>& step) {
  if (auto r = conn_->exec("BEGIN"); !r) {
    return r.error();
  }
  auto r = exchange(pki_dir, step);
  if (!r) {
    (void)conn_->exec("ROLLBACK");
    return r;
  }
  if (auto c = conn_->exec("COMMIT"); !c) {
    return fail(where_ + ": the hub's PKI could not be stored: " + c.error().message);
  }
  return {};
}

Result<void> SharedPki::exchange(const fs::path& pki_dir, const std::function<Result<void>()>& step) {
  if (auto r = conn_->exec(kLock); !r) {
    return r.error();
  }
  auto rows = conn_->query("SELECT name, sealed FROM kflex.secrets");
  if (!rows) {
    return rows.error();
  }
  std::error_code ec;
  fs::create_directories(pki_dir, ec);
  fs::permissions(pki_dir, fs::perms::owner_all, ec);
  std::map<std::string, std::string> stored;
  for (const auto& row : *rows) {
    const std::string name = row[0].value_or("");
    auto sealed = base64Decode(row[1].value_or(""));
    auto plain = sealed ? box_.open(sealed.value()) : Result<std::string>(sealed.error());
    if (!plain) {
      return fail(where_ + ": the hub's " + name + " in the database cannot be opened with the secrets key (" +
                  plain.error().message + "); every replica needs the same --secrets-key-file as the first one");
    }
    stored[name] = std::move(plain.value());
  }
  const auto& names = sharedPkiFiles();
  if (!stored.empty()) {
    // The database is the truth: this replica's files become its copy of them.
    for (const auto& name : names) {
      fs::path file = pki_dir / name;
      auto it = stored.find(name);
      if (it == stored.end()) {
        std::error_code ec;
        fs::remove(file, ec);
        continue;
      }
      auto local = readFile(file);
      if (!local || local.value() != it->second) {
        if (auto w = writeFileAtomic(file, it->second, isPrivate(name) ? 0600 : 0644); !w) {
          return w.error();
        }
      }
    }
  }
  if (auto r = step(); !r) {
    return r;
  }
  // What the step made or changed goes back (the first replica's PKI, a rotation).
  size_t changed = 0;
  for (const auto& name : names) {
    auto local = readFile(pki_dir / name);
    auto it = stored.find(name);
    if (!local) {
      if (it != stored.end()) {
        if (auto r = conn_->exec("DELETE FROM kflex.secrets WHERE name = $1", {name}); !r) {
          return r.error();
        }
        ++changed;
      }
      continue;
    }
    if (it != stored.end() && it->second == local.value()) {
      continue;
    }
    auto sealed = box_.seal(local.value());
    if (!sealed) {
      return sealed.error();
    }
    if (auto r = conn_->exec(
            "INSERT INTO kflex.secrets (name, sealed) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET sealed = "
            "excluded.sealed",
            {name, base64Encode(sealed.value())});
        !r) {
      return r.error();
    }
    ++changed;
  }
  if (changed > 0) {
    log::info(stored.empty() ? "stored the hub's CA and keys in the datastore, sealed with the secrets key"
                             : "updated the hub's CA and keys in the datastore",
              {{"files", std::to_string(changed)}});
  } else {
    log::info("using the hub's CA and keys from the datastore");
  }
  return {};
}

}  // namespace kflex::hub
