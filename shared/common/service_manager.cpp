// SPDX-License-Identifier: Apache-2.0
#include "shared/common/service_manager.hpp"

#include <systemd/sd-daemon.h>

#include <cstring>

#include "shared/common/log.hpp"

namespace kflex::service {
namespace {

void notify(const std::string& message) {
  // (0: keep $NOTIFY_SOCKET in the environment for the later notifications.)
  int r = sd_notify(0, message.c_str());
  if (r < 0) {
    log::warn("cannot notify the service manager", {{"error", std::strerror(-r)}});
  }
}

std::string oneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n') {
      c = ' ';
    }
  }
  return s;
}

}  // namespace

void ready(const std::string& status) { notify("READY=1\nSTATUS=" + oneLine(status)); }

void status(const std::string& text) { notify("STATUS=" + oneLine(text)); }

void stopping() { notify("STOPPING=1\nSTATUS=stopping"); }

std::optional<std::chrono::microseconds> watchdogInterval() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    return std::chrono::microseconds(usec);
  }
  return std::nullopt;
}

Watchdog::Watchdog(const net::any_io_executor& executor) : timer_(executor) {}

void Watchdog::start() {
  auto interval = watchdogInterval();
  if (!interval) {
    return;
  }
  every_ = *interval / 2;
  log::info("pinging the service manager's watchdog",
            {{"every", std::to_string(every_.count() / 1000) + "ms"}});
  notify("WATCHDOG=1");
  arm();
}

void Watchdog::arm() {
  timer_.expires_after(every_);
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || stopped_) {
      return;
    }
    notify("WATCHDOG=1");
    arm();
  });
}

void Watchdog::stop() {
  stopped_ = true;
  timer_.cancel();
}

}  // namespace kflex::service
