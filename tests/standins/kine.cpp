// SPDX-License-Identifier: Apache-2.0
// Stand-in for Kine (k3s-io/kine), the etcd shim the k8s type runs in front of PostgreSQL. It
// imitates one release (KFLEX_STANDIN_KINE_VERSION, default v0.11.4, the one KubeFlex pins) the
// way that release behaves: its flag set (unknown flags refused), KINE_* variables read only from
// v0.14.1 on, postgresql:// refused before v0.13.1, and without --endpoint SQLite in ./db/state.db
// of the working directory, healthy all the same. With PostgreSQL it connects through libpq, which
// honours PGPASSFILE and PGPASSWORD as kine's pgx does, creates the database when it is missing
// and its `kine` table and indexes in it, and keeps a connection. It listens on --listen-address
// (default 0.0.0.0:2379; unix://PATH for a socket) and serves metrics on --metrics-bind-address
// (default :8080, fatal when taken; 0 turns it off). Instead of etcd's gRPC it answers one health
// line on its port ("health" -> "ok", or why not), which is how the kube-apiserver stand-in
// checks its storage.
#include <libpq-fe.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include <algorithm>
#include <iostream>
#include <memory>

#include "shared/common/log.hpp"
#include "shared/store/postgres.hpp"
#include "tests/standins/standin.hpp"

namespace {

using namespace kflex;
using tcp = net::ip::tcp;

// The release this stand-in imitates: KFLEX_STANDIN_KINE_VERSION (vMAJOR.MINOR.PATCH), else
// v0.11.4, the release KubeFlex pins and the oldest kflex supports. What differs between releases
// and matters to kflex is below, each read from that release's main.go or pkg/app/app.go and
// pkg/drivers (docs/launch-contract.md).
struct Release {
  std::string name = "v0.11.4";
  int minor = 11;
  int patch = 4;
  bool atLeast(int m, int p) const { return minor > m || (minor == m && patch >= p); }
};

Release release() {
  Release r;
  if (const char* v = std::getenv("KFLEX_STANDIN_KINE_VERSION"); v != nullptr && *v != '\0') {
    int major = -1;
    if (std::sscanf(v, "v%d.%d.%d", &major, &r.minor, &r.patch) == 3 && major == 0) {
      r.name = v;
    } else {
      std::cerr << "KFLEX_STANDIN_KINE_VERSION: want v0.MINOR.PATCH, not " << v << "\n";
      std::exit(2);
    }
  }
  return r;
}

std::vector<standin::FlagSpec> kineFlags(const Release& rel) {
  std::vector<std::pair<const char*, bool>> names = {
      {"listen-address", false}, {"endpoint", false}, {"ca-file", false}, {"cert-file", false},
      {"key-file", false}, {"metrics-bind-address", false}, {"server-cert-file", false},
      {"server-key-file", false}, {"datastore-max-idle-connections", false},
      {"datastore-max-open-connections", false}, {"datastore-connection-max-lifetime", false},
      {"slow-sql-threshold", false}, {"metrics-enable-profiling", true},
      {"watch-progress-notify-interval", false}, {"debug", true}};
  if (rel.atLeast(12, 0)) {
    names.push_back({"emulated-etcd-version", false});
  }
  if (rel.atLeast(12, 1)) {
    names.push_back({"skip-verify", true});
  }
  if (rel.atLeast(13, 15)) {
    for (const char* n : {"log-format", "slow-sql-warning-threshold", "compact-interval", "compact-interval-jitter",
                          "compact-timeout", "compact-min-retain", "compact-batch-size", "poll-batch-size"}) {
      names.push_back({n, false});
    }
    names.push_back({"metrics-ignore-tls-config", true});
  }
  if (rel.atLeast(14, 10)) {
    names.push_back({"trusted-ca-file", false});
  }
  if (rel.atLeast(16, 0)) {
    for (const char* n : {"datastore-connection-max-idle-time", "peer-bind-address", "peer-advertise-address",
                          "s3-bucket", "s3-folder", "s3-endpoint", "s3-region", "s3-access-key", "s3-secret-key",
                          "s3-session-token", "s3-profile", "s3-ca-bundle"}) {
      names.push_back({n, false});
    }
  }
  // (No release has --table-name: the table is always `kine`.)
  std::vector<standin::FlagSpec> f;
  for (const auto& [n, is_bool] : names) {
    // Every flag has a KINE_* variable from v0.14.1 on; before, kine reads none.
    std::string env;
    if (rel.atLeast(14, 1)) {
      env = "KINE_";
      for (const char* c = n; *c; ++c) {
        env += *c == '-' ? '_' : static_cast<char>(std::toupper(*c));
      }
    }
    f.push_back({n, is_bool, {}, env});
  }
  return f;
}

int fatal(const std::string& msg) {
  log::error(msg);
  return 1;
}

// host:port (":8080" = all addresses) -> endpoint.
bool parseListen(const std::string& text, tcp::endpoint& ep) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) {
    return false;
  }
  std::string host = text.substr(0, colon);
  boost::system::error_code ec;
  auto addr = host.empty() ? net::ip::address(net::ip::address_v4::any()) : net::ip::make_address(host, ec);
  if (ec) {
    return false;
  }
  ep = tcp::endpoint(addr, static_cast<uint16_t>(std::atoi(text.substr(colon + 1).c_str())));
  return true;
}

struct Database {
  std::unique_ptr<PGconn, decltype(&PQfinish)> pg{nullptr, PQfinish};
  sqlite3* lite = nullptr;
  std::string problem;  // "" when healthy
};

Result<void> setUpPostgres(Database& db, const std::string& endpoint) {
  // Kine's own parsing: the database is the path (default "kubernetes"), created when missing.
  std::string uri = endpoint;
  std::string query;
  if (auto q = uri.find('?'); q != std::string::npos) {
    query = uri.substr(q);
    uri = uri.substr(0, q);
  }
  auto scheme_end = uri.find("://");
  auto slash = uri.find('/', scheme_end + 3);
  std::string name = slash == std::string::npos || slash + 1 >= uri.size() ? "kubernetes" : uri.substr(slash + 1);
  std::string server = slash == std::string::npos ? uri : uri.substr(0, slash);
  store::PostgresTarget admin{server + "/postgres" + query, ""};
  log::info("Configuring postgres database connection pooling: maxIdleConns=2, maxOpenConns=0, connMaxLifetime=0s");
  if (auto exists = store::databaseExists(admin, name); !exists) {
    return exists.error();
  } else if (!*exists) {
    log::info("creating database " + name);
    if (auto r = store::execute(admin, "CREATE DATABASE " + store::quoteIdentifier(name)); !r) {
      log::warn("failed to create database " + name + ": " + r.error().message);
    }
  }
  std::string target = server + "/" + name + query;
  db.pg.reset(PQconnectdb(target.c_str()));
  if (PQstatus(db.pg.get()) != CONNECTION_OK) {
    return fail(std::string("failed to connect to database: ") + PQerrorMessage(db.pg.get()));
  }
  log::info("Configuring database table schema and indexes, this may take a moment...");
  const char* schema =
      "CREATE TABLE IF NOT EXISTS kine (id BIGSERIAL PRIMARY KEY, name text COLLATE \"C\", created INTEGER, "
      "deleted INTEGER, create_revision BIGINT, prev_revision BIGINT, lease INTEGER, value bytea, old_value bytea);"
      "CREATE INDEX IF NOT EXISTS kine_name_index ON kine (name);"
      "CREATE INDEX IF NOT EXISTS kine_name_id_index ON kine (name,id);"
      "CREATE INDEX IF NOT EXISTS kine_id_deleted_index ON kine (id,deleted);"
      "CREATE INDEX IF NOT EXISTS kine_prev_revision_index ON kine (prev_revision);"
      "CREATE UNIQUE INDEX IF NOT EXISTS kine_name_prev_revision_uindex ON kine (name, prev_revision);";
  std::unique_ptr<PGresult, decltype(&PQclear)> r(PQexec(db.pg.get(), schema), PQclear);
  if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
    return fail(std::string("failed to create the kine table: ") + PQerrorMessage(db.pg.get()));
  }
  log::info("Database tables and indexes are up to date");
  return {};
}

void checkHealth(Database& db) {
  if (db.lite != nullptr) {
    return;
  }
  std::unique_ptr<PGresult, decltype(&PQclear)> r(PQexec(db.pg.get(), "SELECT COUNT(*) FROM kine"), PQclear);
  if (PQresultStatus(r.get()) == PGRES_TUPLES_OK) {
    if (!db.problem.empty()) {
      log::info("database connection restored");
    }
    db.problem.clear();
    return;
  }
  std::string why = PQerrorMessage(db.pg.get());
  while (!why.empty() && why.back() == '\n') {
    why.pop_back();
  }
  if (db.problem.empty()) {
    log::error("database unavailable: " + why);
  }
  db.problem = why.empty() ? "database unavailable" : why;
  PQreset(db.pg.get());
}

// What kine answers on its etcd port, over TCP or a unix socket.
template <class Socket>
net::awaitable<void> serveHealth(Socket s, const Database& db) {
  std::string buf;
  while (true) {
    auto [rec, n] = co_await net::async_read_until(s, net::dynamic_buffer(buf), '\n', net::as_tuple(net::use_awaitable));
    if (rec) {
      co_return;
    }
    buf.erase(0, n);
    std::string answer = db.problem.empty() ? "ok\n" : "unhealthy: " + db.problem + "\n";
    auto [wec, wn] = co_await net::async_write(s, net::buffer(answer), net::as_tuple(net::use_awaitable));
    if (wec) {
      co_return;
    }
  }
}

template <class Acceptor>
void acceptLoop(net::io_context& ioc, Acceptor& acceptor, const Database& db) {
  acceptor.async_accept([&ioc, &acceptor, &db](boost::system::error_code e, typename Acceptor::protocol_type::socket s) {
    if (e) {
      return;
    }
    net::co_spawn(ioc, serveHealth(std::move(s), db), net::detached);
    acceptLoop(ioc, acceptor, db);
  });
}

}  // namespace

int main(int argc, char** argv) {
  const Release rel = release();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && (args[0] == "--version" || args[0] == "-v")) {
    std::cout << "kine version " << rel.name << " (standin)\n";
    return 0;
  }
  const auto specs = kineFlags(rel);
  // Go's flag package stops at the first argument that is not a flag: before v0.16.0 kine ignores
  // it and everything after it; from v0.16.0 it refuses them.
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 2 || a[0] != '-') {
      if (rel.atLeast(16, 0)) {
        return fatal("kine does not accept positional arguments, only flags");
      }
      args.resize(i);
      break;
    }
    std::string name = a.substr(a[1] == '-' ? 2 : 1);
    bool takes_value = name.find('=') == std::string::npos &&
                       std::any_of(specs.begin(), specs.end(), [&](const auto& s) { return s.name == name && !s.is_bool; });
    i += takes_value ? 1 : 0;
  }
  auto flags = standin::Flags::parse(args, specs);
  if (!flags) {
    // urfave/cli v1 (up to v0.11.9) says "Incorrect Usage.", v2 "Incorrect Usage:"; then kine's
    // main logs the error as fatal and exits 1.
    std::cout << (rel.atLeast(11, 10) ? "Incorrect Usage: " : "Incorrect Usage. ") << flags.error().message
              << "\n\nNAME:\n   kine - Minimal etcd v3 API to support custom Kubernetes storage engines\n";
    return fatal(flags.error().message);
  }
  const auto& f = flags.value();
  Database db;
  std::string endpoint = f.get("endpoint");
  std::string scheme = endpoint.find("://") == std::string::npos ? "" : endpoint.substr(0, endpoint.find("://"));
  if (!endpoint.empty() && scheme.empty() && rel.atLeast(12, 2)) {
    return fatal("parsing storage endpoint: invalid datastore endpoint; endpoint should be a DSN URI in the format "
                 "<scheme>://<authority>");
  }
  if (scheme.empty() || scheme == "sqlite") {
    // No endpoint (before v0.12.2 also one without "://"): SQLite in ./db/state.db under the
    // working directory, and nothing in the log says so.
    std::error_code ec;
    std::filesystem::create_directories("db", ec);
    std::string path = scheme.empty() ? "./db/state.db" : endpoint.substr(9);
    if (auto q = path.find('?'); q != std::string::npos) {
      path.resize(q);
    }
    log::info("Configuring sqlite3 database connection pooling: maxIdleConns=2, maxOpenConns=0, connMaxLifetime=0s");
    if (sqlite3_open(path.c_str(), &db.lite) != SQLITE_OK) {
      return fatal("failed to open sqlite database " + path);
    }
    log::info("Configuring database table schema and indexes, this may take a moment...");
    log::info("Database tables and indexes are up to date");
  } else if (scheme == "postgres" || (scheme == "postgresql" && rel.atLeast(13, 1))) {
    // (Kine writes postgres:// in front of what follows the scheme: both spellings connect alike.)
    if (auto r = setUpPostgres(db, "postgres://" + endpoint.substr(scheme.size() + 3)); !r) {
      return fatal(r.error().message);
    }
  } else if (!rel.atLeast(13, 1)) {
    return fatal("building kine: storage backend is not defined");
  } else if (scheme == "mysql" || scheme == "nats" || scheme == "http" || scheme == "https") {
    return fatal("storage endpoint \"" + store::redacted(endpoint) + "\" is not supported by this stand-in "
                 "(postgres:// or sqlite://)");
  } else {
    return fatal(rel.atLeast(13, 9) ? "failed to create driver for configured endpoint: unknown driver"
                                    : "building kine: unknown driver");
  }
  net::io_context ioc{1};
  // --listen-address: unix://PATH is a socket (an old file there removed, the socket 0600); any
  // other scheme, or none, means TCP on what follows it.
  std::string listen = f.get("listen-address", "0.0.0.0:2379");
  std::string listen_scheme = listen.find("://") == std::string::npos ? "" : listen.substr(0, listen.find("://"));
  std::string listen_rest = listen_scheme.empty() ? listen : listen.substr(listen_scheme.size() + 3);
  tcp::acceptor acceptor(ioc);
  net::local::stream_protocol::acceptor unix_acceptor(ioc);
  boost::system::error_code ec;
  std::string available;
  if (listen_scheme == "unix") {
    ::unlink(listen_rest.c_str());
    unix_acceptor.open(net::local::stream_protocol(), ec);
    if (!ec) {
      unix_acceptor.bind(net::local::stream_protocol::endpoint(listen_rest), ec);
    }
    if (!ec) {
      unix_acceptor.listen(64, ec);
    }
    if (ec) {
      return fatal("creating listener: listen unix " + listen_rest + ": bind: " + ec.message());
    }
    ::chmod(listen_rest.c_str(), 0600);
    available = "unix://" + listen_rest;
  } else {
    tcp::endpoint ep;
    if (!parseListen(listen_rest, ep)) {
      return fatal("invalid listen address " + listen);
    }
    acceptor.open(ep.protocol(), ec);
    acceptor.set_option(net::socket_base::reuse_address(true), ec);
    acceptor.bind(ep, ec);
    if (!ec) {
      acceptor.listen(64, ec);
    }
    if (ec) {
      return fatal("creating listener: listen tcp " + listen_rest + ": bind: " + ec.message());
    }
    available = "http://127.0.0.1:" + std::to_string(acceptor.local_endpoint().port());
  }
  std::string metrics = f.get("metrics-bind-address", ":8080");
  tcp::acceptor metrics_acceptor(ioc);
  if (metrics != "0") {
    tcp::endpoint mep;
    if (!parseListen(metrics, mep)) {
      return fatal("invalid metrics address " + metrics);
    }
    metrics_acceptor.open(mep.protocol(), ec);
    metrics_acceptor.set_option(net::socket_base::reuse_address(true), ec);
    metrics_acceptor.bind(mep, ec);
    if (!ec) {
      metrics_acceptor.listen(16, ec);
    }
    if (ec) {
      return fatal("error creating the metrics listener: listen tcp " + metrics + ": bind: " + ec.message());
    }
  }
  checkHealth(db);
  log::info("Kine available at " + available);
  if (unix_acceptor.is_open()) {
    acceptLoop(ioc, unix_acceptor, db);
  } else {
    acceptLoop(ioc, acceptor, db);
  }
  std::function<void()> accept_metrics = [&] {
    if (!metrics_acceptor.is_open()) {
      return;
    }
    metrics_acceptor.async_accept([&](boost::system::error_code e, tcp::socket s) {
      if (e) {
        return;
      }
      static const std::string res = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\n# kine stand-in ok\n\n";
      auto sock = std::make_shared<tcp::socket>(std::move(s));
      net::async_write(*sock, net::buffer(res), [sock](boost::system::error_code, size_t) {});
      accept_metrics();
    });
  };
  accept_metrics();
  net::steady_timer health(ioc);
  std::function<void()> tick = [&] {
    health.expires_after(std::chrono::seconds(1));
    health.async_wait([&](boost::system::error_code e) {
      if (!e) {
        checkHealth(db);
        tick();
      }
    });
  };
  tick();
  int rc = standin::runUntilSignalled(ioc, [&] {
    log::info("Waiting up to 2s for graceful shutdown of Kine GRPC server...");
    acceptor.close();
    unix_acceptor.close();
  });
  if (db.lite != nullptr) {
    sqlite3_close(db.lite);
  }
  return rc;
}
