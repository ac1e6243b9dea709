// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "hub/store/store_backend.hpp"
#include "shared/store/sqlite.hpp"

namespace kflex::hub {

/**
 * The store in one SQLite file (the hub's DATA_DIR/hub.db, WAL): objects name the event that holds
 * their current body. Commits write the log without waiting for the disk (synchronous=NORMAL);
 * sync() is an fdatasync of the write-ahead log, which gives each group synchronous=FULL's
 * guarantee with the wait moved off the writer. The hub alone uses the file: a second hub on the
 * same data dir is refused at open.
 */
class SqliteBackend : public StoreBackend {
 public:
  static Result<std::unique_ptr<SqliteBackend>> open(const std::filesystem::path& path);
  ~SqliteBackend() override;

  const std::string& where() const override { return where_; }
  Result<LoadedState> load() override;
  Result<Changes> begin() override;
  Result<void> put(const std::string& resource, const std::string& name, int64_t revision) override;
  Result<void> remove(const std::string& resource, const std::string& name) override;
  Result<void> appendEvent(const Event& event) override;
  Result<void> dropEvent(int64_t revision) override;
  Result<void> compact(int64_t from, int64_t to) override;
  Result<void> setMeta(int64_t revision, int64_t compacted) override;
  Result<void> commit() override;
  void rollback() override;
  Result<void> sync() override;

 private:
  struct Statements;
  SqliteBackend(std::filesystem::path path, std::unique_ptr<store::Database> db);
  Result<void> migrate();
  /// Reads every object, the retained events and the revisions.
  Result<void> readAll(LoadedState& out);
  /// Prepares the statements of a group and opens the write-ahead log (after load's reads).
  Result<void> prepareWrites();
  /// The error of a statement that failed: NoSpace when the disk is full.
  Error failed(const Error& e) const;

  std::filesystem::path path_;
  std::string where_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<Statements> statements_;  // prepared once (after the migration)
  std::optional<store::Transaction> txn_;
  int wal_fd_ = -1;  // the write-ahead log, for sync()
};

}  // namespace kflex::hub
