// SPDX-License-Identifier: Apache-2.0
#include "agent/host/port_forward.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "shared/common/log.hpp"

namespace kflex::agent::runtime {
namespace {

using tcp = net::ip::tcp;
using namespace net::experimental::awaitable_operators;

// One direction of a relay: read, write, until either side ends.
net::awaitable<void> pump(tcp::socket& from, tcp::socket& to) {
  std::array<char, 16384> buf;
  while (true) {
    auto [rec, n] = co_await from.async_read_some(net::buffer(buf), net::as_tuple(net::use_awaitable));
    if (rec) {
      boost::system::error_code ignored;
      to.shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
    auto [wec, m] = co_await net::async_write(to, net::buffer(buf.data(), n), net::as_tuple(net::use_awaitable));
    if (wec) {
      co_return;
    }
  }
}

}  // namespace

PortForward::PortForward(net::any_io_executor ex, std::shared_ptr<const NetNamespace> ns, uint16_t target_port)
    : acceptor_(ex), ns_(std::move(ns)), target_port_(target_port) {}

PortForward::~PortForward() { close(); }

Result<std::shared_ptr<PortForward>> PortForward::open(net::any_io_executor ex, const std::string& address,
                                                       uint16_t port, std::shared_ptr<const NetNamespace> ns,
                                                       uint16_t target_port) {
  std::shared_ptr<PortForward> f(new PortForward(ex, std::move(ns), target_port));
  boost::system::error_code ec;
  auto addr = net::ip::make_address(address, ec);
  if (ec) {
    return fail("not an IP address: " + address);
  }
  tcp::endpoint ep(addr, port);
  f->acceptor_.open(ep.protocol(), ec);
  if (!ec) {
    f->acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    f->acceptor_.bind(ep, ec);
  }
  if (!ec) {
    f->acceptor_.listen(net::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    const bool in_use = ec == net::error::address_in_use;
    return fail(in_use ? Errc::Conflict : Errc::Internal, "cannot listen on " + address + ":" + std::to_string(port) +
                                                              ": " + ec.message() +
                                                              (in_use ? " (another program holds the port)" : ""));
  }
  f->port_ = f->acceptor_.local_endpoint().port();
  net::co_spawn(ex, f->acceptLoop(), net::detached);
  return f;
}

void PortForward::close() {
  if (closed_) {
    return;
  }
  closed_ = true;
  ++*generation_;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

net::awaitable<void> PortForward::acceptLoop() {
  auto self = shared_from_this();
  while (!closed_) {
    auto [ec, sock] = co_await acceptor_.async_accept(net::as_tuple(net::use_awaitable));
    if (ec) {
      if (ec == net::error::operation_aborted || closed_) {
        co_return;
      }
      continue;  // (a transient accept error: too many files, a reset before accept)
    }
    ++accepted_;
    net::co_spawn(acceptor_.get_executor(), relay(std::move(sock)), net::detached);
  }
}

net::awaitable<void> PortForward::relay(tcp::socket client) {
  auto generation = generation_;
  int mine = *generation;
  tcp::socket upstream(client.get_executor());
  boost::system::error_code ec;
  tcp::endpoint target(net::ip::address_v4::loopback(), target_port_);
  auto fd = ns_->socket(AF_INET, SOCK_STREAM);
  if (!fd) {
    log::warn("cannot relay a connection", {{"error", fd.error().message}});
    co_return;
  }
  upstream.assign(tcp::v4(), fd.value(), ec);
  if (ec) {
    co_return;
  }
  auto [cec] = co_await upstream.async_connect(target, net::as_tuple(net::use_awaitable));
  if (cec || *generation != mine) {
    co_return;  // the control plane is not listening (yet): the client sees the connection close
  }
  client.set_option(tcp::no_delay(true), ec);
  upstream.set_option(tcp::no_delay(true), ec);
  // Ends when both directions are done, or at close() (the watcher closes both sockets).
  net::steady_timer watcher(client.get_executor());
  auto watch = [&]() -> net::awaitable<void> {
    while (*generation == mine) {
      watcher.expires_after(std::chrono::milliseconds(500));
      co_await watcher.async_wait(net::as_tuple(net::use_awaitable));
    }
    boost::system::error_code ignored;
    client.close(ignored);
    upstream.close(ignored);
  };
  co_await ((pump(client, upstream) && pump(upstream, client)) || watch());
}

}  // namespace kflex::agent::runtime
