// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>

#include "shared/common/result.hpp"

namespace kflex::agent::runtime {

/**
 * A Linux network namespace held by a descriptor: a private loopback for one control plane, so
 * that the fixed ports its programs bind (k3s's 6444, 10257-10259, 2379-2382; Kine's 8080) never
 * collide with another control plane's. The agent reaches into it with sockets made inside it.
 * Needs CAP_SYS_ADMIN (the agent runs as root); available() says whether this host allows it.
 * Thread safety: const members from any thread.
 */
class NetNamespace {
 public:
  /// A new namespace with its loopback up.
  static Result<NetNamespace> create();
  /// The namespace process `pid` runs in (an adopted control plane's).
  static Result<NetNamespace> ofProcess(pid_t pid);
  /// Whether namespaces can be made here (tried once, cached).
  static bool available();

  NetNamespace() = default;
  NetNamespace(NetNamespace&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  NetNamespace& operator=(NetNamespace&& o) noexcept;
  ~NetNamespace();
  NetNamespace(const NetNamespace&) = delete;
  NetNamespace& operator=(const NetNamespace&) = delete;

  bool valid() const { return fd_ >= 0; }
  /// The namespace descriptor (for setns in a child).
  int fd() const { return fd_; }
  /// A non-blocking socket (close-on-exec) that lives in this namespace.
  Result<int> socket(int domain, int type, int protocol = 0) const;

 private:
  explicit NetNamespace(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace kflex::agent::runtime
