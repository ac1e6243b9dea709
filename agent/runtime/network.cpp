// SPDX-License-Identifier: Apache-2.0
#include "agent/runtime/network.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "agent/host/ports.hpp"

namespace kflex::agent::runtime {

namespace {

// The ports other control planes here were given (kept in agent.db) and may not hold yet: each
// one's PORT and PORT + 1 (k3s's API server), and its controller manager's and scheduler's.
std::set<uint16_t> portsGiven(const ControlPlaneState& state) {
  std::set<uint16_t> out;
  for (uint16_t port : state.portsOfDesired()) {
    out.insert(port);
    out.insert(static_cast<uint16_t>(port + 1));
  }
  return out;
}

}  // namespace

Result<uint16_t> persistentPort(ControlPlaneState& state, PortRole role, const std::string& address,
                                bool next_free_on_loopback) {
  if (uint16_t stored = state.port(role); stored != 0) {
    return stored;
  }
  std::set<uint16_t> given = portsGiven(state);
  Result<uint16_t> port = fail("no port");
  for (int attempt = 0; attempt < 64; ++attempt) {
    port = freePort(address);
    bool next_ok = !next_free_on_loopback ||
                   (port && *port < 65535 && portFree("127.0.0.1", *port + 1) && !given.count(*port + 1));
    if (!port || (!given.count(*port) && next_ok)) {
      break;
    }
    port = fail("cannot find a free port on " + address + (next_free_on_loopback ? " whose next port is free" : ""));
  }
  if (!port) {
    return port.error();
  }
  if (auto r = state.setPort(role, *port); !r) {
    return r.error();
  }
  return *port;
}

Result<void> ControlPlaneNetwork::prepare(RuntimeEnv& env, ControlPlaneState& state,
                                          const std::filesystem::path& adopt_pid_file, uint16_t inner_port,
                                          bool isolated, bool api_port_follows) {
  if (!isolated) {
    auto port = persistentPort(state, PortRole::Api, env.config.advertise_address, api_port_follows);
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
  uint16_t stored = state.port(PortRole::Api);
  auto fwd = PortForward::open(env.executor, env.config.advertise_address, stored, ns_, inner_port);
  if (!fwd) {
    return fwd.error();
  }
  forward_ = fwd.value();
  port_ = forward_->port();
  if (port_ != stored) {
    if (auto r = state.setPort(PortRole::Api, port_); !r) {
      return r.error();
    }
  }
  return {};
}

void ControlPlaneNetwork::close() {
  if (forward_) {
    forward_->close();
    forward_.reset();
  }
}

void ControlPlaneNetwork::forget(ControlPlaneState& state) {
  close();
  ns_.reset();
  port_ = 0;
  (void)state.setPort(PortRole::Api, 0);
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
