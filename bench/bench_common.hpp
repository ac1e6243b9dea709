// SPDX-License-Identifier: Apache-2.0
// Pieces the benchmarks share: a hub started as a child process, /proc readings, latency
// statistics and a keep-alive HTTPS connection driven by a coroutine.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "shared/net/asio.hpp"

namespace kflex::bench {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

/// Latencies of one phase, in milliseconds.
struct Stats {
  std::vector<double> ms;
  double seconds = 0;
  size_t errors = 0;
  double rate() const { return seconds > 0 ? double(ms.size()) / seconds : 0; }
  /// The p-quantile (0..1); sorts in place.
  double pct(double p);
};

/// A file's whole text, "" when it cannot be read.
std::string slurp(const fs::path& p);
/// Resident set size of a process, in KiB (-1 when it is gone).
long rssKb(pid_t pid);
/// User + system CPU time a process has used, in seconds.
double cpuSeconds(pid_t pid);
/// Raises the soft descriptor limit to the hard one (children inherit it).
void raiseFdLimit();
/// A new directory under /tmp, or `work` when given.
fs::path workDir(const std::string& work, const char* prefix);

/// A kflex-hub child process with its own data dir; stderr goes to a log file.
class HubProcess {
 public:
  /// Starts `hub_bin serve` and waits (up to 10 s) for its "serving" log line; false on failure.
  bool start(const std::string& hub_bin, const fs::path& data_dir, const std::string& listen, const fs::path& log,
             const std::vector<std::string>& extra = {});
  /// SIGTERM, then waits for the exit.
  void stop();
  /// SIGKILL (a crash), then waits.
  void kill();
  pid_t pid() const { return pid_; }
  /// https://HOST:PORT as the hub logged it.
  const std::string& url() const { return url_; }
  /// HOST:PORT.
  std::string hostPort() const { return url_.substr(8); }
  net::ip::tcp::endpoint endpoint() const;

 private:
  pid_t pid_ = -1;
  std::string url_;
};

/// A keep-alive HTTPS connection driven by a coroutine.
class Conn {
 public:
  Conn(net::io_context& ioc, ssl::context& ctx) : stream_(ioc, ctx) {}
  net::awaitable<bool> connect(net::ip::tcp::endpoint ep);
  /// Arguments by value: a coroutine must not keep references to its caller's temporaries.
  net::awaitable<unsigned> request(http::verb method, std::string target, std::string body,
                                   std::string content_type = "application/json", std::string authorization = "");
  /// Sends a request already in wire form (see wireRequest) and reads the answer: the load
  /// generator's cheap path, one TLS record out per request.
  net::awaitable<unsigned> send(const std::string& wire);
  /// Starts a watch and calls on_line for each event line until stop is set.
  net::awaitable<void> watch(std::string target, std::function<void(std::string_view)> on_line,
                             std::atomic<bool>& stop);
  void close();
  const std::string& body() const { return last_body_; }

 private:
  beast::ssl_stream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  std::string last_body_;
};

/// An HTTP/1.1 keep-alive request in wire form, for Conn::send.
std::string wireRequest(http::verb method, std::string_view target, std::string_view body,
                        std::string_view content_type = "application/json");

/// Runs `clients` coroutines that together perform n operations; op(conn, i) returns an HTTP status.
/// The clock starts (and `started` is called) once every client has connected.
Stats runPhase(net::io_context& ioc, ssl::context& ctx, const net::ip::tcp::endpoint& ep, size_t clients, size_t n,
               const std::function<net::awaitable<unsigned>(Conn&, size_t)>& op, unsigned ok_status,
               const std::function<void()>& started = {});

}  // namespace kflex::bench
