// SPDX-License-Identifier: Apache-2.0
#include "agent/host/ports.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "shared/net/asio.hpp"

namespace kflex::agent::runtime {

Result<uint16_t> freePort(const std::string& address) {
  boost::system::error_code ec;
  auto addr = net::ip::make_address(address, ec);
  if (ec) {
    return fail("not an IP address: " + address);
  }
  net::io_context ioc;
  net::ip::tcp::acceptor a(ioc);
  net::ip::tcp::endpoint ep(addr, 0);
  a.open(ep.protocol(), ec);
  if (!ec) {
    a.bind(ep, ec);
  }
  if (ec) {
    return fail(ec == net::error::address_in_use ? Errc::Conflict : Errc::Internal,
                "cannot find a free port on " + address + ": " + ec.message());
  }
  return a.local_endpoint().port();
}

bool portFree(const std::string& address, uint16_t port, bool udp) {
  boost::system::error_code ec;
  auto addr = net::ip::make_address(address, ec);
  if (ec) {
    return false;
  }
  net::io_context ioc;
  if (udp) {
    net::ip::udp::socket s(ioc);
    s.open(addr.is_v4() ? net::ip::udp::v4() : net::ip::udp::v6(), ec);
    if (!ec) {
      s.bind({addr, port}, ec);
    }
    return !ec;
  }
  net::ip::tcp::acceptor a(ioc);
  net::ip::tcp::endpoint ep(addr, port);
  a.open(ep.protocol(), ec);
  if (!ec) {
    a.set_option(net::socket_base::reuse_address(true), ec);
    a.bind(ep, ec);
  }
  return !ec;
}

std::string urlHost(const std::string& address) {
  return address.find(':') != std::string::npos ? "[" + address + "]" : address;
}

std::string localAddressTowards(const std::string& host) {
  net::io_context ioc;
  boost::system::error_code ec;
  net::ip::udp::resolver resolver(ioc);
  auto results = resolver.resolve(host, "443", ec);
  if (ec || results.empty()) {
    return "127.0.0.1";
  }
  auto target = results.begin()->endpoint();
  if (target.address().is_loopback()) {
    return target.address().is_v6() ? "::1" : "127.0.0.1";
  }
  net::ip::udp::socket s(ioc);
  s.open(target.protocol(), ec);
  if (!ec) {
    s.connect(target, ec);  // a UDP connect only picks a route
  }
  if (ec) {
    return "127.0.0.1";
  }
  return s.local_endpoint(ec).address().to_string();
}

bool unixReachable(const std::filesystem::path& path) {
  sockaddr_un a{};
  if (path.native().size() >= sizeof a.sun_path) {
    return false;
  }
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.native().size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  // (A listening unix socket accepts at once, or says EAGAIN when its backlog is full: up.)
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 || errno == EAGAIN;
  ::close(fd);
  return ok;
}

bool embeddedEtcdPortsTaken() {
  for (uint16_t port : {2379, 2380, 2381, 2382}) {
    if (!portFree("127.0.0.1", port)) {
      return true;
    }
  }
  return false;
}

bool nodeAgentResourcesTaken() {
  return !portFree("0.0.0.0", 10250) || !portFree("127.0.0.1", 10248) || !portFree("0.0.0.0", 8472, true) ||
         unixReachable("/run/k3s/containerd/containerd.sock");
}

}  // namespace kflex::agent::runtime
