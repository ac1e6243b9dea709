// SPDX-License-Identifier: Apache-2.0
#include "hub/api/http_server.hpp"

#include <boost/beast/websocket.hpp>

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
         nlohmann::json(message).dump() + ",\"reason\":\"" + reason + "\",\"code\":" + std::to_string(code) + "}";
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
};

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
  net::co_spawn(acceptor_.get_executor(), acceptLoop(), [](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::error("accept loop failed", {{"error", ex.what()}});
      }
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

net::awaitable<void> HttpServer::acceptLoop() {
  auto last_warning = std::chrono::steady_clock::time_point{};
  while (!stopping_) {
    net::any_io_executor loop = loops_.empty() ? net::any_io_executor(net::make_strand(ioc_))
                                               : net::any_io_executor(loops_[next_loop_++ % loops_.size()]->get_executor());
    auto [ec, socket] = co_await acceptor_.async_accept(loop, net::as_tuple(net::use_awaitable));
    if (ec) {
      if (ec == net::error::operation_aborted || stopping_) {
        co_return;
      }
      log::warn("accept failed", {{"error", ec.message()}});
      // Out of file descriptors and the like: back off instead of spinning.
      net::steady_timer t(acceptor_.get_executor(), std::chrono::milliseconds(100));
      co_await t.async_wait(net::as_tuple(net::use_awaitable));
      continue;
    }
    if (open_.load() >= options_.max_connections) {
      auto now = std::chrono::steady_clock::now();
      if (now - last_warning > std::chrono::seconds(10)) {
        last_warning = now;
        log::warn("connection limit reached; closing new connections",
                  {{"limit", std::to_string(options_.max_connections)}});
      }
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    socket.set_option(net::ip::tcp::no_delay(true), ec);
    auto conn = std::make_shared<Conn>(std::move(socket), *tls_);
    boost::system::error_code pec;
    auto remote = beast::get_lowest_layer(*conn->stream).socket().remote_endpoint(pec);
    conn->peer = pec ? "?" : remote.address().to_string() + ":" + std::to_string(remote.port());
    ++open_;
    {
      std::lock_guard lock(conns_mutex_);
      conns_.insert(conn);
    }
    net::co_spawn(conn->executor, session(conn), [this, conn](std::exception_ptr e) { ended(conn, e); });
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

net::awaitable<void> HttpServer::session(std::shared_ptr<Conn> conn) {
  auto& stream = *conn->stream;
  auto& tcp = beast::get_lowest_layer(stream);
  // A bounded number of TLS handshakes at a time: after a hub restart thousands of agents come
  // back at once, and each handshake in flight holds about 100 KiB of TLS buffers. Queued ones
  // wait their turn instead of all progressing slowly and timing out. (No deadline on the wait:
  // a slot taken at the moment a deadline fired would be lost for good. A client that gave up
  // meanwhile makes its handshake fail at once when its turn comes.)
  auto [slot_ec] = co_await handshake_slots_.async_send(boost::system::error_code{}, net::as_tuple(net::use_awaitable));
  if (slot_ec) {
    co_return;
  }
  tcp.expires_after(options_.handshake_timeout);
  auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, net::as_tuple(net::use_awaitable));
  handshake_slots_.try_receive([](boost::system::error_code) {});
  if (hec) {
    if (!expectedEnd(hec)) {
      log::debug("TLS handshake failed", {{"peer", conn->peer}, {"error", hec.message()}});
    }
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

  beast::flat_buffer buffer(8192);
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
    if (!parser.is_done()) {
      tcp.expires_after(options_.body_timeout);
      auto [bec, bn] = co_await http::async_read(stream, buffer, parser, net::as_tuple(net::use_awaitable));
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
    if (beast::websocket::is_upgrade(req)) {
      std::string upath;
      std::map<std::string, std::string> uquery;
      parseTarget(req.target(), upath, uquery);
      const UpgradeHandler* handler = nullptr;
      for (const auto& [p, h] : upgrades_) {
        if (p == upath) {
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
    if (route != nullptr) {
      res = co_await (*route)(std::move(api_req));
    } else {
      res = co_await api_.handle(std::move(api_req));
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
