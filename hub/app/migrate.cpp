// SPDX-License-Identifier: Apache-2.0
#include "hub/app/migrate.hpp"

#include <unordered_set>

#include "hub/app/hub_app.hpp"
#include "hub/app/shared_pki.hpp"
#include "hub/store/postgres_backend.hpp"
#include "hub/store/sqlite_backend.hpp"
#include "shared/common/util.hpp"

namespace kflex::hub {
namespace fs = std::filesystem;

Result<std::string> migrateFromSqlite(const fs::path& from_dir, const HubConfig& to) {
  fs::path db = from_dir / "hub.db";
  std::error_code ec;
  if (!fs::exists(db, ec)) {
    return fail(Errc::Invalid, db.string() + " does not exist: --from-sqlite names the data dir of a hub that ran on SQLite");
  }
  // (The file's lock: a hub still serving it is refused here.)
  auto source = SqliteBackend::open(db);
  if (!source) {
    return fail(source.error().code, source.error().message + " (stop the hub before migrating it)");
  }
  auto from = source.value()->load();
  if (!from) {
    return from.error();
  }
  auto target = datastoreTarget(to);
  if (!target) {
    return target.error();
  }
  auto dest = PostgresBackend::open(target.value());
  if (!dest) {
    return dest.error();
  }
  auto there = dest.value()->load();
  if (!there) {
    return there.error();
  }
  if (there->revision != 0 || !there->objects.empty()) {
    return fail(Errc::Conflict, dest.value()->where() + " already holds a hub's objects (revision " +
                                    std::to_string(there->revision) +
                                    "); migrate into an empty database (CREATE DATABASE ... ) or use the hub that "
                                    "is there");
  }
  // One transaction: every retained event, and the event that holds each object's current body
  // (kept only for that below the compacted revision), then the objects and the revisions.
  auto group = dest.value()->begin();
  if (!group) {
    return group.error();
  }
  auto write = [&]() -> Result<void> {
    std::unordered_set<int64_t> written;
    for (const auto& e : from->events) {
      if (auto r = dest.value()->appendEvent(*e); !r) {
        return r;
      }
      written.insert(e->revision);
    }
    for (const auto& obj : from->objects) {
      if (!written.count(obj->revision)) {
        Event body;
        body.revision = obj->revision;
        body.type = EventType::Added;  // (below the compaction: never replayed, only a body)
        body.object = obj;
        if (auto r = dest.value()->appendEvent(body); !r) {
          return r;
        }
      }
      if (auto r = dest.value()->put(obj->resource, obj->name, obj->revision); !r) {
        return r;
      }
    }
    if (auto r = dest.value()->setMeta(from->revision, from->compacted); !r) {
      return r;
    }
    return dest.value()->commit();
  };
  if (auto r = write(); !r) {
    dest.value()->rollback();
    return fail(r.error().code, "nothing was moved: " + r.error().message);
  }
  std::string out = "moved " + std::to_string(from->objects.size()) + " objects and " +
                    std::to_string(from->events.size()) + " retained events (revision " +
                    std::to_string(from->revision) + ") from " + db.string() + " to " + dest.value()->where() + ".";
  if (!to.secrets_key_file.empty()) {
    HubConfig with_pki = to;
    with_pki.data_dir = from_dir;
    // The database holds no PKI yet (it held no hub): the step changes nothing, and the data
    // dir's CA and keys are stored.
    if (auto r = withSharedPki(with_pki, [] { return Result<void>{}; }); !r) {
      return fail(r.error().code, out + " The CA and keys were not: " + r.error().message +
                                      "; run the migration of the PKI again with a fresh database, or give every "
                                      "replica a copy of " + (from_dir / "pki").string());
    }
    out += " The CA and keys of " + (from_dir / "pki").string() + " are in the database, sealed with " +
           to.secrets_key_file.string() + ".";
  } else {
    out += " The CA and keys stay in " + (from_dir / "pki").string() +
           ": serve with --data-dir " + from_dir.string() + ", or migrate again with --secrets-key-file into a "
           "fresh database to share them among replicas.";
  }
  out += "\nNext: kflex-hub serve --datastore " + to.datastore +
         (to.datastore_password_file.empty() ? "" : " --datastore-password-file " + to.datastore_password_file.string()) +
         (to.secrets_key_file.empty() ? " --data-dir " + from_dir.string()
                                      : " --secrets-key-file " + to.secrets_key_file.string()) +
         ". Keep " + db.string() + " as the backup of the hub before the move.";
  return out;
}

}  // namespace kflex::hub
