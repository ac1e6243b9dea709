// SPDX-License-Identifier: Apache-2.0
#include "agent/runtime/network.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "agent/agent_state.hpp"
#include "agent/runtime/probe.hpp"

namespace kflex::agent::runtime {

Result<uint16_t> persistentPort(RuntimeEnv& env, const std::string& key, const std::string& address) {
  auto stored = static_cast<uint16_t>(std::atoi(env.state.get(key).value_or("0").c_str()));
  if (stored != 0) {
    return stored;
  }
  auto port = freePort(address);
  if (!port) {
    return port.error();
  }
  if (auto r = env.state.set(key, std::to_string(*port)); !r) {
    return r.error();
  }
  return *port;
}

Result<void> ControlPlaneNetwork::prepare(RuntimeEnv& env, const std::string& name,
                                          const std::filesystem::path& adopt_pid_file, uint16_t inner_port) {
  std::string key = "cp/" + name + "/port";
  if (!env.isolate) {
    auto port = persistentPort(env, key, env.config.advertise_address);
    if (!port) {
      return port.error();
    }
    port_ = *port;
    return {};
  }
  if (!ns_) {
    pid_t running = runningPid(adopt_pid_file);
    auto ns = running > 0 ? NetNamespace::ofProcess(running) : NetNamespace::create();
    if (!ns) {
      return ns.error();
    }
    ns_ = std::make_shared<NetNamespace>(std::move(ns.value()));
  }
  auto stored = static_cast<uint16_t>(std::atoi(env.state.get(key).value_or("0").c_str()));
  auto fwd = PortForward::open(env.executor, env.config.advertise_address, stored, ns_, inner_port);
  if (!fwd) {
    return fwd.error();
  }
  forward_ = fwd.value();
  port_ = forward_->port();
  if (port_ != stored) {
    if (auto r = env.state.set(key, std::to_string(port_)); !r) {
      return r.error();
    }
  }
  return {};
}

Result<void> ControlPlaneNetwork::relayInto(RuntimeEnv& env, uint16_t inner_port, const std::string& host, uint16_t port) {
  if (!ns_) {
    return fail("no namespace to relay into");
  }
  if (outward_) {
    return {};
  }
  net::ip::tcp::resolver resolver(env.executor);
  boost::system::error_code ec;
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) {
    return fail("cannot resolve " + host + ": " + (ec ? ec.message() : "no address"));
  }
  auto relay = PortForward::openInto(env.executor, ns_, inner_port, results.begin()->endpoint());
  if (!relay) {
    return relay.error();
  }
  outward_ = relay.value();
  return {};
}

void ControlPlaneNetwork::close() {
  for (auto* f : {&forward_, &outward_}) {
    if (*f) {
      (*f)->close();
      f->reset();
    }
  }
}

void ControlPlaneNetwork::forget(RuntimeEnv& env, const std::string& name) {
  close();
  ns_.reset();
  port_ = 0;
  (void)env.state.set("cp/" + name + "/port", "");
}

bool ControlPlaneNetwork::reachable(uint16_t port, std::chrono::milliseconds timeout) const {
  int fd = -1;
  if (ns_) {
    auto s = ns_->socket(AF_INET, SOCK_STREAM);
    if (!s) {
      return false;
    }
    fd = s.value();
  } else {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  if (fd < 0) {
    return false;
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (!ok && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    ok = ::poll(&p, 1, static_cast<int>(timeout.count())) == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
         err == 0;
  }
  ::close(fd);
  return ok;
}

std::string ControlPlaneNetwork::endpoint(const RuntimeEnv& env) const {
  return "https://" + urlHost(env.config.advertise_address) + ":" + std::to_string(port_);
}

}  // namespace kflex::agent::runtime
