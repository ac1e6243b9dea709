// SPDX-License-Identifier: Apache-2.0
#include "agent/runtime/probe.hpp"

#include "shared/config/kubeconfig.hpp"
#include "shared/net/https_client.hpp"

namespace kflex::agent::runtime {

net::awaitable<ProbeResult> ReadyzProbe::run(std::filesystem::path kubeconfig, std::string server,
                                             std::chrono::milliseconds timeout) {
  ProbeResult out;
  std::error_code ec;
  auto mtime = std::filesystem::last_write_time(kubeconfig, ec);
  if (ec) {
    client_.reset();
    out.message = "waiting for the control plane to write its kubeconfig (" + kubeconfig.filename().string() + ")";
    co_return out;
  }
  if (!client_ || mtime != made_from_ || server != server_) {
    client_.reset();
    made_from_ = mtime;
    server_ = server;
    auto kc = config::Kubeconfig::load(kubeconfig);
    auto access = kc ? kc->access() : Result<config::ClusterAccess>(kc.error());
    if (!access) {
      problem_ = "the control plane's kubeconfig is unusable: " + access.error().message;
    } else {
      access->server = server;
      auto client = net_client::HttpsClient::create(access.value());
      if (!client) {
        problem_ = "the control plane's credentials are unusable: " + client.error().message;
      } else {
        client_ = std::move(client.value());
        problem_.clear();
      }
    }
  }
  if (!client_) {
    out.message = problem_;
    co_return out;
  }
  auto res = co_await client_->asyncRequest(http::verb::get, "/readyz", "", "", timeout);
  if (!res) {
    out.message = "the API server does not answer yet: " + res.error().message;
    co_return out;
  }
  out.reachable = true;
  out.ready = res->status == 200;
  if (!out.ready) {
    // The first failing check ("[-]etcd failed: ...") says most; else the first line.
    std::string first = res->body.substr(0, res->body.find('\n'));
    if (auto bad = res->body.find("[-]"); bad != std::string::npos) {
      first = res->body.substr(bad, res->body.find('\n', bad) - bad);
    }
    first = first.substr(0, 200);
    out.message = "the API server is not ready: /readyz answered " + std::to_string(res->status) +
                  (first.empty() ? "" : " (" + first + ")");
  }
  co_return out;
}

net::awaitable<ProbeResult> probeReadyz(std::filesystem::path kubeconfig, std::string server,
                                        std::chrono::milliseconds timeout) {
  ReadyzProbe probe;
  co_return co_await probe.run(std::move(kubeconfig), std::move(server), timeout);
}

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

}  // namespace kflex::agent::runtime
