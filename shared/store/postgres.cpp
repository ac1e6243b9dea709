// SPDX-License-Identifier: Apache-2.0
#include "shared/store/postgres.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include <cerrno>

#include <memory>
#include <vector>

namespace kflex::store {
namespace {

using Conn = std::unique_ptr<PGconn, decltype(&PQfinish)>;
using Res = std::unique_ptr<PGresult, decltype(&PQclear)>;

// The parts of postgres://[user[:password]@]host[:port][/db][?query].
struct Parts {
  std::string scheme, user, password, hostport, db, query;
};

Result<Parts> split(const std::string& dsn) {
  Parts p;
  auto colon = dsn.find("://");
  if (colon == std::string::npos) {
    return fail("not a postgres:// URI");
  }
  p.scheme = dsn.substr(0, colon);
  std::string rest = dsn.substr(colon + 3);
  if (auto q = rest.find('?'); q != std::string::npos) {
    p.query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    p.db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  if (auto at = rest.rfind('@'); at != std::string::npos) {
    std::string cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto c = cred.find(':');
    p.user = cred.substr(0, c);
    if (c != std::string::npos) {
      p.password = cred.substr(c + 1);
    }
  }
  p.hostport = rest;
  return p;
}

std::string join(const Parts& p, bool with_password) {
  std::string out = p.scheme + "://";
  if (!p.user.empty()) {
    out += p.user;
    if (with_password && !p.password.empty()) {
      out += ":" + p.password;
    }
    out += "@";
  }
  out += p.hostport;
  if (!p.db.empty()) {
    out += "/" + p.db;
  }
  if (!p.query.empty()) {
    out += "?" + p.query;
  }
  return out;
}

// `options`: session settings for the server ("-c name=value ..."), "" for none.
Result<Conn> connect(const PostgresTarget& t, std::chrono::seconds timeout, const std::string& options = "") {
  std::string secs = std::to_string(std::max<long>(1, timeout.count()));
  std::vector<const char*> keys = {"dbname", "connect_timeout"};
  std::vector<const char*> values = {t.dsn.c_str(), secs.c_str()};
  if (!options.empty()) {
    keys.push_back("options");
    values.push_back(options.c_str());
  }
  if (!t.password.empty()) {
    keys.push_back("password");
    values.push_back(t.password.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  Conn c(PQconnectdbParams(keys.data(), values.data(), 1), PQfinish);
  if (!c || PQstatus(c.get()) != CONNECTION_OK) {
    std::string msg = c ? PQerrorMessage(c.get()) : "out of memory";
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) {
      msg.pop_back();
    }
    return fail("cannot connect to PostgreSQL at " + redacted(t.dsn) + ": " + msg);
  }
  return c;
}

}  // namespace

PostgresTarget withDatabase(const PostgresTarget& t, const std::string& database) {
  auto p = split(t.dsn);
  if (!p) {
    return t;
  }
  p->db = database;
  return {join(*p, true), t.password};
}

Result<std::pair<std::string, uint16_t>> serverOf(const PostgresTarget& t) {
  auto p = split(t.dsn);
  if (!p || p->hostport.empty()) {
    return fail("no server in " + redacted(t.dsn));
  }
  std::string host = p->hostport;
  uint16_t port = 5432;
  auto colon = host.rfind(':');
  if (colon != std::string::npos && host.find(']', colon) == std::string::npos) {
    port = static_cast<uint16_t>(std::atoi(host.substr(colon + 1).c_str()));
    host = host.substr(0, colon);
  }
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(host, port);
}

std::string kineEndpoint(const PostgresTarget& t) {
  auto p = split(t.dsn);
  if (!p) {
    return t.dsn;
  }
  p->scheme = "postgres";
  return join(*p, false);
}

std::string passfileLine(const std::string& password) {
  std::string escaped;
  for (char c : password) {
    if (c == ':' || c == '\\') {
      escaped += '\\';
    }
    escaped += c;
  }
  return "*:*:*:*:" + escaped + "\n";
}

std::string redacted(const std::string& dsn) {
  auto p = split(dsn);
  return p ? join(*p, false) : "<not a URI>";
}

std::string databaseNameFor(const std::string& control_plane) {
  std::string out = control_plane;
  for (char& c : out) {
    if (c == '-') {
      c = '_';
    }
  }
  return out;
}

Result<void> validateDsn(const std::string& dsn) {
  auto p = split(dsn);
  if (!p || (p->scheme != "postgres" && p->scheme != "postgresql") || p->hostport.empty()) {
    return fail("\"" + redacted(dsn) + "\" is not a PostgreSQL URI such as postgres://kflex@db.example:5432/postgres?sslmode=require");
  }
  if (!p->password.empty()) {
    return fail("the DSN holds a password; put it in a file (postgres_password_file) instead, so it shows in no "
                "process list or log");
  }
  return {};
}

std::string quoteIdentifier(const std::string& name) {
  std::string out = "\"";
  for (char c : name) {
    out += c;
    if (c == '"') {
      out += '"';
    }
  }
  return out + "\"";
}

Result<void> execute(const PostgresTarget& t, const std::string& sql, std::chrono::seconds timeout) {
  auto c = connect(t, timeout);
  if (!c) {
    return c.error();
  }
  Res r(PQexec(c->get(), sql.c_str()), PQclear);
  auto st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    std::string msg = PQerrorMessage(c->get());
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) {
      msg.pop_back();
    }
    return fail(msg);
  }
  return {};
}

Result<bool> databaseExists(const PostgresTarget& t, const std::string& name, std::chrono::seconds timeout) {
  auto c = connect(t, timeout);
  if (!c) {
    return c.error();
  }
  const char* params[] = {name.c_str()};
  Res r(PQexecParams(c->get(), "SELECT 1 FROM pg_database WHERE datname = $1", 1, nullptr, params, nullptr, nullptr, 0),
        PQclear);
  if (!r || PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
    return fail(std::string("cannot list databases: ") + PQerrorMessage(c->get()));
  }
  return PQntuples(r.get()) > 0;
}

Result<void> createDatabase(const PostgresTarget& t, const std::string& name) {
  auto exists = databaseExists(t, name);
  if (!exists) {
    return exists.error();
  }
  if (*exists) {
    return {};
  }
  if (auto r = execute(t, "CREATE DATABASE " + quoteIdentifier(name)); !r) {
    // (Someone else may have made it meanwhile.)
    auto again = databaseExists(t, name);
    if (again && *again) {
      return {};
    }
    return fail("cannot create database " + name + ": " + r.error().message);
  }
  return {};
}

Result<void> dropDatabase(const PostgresTarget& t, const std::string& name) {
  if (auto r = execute(t, "DROP DATABASE IF EXISTS " + quoteIdentifier(name) + " WITH (FORCE)"); !r) {
    return fail("cannot drop database " + name + ": " + r.error().message);
  }
  return {};
}

struct Connection::Impl {
  Conn conn{nullptr, PQfinish};
};

Result<std::unique_ptr<Connection>> Connection::open(const PostgresTarget& t, std::chrono::seconds timeout,
                                                     std::string options) {
  auto c = deferred(t, timeout, std::move(options));
  if (auto r = c->reconnect(); !r) {
    return r.error();
  }
  return c;
}

std::unique_ptr<Connection> Connection::deferred(const PostgresTarget& t, std::chrono::seconds timeout,
                                                 std::string options) {
  return std::unique_ptr<Connection>(new Connection(t, timeout, std::move(options)));
}

Result<void> Connection::ensure() { return ok() ? Result<void>{} : reconnect(); }

Connection::Connection(PostgresTarget t, std::chrono::seconds timeout, std::string options)
    : target_(std::move(t)), timeout_(timeout), options_(std::move(options)), impl_(std::make_unique<Impl>()) {}

Connection::~Connection() = default;

bool Connection::ok() const { return impl_->conn && PQstatus(impl_->conn.get()) == CONNECTION_OK; }

Result<void> Connection::reconnect() {
  auto c = connect(target_, timeout_, options_);
  if (!c) {
    return fail(Errc::Unavailable, c.error().message);
  }
  impl_->conn = std::move(c.value());
  // Notices ("already exists, skipping") are not errors, and libpq would print them to stderr.
  PQsetNoticeProcessor(impl_->conn.get(), [](void*, const char*) {}, nullptr);
  return {};
}

Result<std::vector<Connection::Row>> Connection::query(const std::string& sql,
                                                       const std::vector<std::optional<std::string>>& params) {
  if (!ok()) {
    return fail(Errc::Unavailable, "the connection to PostgreSQL at " + redacted(target_.dsn) + " is lost");
  }
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) {
    values.push_back(p ? p->c_str() : nullptr);
  }
  // (Without parameters, as a simple query: several statements may go in one.)
  Res res(params.empty() ? PQexec(impl_->conn.get(), sql.c_str())
                         : PQexecParams(impl_->conn.get(), sql.c_str(), int(values.size()), nullptr, values.data(),
                                        nullptr, nullptr, 0),
          PQclear);
  ExecStatusType st = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    std::string msg = PQerrorMessage(impl_->conn.get());
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) {
      msg.pop_back();
    }
    const char* state = res ? PQresultErrorField(res.get(), PG_DIAG_SQLSTATE) : nullptr;
    std::string sqlstate = state ? state : "";
    Errc code = Errc::Internal;
    if (!ok()) {
      code = Errc::Unavailable;
    } else if (sqlstate == "53100") {
      code = Errc::NoSpace;  // disk_full
    } else if (sqlstate == "40001" || sqlstate == "40P01") {
      code = Errc::Conflict;
    }
    return fail(code, "PostgreSQL at " + redacted(target_.dsn) + ": " + msg);
  }
  std::vector<Row> rows;
  int n = PQntuples(res.get());
  int cols = PQnfields(res.get());
  rows.reserve(size_t(n));
  for (int i = 0; i < n; ++i) {
    Row row;
    row.reserve(size_t(cols));
    for (int j = 0; j < cols; ++j) {
      if (PQgetisnull(res.get(), i, j)) {
        row.emplace_back(std::nullopt);
      } else {
        row.emplace_back(std::string(PQgetvalue(res.get(), i, j), size_t(PQgetlength(res.get(), i, j))));
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

Result<std::vector<std::string>> Connection::awaitNotifications(std::chrono::milliseconds timeout, int wake_fd) {
  auto lost = [&] {
    return fail(Errc::Unavailable, "the connection to PostgreSQL at " + redacted(target_.dsn) + " is lost");
  };
  if (!ok()) {
    return lost();
  }
  PGconn* c = impl_->conn.get();
  auto take = [c] {
    std::vector<std::string> out;
    while (PGnotify* n = PQnotifies(c)) {
      out.emplace_back(n->extra ? n->extra : "");
      PQfreemem(n);
    }
    return out;
  };
  // Some may have come with the results of an earlier statement.
  if (auto early = take(); !early.empty()) {
    return early;
  }
  pollfd fds[2] = {{PQsocket(c), POLLIN, 0}, {wake_fd, POLLIN, 0}};
  int n = ::poll(fds, wake_fd >= 0 ? 2 : 1, int(timeout.count()));
  if (n < 0 && errno != EINTR) {
    return lost();
  }
  if (n > 0 && fds[0].revents != 0) {
    // Readable, or hung up: PQconsumeInput tells which.
    if (PQconsumeInput(c) == 0 || PQstatus(c) != CONNECTION_OK) {
      impl_->conn.reset();
      return lost();
    }
  }
  return take();
}

Result<void> Connection::exec(const std::string& sql, const std::vector<std::optional<std::string>>& params) {
  auto r = query(sql, params);
  if (!r) {
    return r.error();
  }
  return {};
}

}  // namespace kflex::store
