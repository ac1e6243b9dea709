// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "shared/common/result.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace kflex::store {

/// One open SQLite connection. Not thread-safe: one thread at a time.
class Database {
 public:
  /// Opens (creating unless read_only) a database file, WAL mode, synchronous=FULL, busy timeout.
  /// `exclusive`: this connection alone uses the file while it is open (SQLite's EXCLUSIVE
  /// locking mode: the lock is taken at open and kept, no shared-memory index, no lock calls per
  /// transaction); when another process has it open, the open fails at once and says so.
  static Result<std::unique_ptr<Database>> open(const std::filesystem::path& path, bool read_only = false,
                                                bool exclusive = false);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  /// Runs one or more statements without results.
  Result<void> exec(std::string_view sql);
  /// The raw handle, for Statement only.
  sqlite3* handle() { return db_; }
  /// PRAGMA user_version.
  Result<int> userVersion();
  /// The last error text of this connection, prefixed with the file name.
  std::string lastError() const;
  /// The last extended result code (e.g. SQLITE_FULL).
  int lastErrorCode() const;
  /// The file this connection opened.
  const std::filesystem::path& path() const { return path_; }

 private:
  Database(sqlite3* db, std::filesystem::path path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::filesystem::path path_;
};

/// A prepared statement. Reset and rebound for reuse.
class Statement {
 public:
  static Result<Statement> prepare(Database& db, std::string_view sql);
  Statement(Statement&& o) noexcept : db_(o.db_), stmt_(o.stmt_) { o.stmt_ = nullptr; }
  Statement& operator=(Statement&&) = delete;
  ~Statement();

  Statement& bind(int index, int64_t v);
  Statement& bind(int index, std::string_view v);
  Statement& bindBlob(int index, std::string_view v);
  Statement& bindNull(int index);
  /// Steps once: true when a row is available, false when done.
  Result<bool> step();
  /// Steps to completion, then resets.
  Result<void> run();
  /// Steps through every row, calling fn(*this) on each (its columns); the first error ends it.
  template <class Fn>
  Result<void> forEachRow(Fn&& fn) {
    while (true) {
      auto row = step();
      if (!row) {
        return row.error();
      }
      if (!row.value()) {
        return {};
      }
      fn(*this);
    }
  }
  /// Clears bindings and rewinds.
  void reset();
  int64_t columnInt(int col);
  std::string columnText(int col);

 private:
  Statement(Database* db, sqlite3_stmt* s) : db_(db), stmt_(s) {}
  Database* db_;
  sqlite3_stmt* stmt_;
};

/// BEGIN IMMEDIATE ... COMMIT; rolls back in the destructor unless committed.
class Transaction {
 public:
  static Result<Transaction> begin(Database& db);
  Transaction(Transaction&& o) noexcept : db_(o.db_), done_(o.done_) { o.done_ = true; }
  ~Transaction();
  /// Commits; on failure rolls back, with code NoSpace when the disk is full.
  Result<void> commit();

 private:
  explicit Transaction(Database& db) : db_(&db) {}
  Database* db_;
  bool done_ = false;
};

}  // namespace kflex::store
