// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "hub/api/api_service.hpp"
#include "shared/common/result.hpp"
#include "shared/net/asio.hpp"
#include "shared/tls/context.hpp"

namespace kflex::hub {

/// Limits of the HTTPS listener.
struct HttpOptions {
  size_t max_body_bytes = 3 * 1024 * 1024;               ///< Larger bodies get 413 (kube-apiserver: 3 MiB).
  size_t max_header_bytes = 64 * 1024;                   ///< Larger headers get 431.
  size_t max_connections = 4096;                         ///< Further connections are closed at once.
  std::chrono::seconds handshake_timeout{10};            ///< From accept to the end of the TLS handshake.
  std::chrono::seconds header_timeout{10};               ///< From first byte to the end of the headers.
  std::chrono::seconds body_timeout{60};                 ///< To read the whole body.
  std::chrono::seconds idle_timeout{120};                ///< Keep-alive wait for the next request.
  /// A watch whose client takes longer than this to take one chunk (it stopped reading) is closed.
  std::chrono::seconds stream_write_timeout{30};
  size_t max_handshakes = 1024;                          ///< TLS handshakes in progress at once; more wait.
  size_t max_handshake_waiting = 4096;                   ///< Waiting for a handshake slot; the oldest is shed.
  /// Connections from one address that have not finished their handshake; a newer one sheds the
  /// oldest. (Every connection is unauthenticated until then, kubectl's too: refusing the newest
  /// would let a flood of idle sockets lock everyone out.)
  size_t max_unauthenticated_per_source = 256;
  /// Called once if the server can no longer accept connections (the hub then stops).
  std::function<void(const std::string& why)> on_failure;
  /// Runs on every client identity after the handshake; may withdraw trust (a retired CA).
  std::function<void(tls::PeerIdentity&)> vet_identity;
};

/// The TLS stream of one connection.
using HttpStream = beast::ssl_stream<beast::tcp_stream>;
/// Takes over a connection whose request asks for a WebSocket upgrade on its path. The handler
/// may take the stream (move it out, e.g. into a tls::LeanStream); if it leaves it, the
/// connection is closed once the returned awaitable completes.
using UpgradeHandler = std::function<net::awaitable<void>(std::unique_ptr<HttpStream>& stream,
                                                          http::request<http::string_body> req,
                                                          tls::PeerIdentity peer_id, std::string peer)>;

/**
 * The hub's HTTPS listener. Each connection is a coroutine: on one of the event loops given to
 * setLoops (each run by one thread, so no strand is needed), or on its own strand of the
 * server's io_context.
 * Thread safety: start/stop from any thread; the io_context may run on several threads.
 */
class HttpServer {
 public:
  /// Binds host:port (port 0 picks one). Fails with a message naming the address.
  static Result<std::unique_ptr<HttpServer>> create(net::io_context& ioc, std::shared_ptr<ssl::context> tls,
                                                    ApiService& api, const std::string& host, uint16_t port,
                                                    HttpOptions options);
  /// The bound endpoint.
  net::ip::tcp::endpoint endpoint() const { return endpoint_; }
  /// Routes requests whose path starts with prefix to handler (before start()).
  void addRoute(std::string prefix, RouteHandler handler) { routes_.emplace_back(std::move(prefix), std::move(handler)); }
  /// Hands WebSocket upgrades of `path` to handler (before start()).
  void addUpgrade(std::string path, UpgradeHandler handler) { upgrades_.emplace_back(std::move(path), std::move(handler)); }
  /// Hands every request whose path `matches` accepts to handler, upgrade or not, as upgrades are
  /// handed over (before start()): for endpoints that answer with a stream of their own (a test
  /// API server's exec, port-forward and follow-logs).
  void addStreamRoute(std::function<bool(std::string_view path)> matches, UpgradeHandler handler) {
    stream_routes_.emplace_back(std::move(matches), std::move(handler));
  }
  /// Hands CONNECT requests to handler (before start()); without one they are answered 405.
  /// The request has been read to its end and nothing after it: what follows is the handler's.
  void setConnect(UpgradeHandler handler) { connect_ = std::move(handler); }
  /// Spreads new connections over these event loops, round robin (before start()). Each must be
  /// run by exactly one thread: a connection's handlers then never run concurrently, without the
  /// cost of a strand.
  void setLoops(std::vector<net::io_context*> loops) { loops_ = std::move(loops); }
  /// Starts accepting.
  void start();
  /// Stops accepting and closes idle connections; busy ones finish their request first.
  void stop();
  /// Connections open now.
  size_t connections() const { return open_.load(); }

 private:
  struct Conn;
  /// A counting semaphore for TLS handshakes whose waiters have deadlines and can be shed: a
  /// handshake holds about 100 KiB of TLS buffers, and after a hub restart thousands of agents
  /// come back at once. Thread-safe; each waiter resumes on its own executor.
  class HandshakeGate {
   public:
    HandshakeGate(size_t slots, size_t max_waiting) : free_(slots), max_waiting_(max_waiting) {}
    /// True once a slot is held (give it back with release()); false at the deadline or when a
    /// newer waiter shed this one.
    net::awaitable<bool> acquire(std::chrono::steady_clock::time_point deadline);
    void release();

   private:
    struct Waiter {
      explicit Waiter(const net::any_io_executor& ex) : timer(ex) {}
      net::steady_timer timer;
      bool granted = false;  // under mutex_
      bool gone = false;     // under mutex_: shed, or gave up at its deadline
    };
    static void wake(const std::shared_ptr<Waiter>& w);
    std::mutex mutex_;
    size_t free_;
    size_t max_waiting_;
    std::deque<std::shared_ptr<Waiter>> waiting_;
  };

  HttpServer(net::io_context& ioc, std::shared_ptr<ssl::context> tls, ApiService& api, HttpOptions options)
      : ioc_(ioc), tls_(std::move(tls)), api_(api), options_(options), acceptor_(ioc),
        handshakes_(options.max_handshakes, options.max_handshake_waiting) {}
  net::awaitable<void> acceptLoop();
  /// Reads the ClientHello's first bytes, waits for a handshake slot, does the TLS handshake.
  net::awaitable<bool> handshake(std::shared_ptr<Conn> conn);
  net::awaitable<void> session(std::shared_ptr<Conn> conn);
  net::awaitable<void> upgraded(std::shared_ptr<Conn> conn, UpgradeHandler handler, http::request<http::string_body> req,
                                tls::PeerIdentity id);
  /// Bookkeeping when a connection's coroutine ends.
  void ended(const std::shared_ptr<Conn>& conn, std::exception_ptr e);
  /// Registers a new connection as unauthenticated, shedding older ones over the limits. False
  /// when it must be refused (every open connection is authenticated and the limit is reached).
  bool admit(const std::shared_ptr<Conn>& conn);
  /// The connection finished (or failed) its handshake.
  void authenticated(const std::shared_ptr<Conn>& conn);
  /// Takes a connection out of the unauthenticated lists (unauthenticated_mutex_ held).
  void forgetUnauthenticated(Conn& conn);
  /// Closes an unauthenticated connection from another thread.
  void shed(std::shared_ptr<Conn> conn);

  net::io_context& ioc_;
  std::vector<net::io_context*> loops_;
  size_t next_loop_ = 0;  // accept loop only
  std::shared_ptr<ssl::context> tls_;
  ApiService& api_;
  HttpOptions options_;
  net::ip::tcp::acceptor acceptor_;
  HandshakeGate handshakes_;
  // Connections that have not finished their TLS handshake, oldest first, in all and by source
  // address (the lists hold the same connections).
  std::mutex unauthenticated_mutex_;
  std::list<std::shared_ptr<Conn>> unauthenticated_;
  std::unordered_map<std::string, std::list<std::shared_ptr<Conn>>> unauthenticated_by_source_;
  std::atomic<uint64_t> shed_count_{0};
  net::ip::tcp::endpoint endpoint_;
  std::vector<std::pair<std::string, RouteHandler>> routes_;
  std::vector<std::pair<std::string, UpgradeHandler>> upgrades_;
  std::vector<std::pair<std::function<bool(std::string_view)>, UpgradeHandler>> stream_routes_;
  UpgradeHandler connect_;
  std::atomic<size_t> open_{0};
  std::atomic<bool> stopping_{false};
  std::mutex conns_mutex_;
  std::set<std::shared_ptr<Conn>> conns_;
};

}  // namespace kflex::hub
