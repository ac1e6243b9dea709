// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "shared/common/result.hpp"

// What is free and reachable on this host's network: the helpers runtimes and `kflex-agent check`
// pick and check ports with.
namespace kflex::agent::runtime {

/// A TCP port free on `address` now (the kernel's choice); code Conflict when none is left.
Result<uint16_t> freePort(const std::string& address);
/// Whether a TCP (or UDP) listener could bind ADDRESS:PORT now (SO_REUSEADDR, as Go's listeners).
bool portFree(const std::string& address, uint16_t port, bool udp = false);
/// An address as the host part of a URL (IPv6 in brackets).
std::string urlHost(const std::string& address);
/// The local address this host uses to reach `host` (no packet is sent); "127.0.0.1" for loopback
/// or when it cannot be told.
std::string localAddressTowards(const std::string& host);

/// Whether something accepts connections on the unix socket at `path` (a connect that does not block).
bool unixReachable(const std::filesystem::path& path);

/// Whether another program holds what k3s's embedded etcd binds on the host's network
/// (127.0.0.1:2379-2382, fixed).
bool embeddedEtcdPortsTaken();
/// Whether another program holds what k3s's node agent binds on the host (kubelet 10250 and
/// 10248, flannel 8472/udp, containerd's /run/k3s/containerd/containerd.sock: all fixed).
bool nodeAgentResourcesTaken();

}  // namespace kflex::agent::runtime
