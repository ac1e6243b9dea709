// SPDX-License-Identifier: Apache-2.0
#include "shared/store/sqlite.hpp"

#include <sqlite3.h>

namespace kflex::store {

Result<std::unique_ptr<Database>> Database::open(const std::filesystem::path& path, bool read_only,
                                                 bool exclusive) {
  sqlite3* db = nullptr;
  int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return fail(path.string() + ": cannot open database: " + msg);
  }
  sqlite3_extended_result_codes(db, 1);
  // An exclusive owner never waits for the lock: it either has the file or another process does.
  sqlite3_busy_timeout(db, exclusive ? 0 : 5000);
  std::unique_ptr<Database> out(new Database(db, path));
  auto in_use = [&](const Error& e) -> Error {
    int code = out->lastErrorCode() & 0xff;
    if (exclusive && (code == SQLITE_BUSY || code == SQLITE_LOCKED)) {
      return fail(path.string() + ": in use by another process, which holds its lock; stop that process "
                                  "or use another file");
    }
    return e;
  };
  // Before the first read: in WAL mode the lock is then taken at once and kept, and the log's
  // index lives in this process's memory rather than in a shared -shm file.
  if (exclusive) {
    if (auto r = out->exec("PRAGMA locking_mode=EXCLUSIVE;"); !r) {
      return r.error();
    }
  }
  // The first real read tells whether the file is a database at all.
  if (auto r = out->exec("PRAGMA schema_version;"); !r) {
    return in_use(r.error());
  }
  if (!read_only) {
    if (auto r = out->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"); !r) {
      return in_use(r.error());
    }
  }
  if (exclusive) {
    // Take the write lock now, not at the first write, so that a second opener fails at open.
    if (auto r = out->exec("BEGIN IMMEDIATE; COMMIT;"); !r) {
      return in_use(r.error());
    }
  }
  return out;
}

Database::~Database() { sqlite3_close_v2(db_); }

Result<void> Database::exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  if (sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = path_.string() + ": " + (err != nullptr ? err : "unknown error");
    sqlite3_free(err);
    return fail(msg);
  }
  return {};
}

Result<int> Database::userVersion() {
  auto st = Statement::prepare(*this, "PRAGMA user_version");
  if (!st) {
    return st.error();
  }
  auto row = st->step();
  if (!row) {
    return row.error();
  }
  return int(st->columnInt(0));
}

std::string Database::lastError() const { return path_.string() + ": " + sqlite3_errmsg(db_); }
int Database::lastErrorCode() const { return sqlite3_extended_errcode(db_); }

Result<Statement> Statement::prepare(Database& db, std::string_view sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v3(db.handle(), sql.data(), int(sql.size()), SQLITE_PREPARE_PERSISTENT, &s,
                         nullptr) != SQLITE_OK) {
    return fail(db.lastError());
  }
  return Statement(&db, s);
}

Statement::~Statement() {
  if (stmt_ != nullptr) {
    sqlite3_finalize(stmt_);
  }
}

Statement& Statement::bind(int index, int64_t v) {
  sqlite3_bind_int64(stmt_, index, v);
  return *this;
}
Statement& Statement::bind(int index, std::string_view v) {
  sqlite3_bind_text(stmt_, index, v.data(), int(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Statement& Statement::bindBlob(int index, std::string_view v) {
  sqlite3_bind_blob(stmt_, index, v.data(), int(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Statement& Statement::bindNull(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

Result<bool> Statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  return fail(db_->lastError());
}

Result<void> Statement::run() {
  while (true) {
    auto r = step();
    if (!r) {
      reset();
      return r.error();
    }
    if (!r.value()) {
      break;
    }
  }
  reset();
  return {};
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t Statement::columnInt(int col) { return sqlite3_column_int64(stmt_, col); }
std::string Statement::columnText(int col) {
  const void* p = sqlite3_column_blob(stmt_, col);
  int n = sqlite3_column_bytes(stmt_, col);
  return p != nullptr ? std::string(static_cast<const char*>(p), size_t(n)) : std::string();
}

Result<Transaction> Transaction::begin(Database& db) {
  if (auto r = db.exec("BEGIN IMMEDIATE"); !r) {
    return r.error();
  }
  return Transaction(db);
}

Transaction::~Transaction() {
  if (!done_) {
    (void)db_->exec("ROLLBACK");
  }
}

Result<void> Transaction::commit() {
  done_ = true;
  if (auto r = db_->exec("COMMIT"); !r) {
    const bool full = (db_->lastErrorCode() & 0xff) == SQLITE_FULL;  // (before ROLLBACK resets it)
    (void)db_->exec("ROLLBACK");
    return full ? fail(Errc::NoSpace, r.error().message) : r.error();
  }
  return {};
}

}  // namespace kflex::store
