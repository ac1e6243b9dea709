// SPDX-License-Identifier: Apache-2.0
#include "agent/host/netns.hpp"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

namespace kflex::agent::runtime {
namespace {

// Runs fn on a short-lived thread: setns and unshare change only the calling thread's
// namespace, so the agent's own threads never leave theirs.
template <class F>
auto onOwnThread(F fn) {
  decltype(fn()) out = fail("not run");
  std::thread t([&] { out = fn(); });
  t.join();
  return out;
}

Result<void> loopbackUp() {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    return fail(std::string("socket: ") + std::strerror(errno));
  }
  ifreq req{};
  std::strncpy(req.ifr_name, "lo", IFNAMSIZ - 1);
  bool ok = ::ioctl(s, SIOCGIFFLAGS, &req) == 0;
  req.ifr_flags |= IFF_UP;
  ok = ok && ::ioctl(s, SIOCSIFFLAGS, &req) == 0;
  int err = errno;
  ::close(s);
  if (!ok) {
    return fail(std::string("cannot bring the loopback up: ") + std::strerror(err));
  }
  return {};
}

}  // namespace

Result<NetNamespace> NetNamespace::create() {
  auto fd = onOwnThread([]() -> Result<int> {
    if (::unshare(CLONE_NEWNET) != 0) {
      return fail(std::string("cannot create a network namespace: ") + std::strerror(errno) +
                  (errno == EPERM ? " (the agent needs root or CAP_SYS_ADMIN)" : ""));
    }
    if (auto r = loopbackUp(); !r) {
      return r.error();
    }
    int fd = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return fail(std::string("/proc/thread-self/ns/net: ") + std::strerror(errno));
    }
    return fd;
  });
  if (!fd) {
    return fd.error();
  }
  return NetNamespace(fd.value());
}

Result<NetNamespace> NetNamespace::ofProcess(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/ns/net";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return fail(path + ": " + std::strerror(errno));
  }
  return NetNamespace(fd);
}

bool NetNamespace::available() {
  static const bool yes = create().has_value();
  return yes;
}

NetNamespace& NetNamespace::operator=(NetNamespace&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

NetNamespace::~NetNamespace() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

Result<int> NetNamespace::socket(int domain, int type, int protocol) const {
  int ns = fd_;
  return onOwnThread([&]() -> Result<int> {
    if (::setns(ns, CLONE_NEWNET) != 0) {
      return fail(std::string("cannot enter the control plane's network namespace: ") + std::strerror(errno));
    }
    int s = ::socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (s < 0) {
      return fail(std::string("socket: ") + std::strerror(errno));
    }
    return s;
  });
}

}  // namespace kflex::agent::runtime
