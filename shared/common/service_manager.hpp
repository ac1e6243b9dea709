// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "shared/net/asio.hpp"

namespace kflex::service {

// The service manager's notification protocol (sd_notify): what a Type=notify systemd unit
// waits for. Every call is a no-op when the process was not started by such a manager
// ($NOTIFY_SOCKET unset), so the daemons call them unconditionally.

/// The daemon is serving; `status` is shown by `systemctl status`.
void ready(const std::string& status);
/// A new one-line status.
void status(const std::string& text);
/// A graceful stop has begun.
void stopping();
/// The interval within which the manager expects a ping (WatchdogSec=), when it asked for them.
std::optional<std::chrono::microseconds> watchdogInterval();

/**
 * Pings the manager's watchdog at half its interval from a timer on the daemon's event loop: if
 * the loop hangs, the pings stop and the manager restarts the daemon. Does nothing when no
 * watchdog was asked for.
 */
class Watchdog {
 public:
  explicit Watchdog(const net::any_io_executor& executor);
  void start();
  void stop();

 private:
  void arm();
  net::steady_timer timer_;
  std::chrono::microseconds every_{0};
  bool stopped_ = false;
};

}  // namespace kflex::service
