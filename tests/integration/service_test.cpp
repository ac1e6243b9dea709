// SPDX-License-Identifier: Apache-2.0
// The systemd side of the daemons: the units as shipped, and the notification protocol the
// Type=notify units rely on (READY, watchdog pings, STOPPING), checked against a real
// notification socket without needing systemd to run.
#include <gtest/gtest.h>

#include <unistd.h>

#include <csignal>
#include <fstream>
#include <regex>
#include <sstream>

#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

namespace fs = std::filesystem;


std::string readFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The unit with its ExecStart pointing at the build's binary (verify checks it is executable).
fs::path unitForBuild(const std::string& unit, const fs::path& dir) {
  std::string text = readFile(sourceDir() / "systemd" / unit);
  text = std::regex_replace(text, std::regex("/usr/s?bin/(kflex-[a-z]+)"), (binDir() / "$1").string());
  fs::path out = dir / unit;
  std::ofstream(out) << text;
  return out;
}

TEST(SystemdUnits, VerifyCleanAndTheHubIsConfined) {
  if (run({"sh", "-c", "command -v systemd-analyze"}).exit_code != 0) {
    GTEST_SKIP() << "systemd-analyze is not installed (Debian package systemd)";
  }
  TempDir dir;
  fs::path hub = unitForBuild("kflex-hub.service", dir.path());
  fs::path agent = unitForBuild("kflex-agent.service", dir.path());
  // (--man=no: the man pages are installed by the packages, not present in a build tree.)
  auto verify = run({"systemd-analyze", "verify", "--man=no", hub.string(), agent.string()});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  EXPECT_EQ(verify.err, "") << "systemd-analyze verify warned";
  auto security = run({"systemd-analyze", "security", "--offline=true", hub.string()});
  std::smatch m;
  ASSERT_TRUE(std::regex_search(security.out, m, std::regex("Overall exposure level for kflex-hub.service: ([0-9.]+)")))
      << security.out << security.err;
  EXPECT_LT(std::stod(m[1]), 3.0) << security.out;
  // What the agent's unit must keep so control planes survive an agent restart.
  std::string agent_text = readFile(agent);
  EXPECT_NE(agent_text.find("KillMode=process"), std::string::npos);
  EXPECT_NE(agent_text.find("Delegate=yes"), std::string::npos);
  EXPECT_NE(agent_text.find("Type=notify"), std::string::npos);
}

TEST(ServiceManager, HubNotifiesReadyPingsTheWatchdogAndNotifiesStopping) {
  TempDir dir;
  NotifySocket notify(dir.path() / "notify.sock");
  ASSERT_TRUE(notify.ok());
  // As systemd starts a Type=notify unit with WatchdogSec=400ms.
  Process hub({"env", "NOTIFY_SOCKET=" + notify.path().string(), "WATCHDOG_USEC=400000",
               (binDir() / "kflex-hub").string(), "serve", "--config", "/dev/null", "--data-dir",
               (dir.path() / "data").string(), "--listen", "127.0.0.1:0"},
              dir.path() / "hub.log");
  ASSERT_TRUE(notify.waitFor("READY=1", std::chrono::seconds(20))) << hub.log();
  // READY comes once the hub serves: its log already says so.
  EXPECT_NE(hub.log().find("kflex-hub serving"), std::string::npos);
  bool status = false;
  for (const auto& d : notify.received()) {
    status |= d.find("STATUS=serving https://127.0.0.1:") != std::string::npos;
  }
  EXPECT_TRUE(status);
  // Pings at half the interval: several in a second.
  auto start = std::chrono::steady_clock::now();
  while (notify.count("WATCHDOG=1") < 3 && std::chrono::steady_clock::now() - start < std::chrono::seconds(3)) {
    notify.waitFor("WATCHDOG=1", std::chrono::seconds(1));
  }
  EXPECT_GE(notify.count("WATCHDOG=1"), 3u);
  hub.signal(SIGTERM);
  EXPECT_TRUE(notify.waitFor("STOPPING=1", std::chrono::seconds(10)));
  EXPECT_EQ(hub.wait(std::chrono::seconds(20)), 0) << hub.log();
}

// With systemd as PID 1: the real binary as a transient Type=notify unit becomes active only
// once it has said READY, with its status line.
TEST(ServiceManager, UnderARunningSystemdTheHubUnitBecomesActive) {
  std::string pid1 = readFile("/proc/1/comm");
  while (!pid1.empty() && (pid1.back() == '\n' || pid1.back() == ' ')) {
    pid1.pop_back();
  }
  if (pid1 != "systemd") {
    GTEST_SKIP() << "PID 1 is \"" << pid1 << "\", not systemd: no unit can be started here (the notification "
                 << "protocol itself is tested against a notification socket above)";
  }
  if (::geteuid() != 0) {
    GTEST_SKIP() << "starting a transient system unit needs root";
  }
  TempDir dir;
  std::string unit = "kflex-hub-test-" + std::to_string(::getpid()) + ".service";
  auto start = run({"systemd-run", "--unit", unit, "--collect", "--property=Type=notify", "--property=NotifyAccess=main",
                    "--property=WatchdogSec=10s", (binDir() / "kflex-hub").string(), "serve", "--config", "/dev/null",
                    "--data-dir", (dir.path() / "data").string(), "--listen", "127.0.0.1:0"},
                   {}, "", std::chrono::seconds(60));
  EXPECT_EQ(start.exit_code, 0) << start.out << start.err;
  auto state = run({"systemctl", "show", "--property=ActiveState", "--value", unit});
  EXPECT_EQ(state.out, "active\n");
  auto status = run({"systemctl", "show", "--property=StatusText", "--value", unit});
  EXPECT_NE(status.out.find("serving https://127.0.0.1:"), std::string::npos) << status.out;
  EXPECT_EQ(run({"systemctl", "stop", unit}).exit_code, 0);
}

TEST(ServiceManager, WithoutANotificationSocketNothingIsSent) {
  TempDir dir;
  // No NOTIFY_SOCKET: the hub serves as usual and says nothing about a watchdog.
  HubProcess hub(dir.path() / "data");
  ASSERT_TRUE(hub.ok()) << hub.log();
  EXPECT_EQ(hub.log().find("watchdog"), std::string::npos);
  EXPECT_EQ(hub.stop(), 0);
}

}  // namespace
}  // namespace kflex::test
