// SPDX-License-Identifier: Apache-2.0
#include "hub/store/postgres_backend.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <thread>
#include <unordered_map>

#include "shared/common/log.hpp"

namespace kflex::hub {
namespace {

using Params = std::vector<std::optional<std::string>>;

std::string num(int64_t v) { return std::to_string(v); }

int64_t toInt(const std::optional<std::string>& v) { return v ? std::stoll(*v) : 0; }

// Schema version 2 of the kflex schema (meta row 'schema'); 2 added the leader row and the secrets.
constexpr const char* kSchema = R"(
  CREATE SCHEMA IF NOT EXISTS kflex;
  CREATE TABLE IF NOT EXISTS kflex.meta (key text PRIMARY KEY, value bigint NOT NULL);
  INSERT INTO kflex.meta VALUES ('revision', 0), ('compacted', 0), ('schema', 2) ON CONFLICT (key) DO NOTHING;
  UPDATE kflex.meta SET value = 2 WHERE key = 'schema' AND value < 2;
  CREATE TABLE IF NOT EXISTS kflex.leader (name text PRIMARY KEY, holder text NOT NULL, term bigint NOT NULL,
                                           renewed_at timestamptz NOT NULL);
  INSERT INTO kflex.leader VALUES ('controllers', '', 0, '-infinity') ON CONFLICT (name) DO NOTHING;
  CREATE TABLE IF NOT EXISTS kflex.secrets (name text PRIMARY KEY, sealed text NOT NULL);
  CREATE TABLE IF NOT EXISTS kflex.objects (resource text NOT NULL, name text NOT NULL, revision bigint NOT NULL,
                                            PRIMARY KEY (resource, name));
  CREATE TABLE IF NOT EXISTS kflex.events (revision bigint PRIMARY KEY, type smallint NOT NULL, resource text NOT NULL,
                                           name text NOT NULL, body text NOT NULL);
)";
constexpr int64_t kSchemaVersion = 2;
// The advisory lock around the schema's creation and upgrade (an arbitrary constant).
constexpr const char* kSchemaLock = "7022654180773562440";
// The channel every group notifies on commit, with its last revision.
constexpr const char* kChannel = "kflex_events";

// Wakes on the other replicas' commits: LISTEN on a connection of its own.
class PostgresSignal : public ChangeSignal {
 public:
  explicit PostgresSignal(const store::PostgresTarget& target)
      : conn_(store::Connection::deferred(target, std::chrono::seconds(5))) {}
  ~PostgresSignal() override {
    if (wake_ >= 0) {
      ::close(wake_);
    }
  }

  int64_t wait(std::chrono::milliseconds timeout) override {
    if (!conn_->ok()) {
      if (!listen()) {
        // The server is away: try again after the timeout (the store polls meanwhile).
        idle(timeout);
        return 0;
      }
    }
    auto got = conn_->awaitNotifications(timeout, wake_);
    drainWake();
    if (!got) {
      if (!lost_logged_) {
        log::warn("lost the datastore connection that follows other replicas' writes; reconnecting",
                  {{"error", got.error().message}});
        lost_logged_ = true;
      }
      return 0;
    }
    int64_t highest = 0;
    for (const auto& payload : *got) {
      highest = std::max<int64_t>(highest, std::strtoll(payload.c_str(), nullptr, 10));
    }
    return highest;
  }

  void interrupt() override {
    uint64_t one = 1;
    (void)!::write(wake_, &one, sizeof one);
  }

 private:
  // (Connected again, LISTEN again: a new session listens to nothing.)
  bool listen() {
    if (!conn_->reconnect() || !conn_->exec(std::string("LISTEN ") + kChannel)) {
      return false;
    }
    if (lost_logged_) {
      log::info("following other replicas' writes again");
      lost_logged_ = false;
    }
    return true;
  }
  void idle(std::chrono::milliseconds timeout) {
    pollfd fd{wake_, POLLIN, 0};
    (void)::poll(&fd, 1, int(timeout.count()));
    drainWake();
  }
  void drainWake() {
    uint64_t n = 0;
    (void)!::read(wake_, &n, sizeof n);
  }

  std::unique_ptr<store::Connection> conn_;
  int wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  bool lost_logged_ = false;
};

// The controllers' lead: a row holder, term and renewal time, on a connection of its own. Times
// are the database's (clock_timestamp()), never a replica's. Taking the lead also takes the
// revision lock, so a new term is ordered among the groups: every group that commits after it
// sees it, and a deposed leader's fenced write fails (docs/dev/replicas.md).
class PostgresElection : public LeaderElection {
 public:
  PostgresElection(const store::PostgresTarget& target, std::string holder, std::chrono::seconds lease)
      : conn_(store::Connection::deferred(target, std::chrono::seconds(5))), holder_(std::move(holder)),
        lease_(num(lease.count())) {}

  Result<int64_t> campaign() override {
    if (auto r = conn_->ensure(); !r) {
      term_ = 0;
      return r.error();
    }
    if (term_ != 0) {
      auto renewed = conn_->query(
          "UPDATE kflex.leader SET renewed_at = clock_timestamp() WHERE name = 'controllers' AND holder = $1 AND "
          "term = $2 RETURNING term",
          Params{holder_, num(term_)});
      if (!renewed) {
        return renewed.error();
      }
      if (!renewed->empty()) {
        return term_;
      }
      term_ = 0;  // another replica took it
    }
    auto free = conn_->query(
        "SELECT 1 FROM kflex.leader WHERE name = 'controllers' AND renewed_at < clock_timestamp() - make_interval(secs "
        "=> $1)",
        Params{lease_});
    if (!free) {
      return free.error();
    }
    if (free->empty()) {
      return int64_t(0);
    }
    if (auto r = conn_->exec("BEGIN"); !r) {
      return r.error();
    }
    auto taken = conn_->query("SELECT value FROM kflex.meta WHERE key = 'revision' FOR UPDATE");
    if (taken) {
      taken = conn_->query(
          "UPDATE kflex.leader SET holder = $1, term = term + 1, renewed_at = clock_timestamp() WHERE name = "
          "'controllers' AND renewed_at < clock_timestamp() - make_interval(secs => $2) RETURNING term",
          Params{holder_, lease_});
    }
    if (!taken) {
      (void)conn_->exec("ROLLBACK");
      return taken.error();
    }
    if (auto r = conn_->exec("COMMIT"); !r) {
      return r.error();  // (lost or not, the next campaign settles it: the row names the holder)
    }
    term_ = taken->empty() ? 0 : toInt(taken->front()[0]);
    return term_;
  }

  void resign() override {
    if (term_ != 0 && conn_->ok()) {
      (void)conn_->exec("UPDATE kflex.leader SET renewed_at = '-infinity' WHERE name = 'controllers' AND holder = $1 "
                        "AND term = $2",
                        Params{holder_, num(term_)});
    }
    term_ = 0;
  }

 private:
  std::unique_ptr<store::Connection> conn_;
  std::string holder_;
  std::string lease_;  // seconds
  int64_t term_ = 0;
};

}  // namespace

std::unique_ptr<LeaderElection> PostgresBackend::leaderElection(const std::string& holder, std::chrono::seconds lease) {
  return std::make_unique<PostgresElection>(target_, holder, lease);
}

Result<int64_t> PostgresBackend::leaderTerm() {
  auto t = conn_->query("SELECT term FROM kflex.leader WHERE name = 'controllers'");
  if (!t) {
    return abort(t.error());
  }
  return t->empty() ? int64_t(0) : toInt(t->front()[0]);
}

std::unique_ptr<ChangeSignal> PostgresBackend::changeSignal() { return std::make_unique<PostgresSignal>(target_); }

Result<std::unique_ptr<PostgresBackend>> PostgresBackend::open(const store::PostgresTarget& target) {
  // Acknowledged means committed and flushed, whatever the server's default says (set on every
  // connection, reconnections included).
  auto conn = store::Connection::open(target, std::chrono::seconds(10), "-c synchronous_commit=on");
  if (!conn) {
    return conn.error();
  }
  return std::unique_ptr<PostgresBackend>(new PostgresBackend(target, std::move(conn.value())));
}

Error PostgresBackend::abort(const Error& e) {
  rollback();
  return e;
}

Result<void> migrateSchema(store::Connection& conn, const std::string& where) {
  // (Several statements in one simple query run as one transaction.) CREATE ... IF NOT EXISTS is
  // not safe against itself in another session: replicas starting at once take turns.
  if (auto r = conn.exec(std::string("BEGIN; SELECT pg_advisory_xact_lock(") + kSchemaLock + ");" + kSchema + "COMMIT;");
      !r) {
    (void)conn.exec("ROLLBACK");
    return r.error();
  }
  auto v = conn.query("SELECT value FROM kflex.meta WHERE key = 'schema'");
  if (!v) {
    return v.error();
  }
  if (!v->empty() && toInt(v->front()[0]) > kSchemaVersion) {
    return fail(where + ": schema version " + num(toInt(v->front()[0])) +
                " is newer than this kflex-hub understands (" + num(kSchemaVersion) + "); run a newer kflex-hub");
  }
  return {};
}

Result<void> PostgresBackend::migrate() { return migrateSchema(*conn_, where_); }

Result<LoadedState> PostgresBackend::load() {
  if (auto r = migrate(); !r) {
    return r.error();
  }
  // One snapshot for all the reads.
  if (auto r = conn_->exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); !r) {
    return r.error();
  }
  auto out = readAll();
  (void)conn_->exec(out ? "COMMIT" : "ROLLBACK");
  if (out) {
    revision_ = out->revision;
  }
  return out;
}

Result<LoadedState> PostgresBackend::readAll() {
  LoadedState out;
  auto meta = conn_->query("SELECT key, value FROM kflex.meta");
  if (!meta) {
    return meta.error();
  }
  for (const auto& row : *meta) {
    if (row[0] == "revision") {
      out.revision = toInt(row[1]);
    } else if (row[0] == "compacted") {
      out.compacted = toInt(row[1]);
    }
  }
  auto objs = conn_->query(
      "SELECT o.resource, o.name, o.revision, e.body FROM kflex.objects o "
      "LEFT JOIN kflex.events e ON e.revision = o.revision");
  if (!objs) {
    return objs.error();
  }
  std::unordered_map<std::string, ObjectPtr> by_key;
  for (auto& row : *objs) {
    if (!row[3]) {
      return fail(where_ + ": the stored object " + row[0].value_or("") + " " + row[1].value_or("") +
                  " has no body (revision " + row[2].value_or("") + "); the database is damaged: restore a backup");
    }
    auto rec = storedRecord(*row[0], *row[1], toInt(row[2]), std::move(*row[3]));
    by_key[rec->resource + "\n" + rec->name] = rec;
    out.objects.push_back(std::move(rec));
  }
  auto evs = readEvents(out.compacted, &by_key);
  if (!evs) {
    return evs.error();
  }
  out.events.assign(std::make_move_iterator(evs->begin()), std::make_move_iterator(evs->end()));
  return out;
}

Result<std::vector<EventPtr>> PostgresBackend::readEvents(int64_t after,
                                                          const std::unordered_map<std::string, ObjectPtr>* live) {
  auto rows = conn_->query(
      "SELECT revision, type, resource, name, body FROM kflex.events WHERE revision > $1 ORDER BY revision",
      Params{num(after)});
  if (!rows) {
    return rows.error();
  }
  std::vector<EventPtr> out;
  out.reserve(rows->size());
  for (auto& row : *rows) {
    auto ev = std::make_shared<Event>();
    ev->revision = toInt(row[0]);
    ev->type = static_cast<EventType>(toInt(row[1]));
    // Share the bytes with the live object when this event wrote its current version.
    auto it = live ? live->find(*row[2] + "\n" + *row[3]) : decltype(live->end()){};
    if (live && it != live->end() && it->second->revision == ev->revision) {
      ev->object = it->second;
    } else {
      ev->object = storedRecord(*row[2], *row[3], ev->revision, std::move(*row[4]));
    }
    out.push_back(std::move(ev));
  }
  return out;
}

Result<Changes> PostgresBackend::changesSince(int64_t stored) {
  // Called with the others' groups settled: under the revision lock, or in one snapshot.
  Changes out;
  auto compacted = conn_->query("SELECT value FROM kflex.meta WHERE key = 'compacted'");
  if (!compacted) {
    return compacted.error();
  }
  out.compacted = compacted->empty() ? 0 : toInt(compacted->front()[0]);
  if (out.compacted > revision_) {
    // Events this store has not seen are compacted away: read everything anew.
    auto all = readAll();
    if (!all) {
      return all.error();
    }
    out.revision = all->revision;
    out.reload = std::make_shared<LoadedState>(std::move(all.value()));
  } else {
    auto evs = readEvents(revision_, nullptr);
    if (!evs) {
      return evs.error();
    }
    // Commit order is revision order (docs/dev/replicas.md): what this snapshot shows after
    // revision_ is every revision up to `stored`, no gap.
    if (evs->empty() || evs->front()->revision != revision_ + 1 || evs->back()->revision != stored ||
        int64_t(evs->size()) != stored - revision_) {
      return fail(Errc::Internal, where_ + ": the event log between revisions " + num(revision_) + " and " +
                                      num(stored) + " has gaps; the database was changed by something other "
                                      "than kflex-hub: restore a backup");
    }
    out.revision = stored;
    out.events = std::move(evs.value());
  }
  revision_ = out.revision;
  return out;
}

Result<Changes> PostgresBackend::begin() {
  auto started = conn_->ok() ? conn_->exec("BEGIN") : Result<void>(fail(Errc::Unavailable, "not connected"));
  if (!started && started.error().code == Errc::Unavailable) {
    // The server restarted or the network broke since the last group (libpq notices only on
    // use): connect again, once.
    if (auto r = conn_->reconnect(); !r) {
      return r.error();
    }
    started = conn_->exec("BEGIN");
  }
  if (!started) {
    return started.error();
  }
  in_transaction_ = true;
  // Groups of every writer commit one at a time, in revision order (docs/dev/replicas.md). The
  // transaction's id settles a COMMIT whose answer is lost.
  auto rev = conn_->query("SELECT value, pg_current_xact_id()::text FROM kflex.meta WHERE key = 'revision' FOR UPDATE");
  if (!rev) {
    return abort(rev.error());
  }
  if (rev->empty()) {
    return abort(fail(Errc::Internal, where_ + ": the revision row is missing; the database was changed by "
                                              "something other than kflex-hub: restore a backup"));
  }
  int64_t stored = toInt(rev->front()[0]);
  xact_ = rev->front()[1].value_or("");
  Changes changes;
  if (stored != revision_) {
    // Other replicas' groups since this one's last: the group is decided against them.
    auto c = changesSince(stored);
    if (!c) {
      return abort(c.error());
    }
    changes = std::move(c.value());
  }
  group_last_ = revision_;
  return changes;
}

Result<Changes> PostgresBackend::catchUp() {
  if (auto r = conn_->ensure(); !r) {
    return r.error();
  }
  auto rev = conn_->query("SELECT value FROM kflex.meta WHERE key = 'revision'");
  if (!rev) {
    return rev.error();
  }
  int64_t stored = rev->empty() ? 0 : toInt(rev->front()[0]);
  if (stored == revision_) {
    return Changes{};
  }
  // One snapshot: the revision row and the events it covers agree.
  if (auto r = conn_->exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); !r) {
    return r.error();
  }
  auto again = conn_->query("SELECT value FROM kflex.meta WHERE key = 'revision'");
  Result<Changes> out = again ? changesSince(again->empty() ? 0 : toInt(again->front()[0]))
                              : Result<Changes>(again.error());
  (void)conn_->exec(out ? "COMMIT" : "ROLLBACK");
  return out;
}

// A group's new rows wait here and go in one multi-row INSERT per table (two round trips for the
// group instead of two per write); anything else the group does flushes them first, so the
// statements still run in the group's order.
Result<void> PostgresBackend::put(const std::string& resource, const std::string& name, int64_t revision) {
  auto key = std::make_pair(resource, name);
  auto [it, fresh] = pending_put_index_.emplace(key, pending_puts_.size());
  if (fresh) {
    pending_puts_.push_back({std::move(key), revision});
  } else {
    pending_puts_[it->second].second = revision;  // written twice in the group: the last one
  }
  return pending_puts_.size() + pending_events_.size() >= kMaxPendingRows ? flush() : Result<void>{};
}

Result<void> PostgresBackend::remove(const std::string& resource, const std::string& name) {
  if (auto f = flush(); !f) {
    return f;
  }
  auto r = conn_->exec("DELETE FROM kflex.objects WHERE resource = $1 AND name = $2", Params{resource, name});
  return r ? r : Result<void>(abort(r.error()));
}

Result<void> PostgresBackend::appendEvent(const Event& e) {
  pending_events_.push_back(std::make_shared<Event>(e));
  group_last_ = std::max(group_last_, e.revision);
  return pending_puts_.size() + pending_events_.size() >= kMaxPendingRows ? flush() : Result<void>{};
}

Result<void> PostgresBackend::flush() {
  if (!pending_events_.empty()) {
    std::string sql = "INSERT INTO kflex.events VALUES ";
    Params params;
    params.reserve(pending_events_.size() * 5);
    for (const auto& e : pending_events_) {
      size_t n = params.size();
      sql += (n == 0 ? "($" : ", ($") + num(int64_t(n + 1)) + ", $" + num(int64_t(n + 2)) + ", $" +
             num(int64_t(n + 3)) + ", $" + num(int64_t(n + 4)) + ", $" + num(int64_t(n + 5)) + ")";
      params.insert(params.end(), {num(e->revision), num(int64_t(e->type)), e->object->resource, e->object->name,
                                   e->object->bytes});
    }
    pending_events_.clear();
    if (auto r = conn_->exec(sql, params); !r) {
      return abort(r.error());
    }
  }
  if (!pending_puts_.empty()) {
    std::string sql = "INSERT INTO kflex.objects (resource, name, revision) VALUES ";
    Params params;
    params.reserve(pending_puts_.size() * 3);
    for (const auto& [key, revision] : pending_puts_) {
      size_t n = params.size();
      sql += (n == 0 ? "($" : ", ($") + num(int64_t(n + 1)) + ", $" + num(int64_t(n + 2)) + ", $" +
             num(int64_t(n + 3)) + ")";
      params.insert(params.end(), {key.first, key.second, num(revision)});
    }
    sql += " ON CONFLICT (resource, name) DO UPDATE SET revision = excluded.revision";
    pending_puts_.clear();
    pending_put_index_.clear();
    if (auto r = conn_->exec(sql, params); !r) {
      return abort(r.error());
    }
  }
  return {};
}

Result<void> PostgresBackend::dropEvent(int64_t revision) {
  if (auto f = flush(); !f) {
    return f;
  }
  auto r = conn_->exec("DELETE FROM kflex.events WHERE revision = $1", Params{num(revision)});
  return r ? r : Result<void>(abort(r.error()));
}

Result<void> PostgresBackend::compact(int64_t from, int64_t to) {
  if (auto f = flush(); !f) {
    return f;
  }
  auto r = conn_->exec(
      "DELETE FROM kflex.events WHERE revision > $1 AND revision <= $2 AND revision IS DISTINCT FROM "
      "(SELECT o.revision FROM kflex.objects o WHERE o.resource = events.resource AND o.name = events.name)",
      Params{num(from), num(to)});
  return r ? r : Result<void>(abort(r.error()));
}

Result<void> PostgresBackend::setMeta(int64_t revision, int64_t compacted) {
  if (auto f = flush(); !f) {
    return f;
  }
  auto r = conn_->exec("UPDATE kflex.meta SET value = $1 WHERE key = 'compacted'", Params{num(compacted)});
  if (!r) {
    return abort(r.error());
  }
  group_last_ = std::max(group_last_, revision);
  return {};
}

Result<void> PostgresBackend::commit() {
  if (auto f = flush(); !f) {
    return f;
  }
  // The revision row moves with every group: it is what the next group of any writer locks and
  // reads; the notification wakes the other replicas' followers when the group commits. One
  // round trip (the values are numbers this hub made).
  std::string last = num(group_last_);
  auto r = conn_->exec("UPDATE kflex.meta SET value = " + last + " WHERE key = 'revision'; NOTIFY " +
                       std::string(kChannel) + ", '" + last + "'; COMMIT");
  bool sent_commit = in_transaction_;
  in_transaction_ = false;
  if (!r && r.error().code == Errc::Unavailable && sent_commit) {
    // The connection went during COMMIT: whether the server committed is unknown until asked.
    auto committed = committedAfterLoss();
    if (!committed) {
      return committed.error();
    }
    if (!committed.value()) {
      return r;
    }
  } else if (!r) {
    (void)conn_->exec("ROLLBACK");  // after a failed statement the transaction is still open
    return r;
  }
  revision_ = group_last_;
  return {};
}

Result<bool> PostgresBackend::committedAfterLoss() {
  if (auto r = conn_->reconnect(); !r) {
    return fail(Errc::Internal, where_ + ": the connection was lost while committing and cannot be made again, so "
                                         "whether the last writes were stored is unknown: " + r.error().message);
  }
  // The server keeps the fate of recent transactions (pg_xact_status, PostgreSQL 13 and later).
  Result<std::vector<store::Connection::Row>> st = std::vector<store::Connection::Row>{};
  std::string status;
  // (Still "in progress" while the server finishes the old session's COMMIT.)
  for (int tries = 0; tries < 50; ++tries) {
    st = conn_->query("SELECT pg_xact_status($1::xid8)", Params{xact_});
    status = st && !st->empty() ? st->front()[0].value_or("") : "";
    if (status != "in progress") {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (status == "committed") {
    return true;
  }
  if (status == "aborted") {
    return false;
  }
  return fail(Errc::Internal, where_ + ": the connection was lost while committing, and the database cannot say "
                                       "whether transaction " + xact_ + " committed (" +
                                       (st ? status : st.error().message) + ")");
}

void PostgresBackend::rollback() {
  pending_events_.clear();
  pending_puts_.clear();
  pending_put_index_.clear();
  if (in_transaction_) {
    (void)conn_->exec("ROLLBACK");
    in_transaction_ = false;
  }
}

}  // namespace kflex::hub
