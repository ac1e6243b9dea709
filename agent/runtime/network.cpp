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

#include "agent/state/agent_state.hpp"
#include "agent/runtime/probe.hpp"

namespace kflex::agent::runtime {

namespace {

// The ports other control planes here were given (kept in agent.db) and may not hold yet: each
// one's PORT and PORT + 1 (k3s's API server), and its controller manager's and scheduler's.
std::set<uint16_t> portsGiven(RuntimeEnv& env) {
  std::set<uint16_t> out;
  for (const auto& d : env.state.desired()) {
    for (const char* k : {"/port", "/kcm-port", "/scheduler-port"}) {
      auto port = static_cast<uint16_t>(std::atoi(env.state.get("cp/" + d.name + k).value_or("0").c_str()));
      if (port != 0) {
        out.insert(port);
        out.insert(static_cast<uint16_t>(port + 1));
      }
    }
  }
  return out;
}

}  // namespace

Result<uint16_t> persistentPort(RuntimeEnv& env, const std::string& key, const std::string& address,
                                bool next_free_on_loopback) {
  auto stored = static_cast<uint16_t>(std::atoi(env.state.get(key).value_or("0").c_str()));
  if (stored != 0) {
    return stored;
  }
  std::set<uint16_t> given = portsGiven(env);
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
  if (auto r = env.state.set(key, std::to_string(*port)); !r) {
    return r.error();
  }
  return *port;
}

Result<void> ControlPlaneNetwork::prepare(RuntimeEnv& env, const std::string& name,
                                          const std::filesystem::path& adopt_pid_file, uint16_t inner_port,
                                          bool isolated, bool api_port_follows) {
  std::string key = "cp/" + name + "/port";
  if (!isolated) {
    auto port = persistentPort(env, key, env.config.advertise_address, api_port_follows);
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

void ControlPlaneNetwork::close() {
  if (forward_) {
    forward_->close();
    forward_.reset();
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

std::string ControlPlaneNetwork::endpoint(const RuntimeEnv& env) const {
  return "https://" + urlHost(env.config.advertise_address) + ":" + std::to_string(port_);
}

}  // namespace kflex::agent::runtime
