// SPDX-License-Identifier: Apache-2.0
#include "hub/api/http_server.hpp"

#include <boost/beast/websocket.hpp>

#include "shared/common/json_decode.hpp"
#include "shared/common/log.hpp"

namespace kflex::hub {
namespace {

using Stream = HttpStream;

bool expectedEnd(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == net::error::eof || ec == net::error::operation_aborted ||
         ec == ssl::error::stream_truncated || ec == beast::error::timeout || ec == net::error::connection_reset ||
         ec == net::error::broken_pipe;
}

std::string statusBody(unsigned code, const char* reason, const std::string& message) {
  return "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":" +
         dumpSafe(nlohmann::json(message)) + ",\"reason\":\"" + reason + "\",\"code\":" + std::to_string(code) + "}";
}

// After refusing a body, read and discard what the client is still sending (bounded in bytes and
// time) so that it reads our answer instead of a connection reset (nginx's lingering close).
net::awaitable<void> lingeringDrain(Stream& stream, uint64_t max_bytes) {
  auto& tcp = beast::get_lowest_layer(stream);
  tcp.expires_after(std::chrono::seconds(5));
  std::vector<char> scratch(64 * 1024);
  uint64_t total = 0;
  while (total < max_bytes) {
    auto [ec, n] = co_await stream.async_read_some(net::buffer(scratch), net::as_tuple(net::use_awaitable));
    if (ec) {
      break;
    }
    total += n;
  }
}

// Writes a stream's chunks (a watch's events). A chunk its client does not take within `timeout`
// (it stopped reading) closes the connection. A watchdog that looks every few seconds enforces
// that, rather than a timer armed and cancelled around each write: one event to 1,000 watchers
// would otherwise cost 2,000 updates of the loop's timer queue.
class StreamChunkWriter final : public ChunkWriter {
 public:
  StreamChunkWriter(Stream& s, std::chrono::seconds timeout, std::string peer)
      : stream_(s), state_(std::make_shared<State>(s.get_executor())) {
    net::co_spawn(s.get_executor(), watchdog(state_, &s, timeout, std::move(peer)), net::detached);
  }
  ~StreamChunkWriter() override {
    state_->done = true;
    state_->timer.cancel();
  }
  StreamChunkWriter(const StreamChunkWriter&) = delete;
  StreamChunkWriter& operator=(const StreamChunkWriter&) = delete;

  net::awaitable<bool> write(std::string data) override {
    state_->since = std::chrono::steady_clock::now();
    state_->pending = true;
    auto [ec, n] = co_await net::async_write(stream_, http::make_chunk(net::buffer(data)),
                                             net::as_tuple(net::use_awaitable));
    state_->pending = false;
    co_return !ec;
  }

 private:
  // Shared with the watchdog, which outlives the writer by at most one wake-up. Both run on the
  // connection's loop.
  struct State {
    explicit State(const Stream::executor_type& ex) : timer(ex) {}
    net::steady_timer timer;
    std::chrono::steady_clock::time_point since;
    bool pending = false;
    bool done = false;
  };

  static net::awaitable<void> watchdog(std::shared_ptr<State> state, Stream* stream, std::chrono::seconds timeout,
                                       std::string peer) {
    auto period = std::min<std::chrono::steady_clock::duration>(std::chrono::seconds(5), timeout / 2);
    while (!state->done) {
      state->timer.expires_after(period);
      auto [ec] = co_await state->timer.async_wait(net::as_tuple(net::use_awaitable));
      if (ec || state->done) {
        co_return;
      }
      if (state->pending && std::chrono::steady_clock::now() - state->since >= timeout) {
        log::info("closing a watch whose client stopped reading",
                  {{"peer", peer}, {"timeout", std::to_string(timeout.count()) + "s"}});
        beast::get_lowest_layer(*stream).close();  // the pending write fails; the stream ends
        co_return;
      }
    }
  }

  Stream& stream_;
  std::shared_ptr<State> state_;
};

}  // namespace

struct HttpServer::Conn {
  explicit Conn(net::ip::tcp::socket&& s, ssl::context& ctx)
      : stream(std::make_unique<Stream>(std::move(s), ctx)), executor(stream->get_executor()) {}
  std::unique_ptr<Stream> stream;  // null once an upgrade handler took the connection
  Stream::executor_type executor;
  std::atomic<bool> handed_off{false};  // session() ended, upgraded() goes on
  std::atomic<bool> idle{false};
  std::string peer;
  std::string source;  // the peer's address
  std::chrono::steady_clock::time_point accepted;
  // Under unauthenticated_mutex_: whether it is in the unauthenticated lists, and where.
  bool unauthenticated = false;
  std::list<std::shared_ptr<Conn>>::iterator all_at;
  std::list<std::shared_ptr<Conn>>::iterator source_at;
  bool handshake_done = false;  // on the connection's executor only
};

net::awaitable<bool> HttpServer::HandshakeGate::acquire(std::chrono::steady_clock::time_point deadline) {
  std::shared_ptr<Waiter> w;
  {
    std::lock_guard lock(mutex_);
    if (free_ > 0 && waiting_.empty()) {
      --free_;
      co_return true;
    }
    w = std::make_shared<Waiter>(co_await net::this_coro::executor);
    w->timer.expires_at(deadline);
    if (waiting_.size() >= max_waiting_) {
      // The oldest waiter is the likeliest to have given up already.
      auto oldest = waiting_.front();
      waiting_.pop_front();
      oldest->gone = true;
      wake(oldest);
    }
    waiting_.push_back(w);
  }
  co_await w->timer.async_wait(net::as_tuple(net::use_awaitable));
  std::lock_guard lock(mutex_);
  if (w->granted) {
    co_return true;  // even if the deadline fired at the same moment: the slot is ours to give back
  }
  if (!w->gone) {
    w->gone = true;
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), w));
  }
  co_return false;
}

void HttpServer::HandshakeGate::release() {
  std::lock_guard lock(mutex_);
  if (!waiting_.empty()) {
    auto next = waiting_.front();
    waiting_.pop_front();
    next->granted = true;
    wake(next);
    return;
  }
  ++free_;
}

void HttpServer::HandshakeGate::wake(const std::shared_ptr<Waiter>& w) {
  // The timer belongs to the waiter's executor; cancel it there.
  net::post(w->timer.get_executor(), [w] { w->timer.cancel(); });
}

Result<std::unique_ptr<HttpServer>> HttpServer::create(net::io_context& ioc, std::shared_ptr<ssl::context> tls,
                                                       ApiService& api, const std::string& host, uint16_t port,
                                                       HttpOptions options) {
  std::unique_ptr<HttpServer> s(new HttpServer(ioc, std::move(tls), api, options));
  boost::system::error_code ec;
  auto addr = net::ip::make_address(host, ec);
  if (ec) {
    return fail("cannot listen on " + host + ": not an IP address (use e.g. 127.0.0.1, ::1 or 0.0.0.0)");
  }
  net::ip::tcp::endpoint ep(addr, port);
  s->acceptor_.open(ep.protocol(), ec);
  if (!ec) {
    s->acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    s->acceptor_.bind(ep, ec);
  }
  if (!ec) {
    s->acceptor_.listen(net::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return fail("cannot listen on " + host + ":" + std::to_string(port) + ": " + ec.message());
  }
  s->endpoint_ = s->acceptor_.local_endpoint();
  return s;
}

void HttpServer::start() {
  net::co_spawn(acceptor_.get_executor(), acceptLoop(), [this](std::exception_ptr e) {
    std::string why = "the accept loop ended";
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        why += ": " + std::string(ex.what());
      }
    }
    if (stopping_) {
      return;
    }
    // A hub that cannot accept connections must not look alive to its supervisor.
    log::error("the HTTPS listener stopped accepting connections", {{"error", why}});
    if (options_.on_failure) {
      options_.on_failure(why);
    }
  });
}

void HttpServer::stop() {
  stopping_ = true;
  net::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ec;
    acceptor_.close(ec);
  });
  std::lock_guard lock(conns_mutex_);
  for (const auto& c : conns_) {
    if (c->idle) {
      net::post(c->executor, [c] {
        if (c->stream) {
          beast::get_lowest_layer(*c->stream).cancel();
        }
      });
    }
  }
}

bool HttpServer::admit(const std::shared_ptr<Conn>& conn) {
  std::vector<std::shared_ptr<Conn>> victims;
  bool refused = false;
  {
    std::lock_guard lock(unauthenticated_mutex_);
    auto drop = [&](std::shared_ptr<Conn> c) {
      forgetUnauthenticated(*c);
      victims.push_back(std::move(c));
    };
    auto& mine = unauthenticated_by_source_[conn->source];
    if (mine.size() >= options_.max_unauthenticated_per_source) {
      drop(mine.front());
    }
    if (open_.load() + 1 - victims.size() > options_.max_connections) {
      if (unauthenticated_.empty()) {
        refused = true;
      } else {
        drop(unauthenticated_.front());
      }
    }
    if (!refused) {
      auto& list = unauthenticated_by_source_[conn->source];  // `mine` may be gone with its last one
      conn->all_at = unauthenticated_.insert(unauthenticated_.end(), conn);
      conn->source_at = list.insert(list.end(), conn);
      conn->unauthenticated = true;
    } else if (mine.empty()) {
      unauthenticated_by_source_.erase(conn->source);
    }
  }
  for (auto& v : victims) {
    shed(std::move(v));
  }
  return !refused;
}

void HttpServer::forgetUnauthenticated(Conn& conn) {
  unauthenticated_.erase(conn.all_at);
  auto by = unauthenticated_by_source_.find(conn.source);
  by->second.erase(conn.source_at);
  if (by->second.empty()) {
    unauthenticated_by_source_.erase(by);
  }
  conn.unauthenticated = false;
}

void HttpServer::authenticated(const std::shared_ptr<Conn>& conn) {
  std::lock_guard lock(unauthenticated_mutex_);
  if (conn->unauthenticated) {
    forgetUnauthenticated(*conn);
  }
}

void HttpServer::shed(std::shared_ptr<Conn> conn) {
  uint64_t n = ++shed_count_;
  if (n == 1 || n % 1000 == 0) {
    log::warn("shedding the oldest connections that have not finished their TLS handshake",
              {{"shed", std::to_string(n)}, {"source", conn->source},
               {"per_source_limit", std::to_string(options_.max_unauthenticated_per_source)},
               {"connection_limit", std::to_string(options_.max_connections)}});
  }
  net::post(conn->executor, [conn] {
    if (conn->stream && !conn->handshake_done) {
      boost::system::error_code ignored;
      beast::get_lowest_layer(*conn->stream).socket().close(ignored);
    }
  });
}

net::awaitable<void> HttpServer::acceptLoop() {
  auto last_warning = std::chrono::steady_clock::time_point{};
  while (!stopping_) {
    // One failed accept (out of memory for a TLS session, say) costs that connection only.
    bool back_off = false;
    try {
      net::any_io_executor loop = loops_.empty() ? net::any_io_executor(net::make_strand(ioc_))
                                                 : net::any_io_executor(loops_[next_loop_++ % loops_.size()]->get_executor());
      auto [ec, socket] = co_await acceptor_.async_accept(loop, net::as_tuple(net::use_awaitable));
      if (ec) {
        if (ec == net::error::operation_aborted || stopping_) {
          co_return;
        }
        log::warn("accept failed", {{"error", ec.message()}});
        back_off = true;  // out of file descriptors and the like: do not spin
      } else {
        socket.set_option(net::ip::tcp::no_delay(true), ec);
        boost::system::error_code pec;
        auto remote = socket.remote_endpoint(pec);
        auto conn = std::make_shared<Conn>(std::move(socket), *tls_);
        conn->accepted = std::chrono::steady_clock::now();
        conn->source = pec ? "?" : remote.address().to_string();
        conn->peer = pec ? "?" : conn->source + ":" + std::to_string(remote.port());
        if (!admit(conn)) {
          auto now = std::chrono::steady_clock::now();
          if (now - last_warning > std::chrono::seconds(10)) {
            last_warning = now;
            log::warn("connection limit reached; closing new connections",
                      {{"limit", std::to_string(options_.max_connections)}});
          }
          boost::system::error_code ignored;
          beast::get_lowest_layer(*conn->stream).socket().close(ignored);
          continue;
        }
        ++open_;
        {
          std::lock_guard lock(conns_mutex_);
          conns_.insert(conn);
        }
        net::co_spawn(conn->executor, session(conn), [this, conn](std::exception_ptr e) { ended(conn, e); });
      }
    } catch (const std::exception& e) {
      log::warn("accepting a connection failed", {{"error", e.what()}});
      back_off = true;
    }
    if (back_off) {
      net::steady_timer t(acceptor_.get_executor(), std::chrono::milliseconds(100));
      co_await t.async_wait(net::as_tuple(net::use_awaitable));
    }
  }
}

void HttpServer::ended(const std::shared_ptr<Conn>& conn, std::exception_ptr e) {
  if (e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      log::warn("connection ended with an error", {{"peer", conn->peer}, {"error", ex.what()}});
    }
  }
  authenticated(conn);  // (if it never got that far)
  if (conn->handed_off.exchange(false)) {
    return;  // an upgrade handler runs on; it ends the connection
  }
  {
    std::lock_guard lock(conns_mutex_);
    conns_.erase(conn);
  }
  --open_;
}

net::awaitable<void> HttpServer::upgraded(std::shared_ptr<Conn> conn, UpgradeHandler handler,
                                          http::request<http::string_body> req, tls::PeerIdentity id) {
  co_await handler(conn->stream, std::move(req), std::move(id), conn->peer);
  if (conn->stream) {
    boost::system::error_code ignored;
    beast::get_lowest_layer(*conn->stream).socket().close(ignored);
  }
}

net::awaitable<bool> HttpServer::handshake(std::shared_ptr<Conn> conn) {
  auto& stream = *conn->stream;
  auto& tcp = beast::get_lowest_layer(stream);
  // The handshake's deadline counts from accept. The connection takes a handshake slot only once
  // its ClientHello arrives: a socket that sends nothing costs nothing but itself until its
  // deadline, or until newer connections shed it (admit()). (A coroutine of its own, so that the
  // buffer for those first bytes is not kept for the connection's whole life.)
  auto deadline = conn->accepted + options_.handshake_timeout;
  tcp.expires_at(deadline);
  std::array<char, 4096> hello{};
  auto [rec, rn] = co_await tcp.async_read_some(net::buffer(hello), net::as_tuple(net::use_awaitable));
  if (rec) {
    co_return false;
  }
  if (!co_await handshakes_.acquire(deadline)) {
    co_return false;
  }
  auto [hec, used] = co_await stream.async_handshake(ssl::stream_base::server, net::buffer(hello.data(), rn),
                                                     net::as_tuple(net::use_awaitable));
  handshakes_.release();
  conn->handshake_done = true;
  authenticated(conn);
  if (hec) {
    if (!expectedEnd(hec)) {
      log::debug("TLS handshake failed", {{"peer", conn->peer}, {"error", hec.message()}});
    }
    co_return false;
  }
  co_return true;
}

net::awaitable<void> HttpServer::session(std::shared_ptr<Conn> conn) {
  auto& stream = *conn->stream;
  auto& tcp = beast::get_lowest_layer(stream);
  if (!co_await handshake(conn)) {
    co_return;
  }
  tls::PeerIdentity id = tls::peerIdentity(stream.native_handle());
  if (options_.vet_identity) {
    options_.vet_identity(id);
  }
  User user;
  std::string auth_error;
  if (id.presented && id.verified) {
    user.name = id.common_name;
    user.groups = id.organizations;
    user.groups.push_back("system:authenticated");
  } else if (id.presented) {
    auth_error = "client certificate rejected: " + id.verify_error;
  }

  // Room for the largest header allowed (a request line with a long label selector, a long
  // token), so that the parser's limit, not the buffer's, decides: 431 over it.
  beast::flat_buffer buffer(options_.max_header_bytes + 8192);
  while (!stopping_) {
    // Wait for the first byte of the next request under the idle timeout, then give the rest of
    // the header its own (short) deadline, so a slow-loris client cannot hold the connection.
    if (buffer.size() == 0) {
      conn->idle = true;
      tcp.expires_after(options_.idle_timeout);
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), net::as_tuple(net::use_awaitable));
      conn->idle = false;
      if (ec) {
        break;
      }
      buffer.commit(n);
    }
    http::request_parser<http::string_body> parser;
    parser.header_limit(std::uint32_t(options_.max_header_bytes));
    parser.body_limit(options_.max_body_bytes);
    tcp.expires_after(options_.header_timeout);
    auto [hec2, hn] = co_await http::async_read_header(stream, buffer, parser, net::as_tuple(net::use_awaitable));
    auto start = std::chrono::steady_clock::now();
    auto reply_error = [&](unsigned code, const char* reason, const std::string& msg) -> net::awaitable<void> {
      http::response<http::string_body> res{http::status(code), 11};
      res.set(http::field::content_type, "application/json");
      res.set(http::field::connection, "close");
      res.body() = statusBody(code, reason, msg);
      res.prepare_payload();
      tcp.expires_after(std::chrono::seconds(10));
      co_await http::async_write(stream, res, net::as_tuple(net::use_awaitable));
      log::info("request", {{"method", "-"}, {"path", "-"}, {"user", user.name.empty() ? "-" : user.name},
                            {"status", std::to_string(code)}, {"peer", conn->peer}, {"error", msg}});
    };
    if (hec2) {
      if (hec2 == http::error::body_limit) {
        // Beast checks Content-Length against the limit as soon as the header is complete.
        co_await reply_error(413, "RequestEntityTooLarge",
                             "the request body is larger than the limit of " +
                                 std::to_string(options_.max_body_bytes) + " bytes");
        co_await lingeringDrain(stream, 4 * options_.max_body_bytes);
      } else if (hec2 == http::error::header_limit) {
        co_await reply_error(431, "RequestHeaderFieldsTooLarge", "request headers are larger than the limit");
      } else if (hec2 == beast::error::timeout) {
        log::info("closing a connection whose request headers did not arrive in time", {{"peer", conn->peer}});
      } else if (!expectedEnd(hec2)) {
        co_await reply_error(400, "BadRequest", "malformed HTTP request: " + hec2.message());
      }
      break;
    }
    if (auto len = parser.content_length(); len && *len > options_.max_body_bytes) {
      co_await reply_error(413, "RequestEntityTooLarge",
                           "the request body is " + std::to_string(*len) + " bytes; the limit is " +
                               std::to_string(options_.max_body_bytes) + " bytes");
      co_await lingeringDrain(stream, std::min<uint64_t>(*len, 4 * options_.max_body_bytes));
      break;
    }
    // RFC 9112 §6.3: a Transfer-Encoding whose last coding is not chunked leaves the length of a
    // request unknown; reading what follows as the next request would let a proxy in front and
    // this server disagree on where requests end (request smuggling).
    if (parser.get().count(http::field::transfer_encoding) != 0 && !parser.chunked()) {
      co_await reply_error(400, "BadRequest",
                           "unsupported Transfer-Encoding " +
                               std::string(parser.get()[http::field::transfer_encoding]) +
                               ": only chunked is accepted");
      break;
    }
    if (!parser.is_done()) {
      // The body's deadline cancels the read, leaving the connection open for the 408; the
      // stream's own timeout, a little later, closes a client that does not read that either.
      tcp.expires_after(options_.body_timeout + std::chrono::seconds(10));
      net::steady_timer body_deadline(conn->executor, options_.body_timeout);
      auto body_state = std::make_shared<int>(0);  // 0 reading, 1 cut off, 2 finished
      body_deadline.async_wait([conn, body_state](boost::system::error_code ec) {
        if (!ec && *body_state == 0 && conn->stream) {
          *body_state = 1;
          boost::system::error_code ignored;
          beast::get_lowest_layer(*conn->stream).socket().cancel(ignored);
        }
      });
      auto [bec, bn] = co_await http::async_read(stream, buffer, parser, net::as_tuple(net::use_awaitable));
      if (*body_state == 1 && bec == net::error::operation_aborted) {
        bec = beast::error::timeout;
      }
      *body_state = 2;
      body_deadline.cancel();
      if (bec) {
        if (bec == http::error::body_limit) {
          co_await reply_error(413, "RequestEntityTooLarge",
                               "the request body is larger than the limit of " +
                                   std::to_string(options_.max_body_bytes) + " bytes");
          co_await lingeringDrain(stream, 4 * options_.max_body_bytes);
        } else if (bec == beast::error::timeout) {
          co_await reply_error(408, "Timeout", "the request body did not arrive in time");
        } else if (!expectedEnd(bec)) {
          co_await reply_error(400, "BadRequest", "malformed HTTP request body: " + bec.message());
        }
        break;
      }
    }
    tcp.expires_never();
    auto req = parser.release();
    if (req.method() == http::verb::connect) {
      // The tunnel (docs/dev/tunnel.md). A client sends nothing more before the answer.
      if (!connect_) {
        co_await reply_error(405, "MethodNotAllowed", "this hub is no proxy");
        break;
      }
      if (buffer.size() != 0) {
        co_await reply_error(400, "BadRequest", "bytes after a CONNECT request before its answer");
        break;
      }
      conn->idle = false;
      conn->handed_off = true;
      net::co_spawn(conn->executor, upgraded(conn, connect_, std::move(req), std::move(id)),
                    [this, conn](std::exception_ptr e) { ended(conn, e); });
      co_return;
    }
    if (beast::websocket::is_upgrade(req) || !stream_routes_.empty()) {
      std::string upath;
      std::map<std::string, std::string> uquery;
      parseTarget(req.target(), upath, uquery);
      const UpgradeHandler* handler = nullptr;
      for (const auto& [p, h] : upgrades_) {
        if (p == upath && beast::websocket::is_upgrade(req)) {
          handler = &h;
        }
      }
      for (const auto& [matches, h] : stream_routes_) {
        if (handler == nullptr && matches(upath)) {
          handler = &h;
        }
      }
      if (handler != nullptr) {
        conn->idle = false;
        // The handler runs in its own coroutine, so that this one (its read buffer and parser)
        // is freed: an upgraded connection can live for months.
        conn->handed_off = true;
        net::co_spawn(conn->executor, upgraded(conn, *handler, std::move(req), std::move(id)),
                      [this, conn](std::exception_ptr e) { ended(conn, e); });
        co_return;
      }
    }
    ApiRequest api_req;
    api_req.method = req.method();
    parseTarget(req.target(), api_req.path, api_req.query);
    api_req.body = std::move(req.body());
    api_req.content_type = std::string(req[http::field::content_type]);
    api_req.accept = std::string(req[http::field::accept]);
    api_req.user_agent = std::string(req[http::field::user_agent]);
    api_req.authorization = std::string(req[http::field::authorization]);
    api_req.peer = conn->peer;
    api_req.user = user;
    api_req.auth_error = auth_error;
    const RouteHandler* route = nullptr;
    for (const auto& [prefix, h] : routes_) {
      if (api_req.path.rfind(prefix, 0) == 0) {
        route = &h;
      }
    }
    // Bearer tokens: no token authenticator is configured for the API yet, so a token alone is
    // not enough there (enrollment routes read their bootstrap token themselves).
    if (route == nullptr && !user.authenticated() && !api_req.authorization.empty() && auth_error.empty()) {
      api_req.auth_error = "bearer tokens are not accepted on this endpoint";
    }
    std::string method(req.method_string());
    std::string path = api_req.path;
    bool keep_alive = req.keep_alive();
    // (No co_await inside ?: — GCC 12 miscompiles it into a double destruction.)
    ApiResponse res;
    // A handler that throws is a bug (the fuzz targets look for them), but the client still gets
    // an answer and the connection its clean end.
    std::string thrown;
    bool bad_shape = false;
    try {
      if (route != nullptr) {
        res = co_await (*route)(std::move(api_req));
      } else {
        res = co_await api_.handle(std::move(api_req));
      }
    } catch (const nlohmann::json::type_error& e) {
      thrown = e.what();
      bad_shape = true;
    } catch (const std::exception& e) {
      thrown = e.what();
    }
    if (!thrown.empty()) {
      log::warn("a request handler failed with an exception", {{"path", path}, {"error", thrown}});
      res = ApiResponse{};
      res.status = bad_shape ? 400 : 500;
      res.body = statusBody(res.status, bad_shape ? "BadRequest" : "InternalError",
                            bad_shape ? "a field of the request has the wrong type: " + thrown
                                      : "internal error: " + thrown);
    }

    http::response<http::string_body> out{http::status(res.status), req.version()};
    out.set(http::field::content_type, res.content_type);
    for (const auto& [k, v] : res.headers) {
      out.insert(k, v);  // insert, not set: there may be several Warning headers
    }
    out.keep_alive(keep_alive && !stopping_);
    tcp.expires_after(std::chrono::seconds(60));
    bool ok = true;
    if (res.stream) {
      // A watch: headers now, then chunks until the stream function returns.
      http::response<http::empty_body> head{http::status(res.status), req.version()};
      head.set(http::field::content_type, res.content_type);
      head.chunked(true);
      head.keep_alive(keep_alive);
      http::response_serializer<http::empty_body> sr{head};
      auto [wec, wn] = co_await http::async_write_header(stream, sr, net::as_tuple(net::use_awaitable));
      tcp.expires_never();
      if (!wec) {
        StreamChunkWriter writer(stream, options_.stream_write_timeout, conn->peer);
        co_await res.stream(writer);
        tcp.expires_after(std::chrono::seconds(10));
        auto [lec, ln] = co_await net::async_write(stream, http::make_chunk_last(), net::as_tuple(net::use_awaitable));
        ok = !lec;
      } else {
        ok = false;
      }
    } else {
      out.body() = std::move(res.body);
      out.prepare_payload();
      auto [wec, wn] = co_await http::async_write(stream, out, net::as_tuple(net::use_awaitable));
      ok = !wec;
    }
    auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    char dur[32];
    std::snprintf(dur, sizeof dur, "%.3fms", ms);
    log::info("request", {{"method", method}, {"path", path}, {"user", user.name.empty() ? "-" : user.name},
                          {"status", std::to_string(res.status)}, {"duration", dur}, {"peer", conn->peer}});
    if (!ok || !keep_alive || stopping_) {
      break;
    }
  }
  // Close the TLS session politely, with a deadline.
  tcp.expires_after(std::chrono::seconds(2));
  co_await stream.async_shutdown(net::as_tuple(net::use_awaitable));
  boost::system::error_code ec;
  tcp.socket().close(ec);
}

}  // namespace kflex::hub
