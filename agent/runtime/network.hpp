// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "agent/host/netns.hpp"
#include "agent/host/port_forward.hpp"
#include "agent/runtime/runtime.hpp"
#include "agent/state/control_plane_state.hpp"

namespace kflex::agent::runtime {

/**
 * How a control plane is reached: with isolation, its own network namespace and a relay from
 * ADVERTISE:PORT on the host to a port on the namespace's loopback; without, PORT on the host,
 * which the control plane's API server binds itself. PORT is chosen once and kept in the control
 * plane's state (PortRole::Api).
 */
class ControlPlaneNetwork {
 public:
  /// Isolated: joins the namespace of the process of `adopt_pid_file` when it still runs (an
  /// agent restart), else makes one, and binds the relay. On the host's network: picks the host
  /// port, and with `api_port_follows` also makes sure PORT + 1 is free on 127.0.0.1 (k3s's
  /// embedded API server listens there). Code Conflict when a port it needs is held by another program.
  Result<void> prepare(RuntimeEnv& env, ControlPlaneState& state, const std::filesystem::path& adopt_pid_file,
                       uint16_t inner_port, bool isolated, bool api_port_follows = false);
  bool isolated() const { return ns_ != nullptr; }
  /// Closes the relay (the namespace stays while its processes run).
  void close();
  /// Forgets the port and the namespace (after removal).
  void forget(ControlPlaneState& state);
  bool prepared() const { return port_ != 0; }
  uint16_t port() const { return port_; }
  /// The namespace descriptor for a process spec (-1 without isolation).
  int nsFd() const { return ns_ ? ns_->fd() : -1; }
  /// Whether something accepts TCP on `port` of the control plane's loopback (its namespace's,
  /// or the host's without isolation) within `timeout`.
  bool reachable(uint16_t port, std::chrono::milliseconds timeout) const;
  /// https://ADVERTISE:PORT
  std::string endpoint(const RuntimeEnv& env) const;

 private:
  std::shared_ptr<NetNamespace> ns_;
  std::shared_ptr<PortForward> forward_;
  uint16_t port_ = 0;
};

/// A host port for `role` of a control plane, chosen once on `address` (clear of the ports kept
/// for the others) and kept in its state; with `next_free_on_loopback`, one whose successor is
/// free on 127.0.0.1 too. Code Conflict when the host has no free port left.
Result<uint16_t> persistentPort(ControlPlaneState& state, PortRole role, const std::string& address,
                                bool next_free_on_loopback = false);

}  // namespace kflex::agent::runtime
