// SPDX-License-Identifier: Apache-2.0
// The fixture of the control-plane tests: a hub, and an agent that runs the stand-ins
// (tests/standins) as it would run the real programs.
#pragma once

#include <signal.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/host/supervisor.hpp"
#include "shared/common/util.hpp"
#include "tests/integration/agent_cleanup.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {

inline std::string slurp(const std::filesystem::path& p) {
  auto t = readFile(p);
  return t ? t.value() : std::string();
}

// Whether pid runs (a zombie that init has not reaped yet does not).
inline bool running(pid_t pid) {
  auto stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) {
    return false;
  }
  auto close = stat->rfind(')');
  return close != std::string::npos && close + 2 < stat->size() && (*stat)[close + 2] != 'Z';
}

class ControlPlanes : public ::testing::Test {
 protected:
  using Json = nlohmann::json;
  void SetUp() override {
    if (kubectlPath().empty()) {
      GTEST_SKIP() << "kubectl is not installed";
    }
    ::setenv("KFLEX_STANDIN_STARTUP_MS", "300", 1);
    ASSERT_TRUE(writeFileAtomic(dir_.path() / "hub.yaml",
                                "agent_lease_renew_seconds: 1\nagent_lease_duration_seconds: 5\n", 0644));
    hub_ = std::make_unique<HubProcess>(dir_.path() / "hub",
                                        std::vector<std::string>{"--config", (dir_.path() / "hub.yaml").string(),
                                                                 "--listen", "127.0.0.1:0"});
    ASSERT_TRUE(hub_->ok()) << hub_->log();
    auto r = kflex({"token", "create"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto join = agentJoinIn(r.out);
    ASSERT_TRUE(join) << r.out;
    token_ = join->token;
    pin_ = join->pin;
  }
  void TearDown() override {
    if (agent_) {
      agent_->signal(SIGTERM);
      agent_->wait(std::chrono::seconds(10));
    }
    endControlPlanes(dir_.path() / "edge-1");
  }
  CommandResult kflex(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {(binDir() / "kflex").string(), "--kubeconfig", hub_->kubeconfig().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  }
  /// `prefix`: what runs the agent (e.g. `ip netns exec NS`).
  void startAgent(const std::vector<std::string>& extra = {}, const std::string& log = "edge-1.log",
                  const std::vector<std::string>& prefix = {}) {
    std::vector<std::string> argv = prefix;
    std::vector<std::string> agent = {(binDir() / "kflex-agent").string(), "run", "--config", "/dev/null",
                                     "--data-dir", data_dir_arg_.empty() ? (dir_.path() / "edge-1").string() : data_dir_arg_,
                                     "--hub", hub_->url(), "--name", "edge-1", "--token", token_, "--ca-cert-hash", pin_,
                                     "--bin-dir", (binDir() / "standins").string()};
    argv.insert(argv.end(), agent.begin(), agent.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    agent_ = std::make_unique<Process>(argv, dir_.path() / log);
  }
  std::string field(const std::string& cp, const std::string& path) {
    return kubectl(hub_->kubeconfig(), {"get", "cp", cp, "-o", "jsonpath={" + path + "}"}).out;
  }
  std::string ready(const std::string& cp) {
    return field(cp, ".status.conditions[?(@.type=='Ready')].status") + "/" +
           field(cp, ".status.conditions[?(@.type=='Ready')].reason");
  }
  std::filesystem::path cpDir(const std::string& cp) { return dir_.path() / "edge-1" / "cp" / cp; }
  pid_t k3sPid(const std::string& cp) { return agent::runtime::runningPid(cpDir(cp) / "run" / "k3s.pid"); }
  // The kubeconfig k3s wrote, pointed at the endpoint the agent reports (what `kflex ctx` will hand out).
  std::filesystem::path reachableKubeconfig(const std::string& cp) {
    std::string endpoint = field(cp, ".status.endpoint");
    auto text = readFile(cpDir(cp) / "kubeconfig.yaml");
    EXPECT_TRUE(text);
    Json kc = Json::parse(text ? text.value() : "{}", nullptr, false);
    kc["clusters"][0]["cluster"]["server"] = endpoint;
    std::filesystem::path out = dir_.path() / (cp + ".kubeconfig");
    EXPECT_TRUE(writeFileAtomic(out, kc.dump(), 0600));
    return out;
  }

  // The kubeconfig the hub hands out for `cp` (its secret), as a file: the one to the control
  // plane's own address (KEY-direct), or through the hub when `through_hub`.
  std::filesystem::path reachableKubeconfigFromSecret(const std::string& cp, bool through_hub = false) {
    std::string ns = field(cp, ".status.secretRef.namespace");
    std::string name = field(cp, ".status.secretRef.name");
    std::string key = field(cp, ".status.secretRef.key") + (through_hub ? "" : "-direct");
    auto data = kubectl(hub_->kubeconfig(), {"get", "secret", "-n", ns, name, "-o", "jsonpath={.data." + key + "}"});
    auto text = base64Decode(data.out);
    std::filesystem::path out = dir_.path() / (cp + "-secret.kubeconfig");
    EXPECT_TRUE(text) << data.err;
    EXPECT_TRUE(writeFileAtomic(out, text ? text.value() : "", 0600));
    return out;
  }

  TempDir dir_;
  std::unique_ptr<HubProcess> hub_;
  std::unique_ptr<Process> agent_;
  std::string data_dir_arg_;  // --data-dir as given, when not the absolute default
  std::string token_;
  std::string pin_;
};

}  // namespace kflex::test
