// SPDX-License-Identifier: Apache-2.0
// The real kflex CLI against the real kflex-hub.
#include <gtest/gtest.h>

#include <thread>

#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    hub_ = std::make_unique<HubProcess>(dir_.path() / "data");
    ASSERT_TRUE(hub_->ok()) << hub_->log();
    auto r = kflex({"init", "--hub-kubeconfig", hub_->kubeconfig().string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  CommandResult kflex(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {(binDir() / "kflex").string(), "--kubeconfig", (dir_.path() / "user.kubeconfig").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  }
  TempDir dir_;
  std::unique_ptr<HubProcess> hub_;
};

TEST_F(Cli, CreateListGetDelete) {
  auto r = kflex({"create", "--no-wait", "cp1", "-t", "k3s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = kflex({"create", "--no-wait", "cp1", "-t", "k3s"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  r = kflex({"create", "--no-wait", "cp2", "-t", "nope"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown type"), std::string::npos);
  r = kflex({"create", "--no-wait", "cp3", "-p", "hook1", "-e", "a=b", "-e", "c=d"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = kflex({"get", "cp3", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"hookName\": \"hook1\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"type\": \"k8s\""), std::string::npos);
  r = kflex({"list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("cp1"), std::string::npos);
  EXPECT_NE(r.out.find("k3s"), std::string::npos);
  r = kflex({"delete", "cp1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(kflex({"get", "cp1"}).exit_code, 1);
  r = kflex({"ctx"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("kflex-hub"), std::string::npos);
}

TEST_F(Cli, CreateWaitFollowsTheReadyCondition) {
  std::thread marker([&] {
    waitFor([&] {
      return kubectlPath().empty() ||
             kubectl(dir_.path() / "user.kubeconfig", {"get", "cp", "cpw"}).exit_code == 0;
    }, std::chrono::seconds(10), "cpw");
    if (!kubectlPath().empty()) {
      kubectl(dir_.path() / "user.kubeconfig",
              {"patch", "cp", "cpw", "--subresource", "status", "--type", "merge", "-p",
               R"({"status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"True","reason":"Available","message":"","lastTransitionTime":"2026-01-01T00:00:00Z","lastUpdateTime":"2026-01-01T00:00:00Z"}]}})"});
    }
  });
  if (kubectlPath().empty()) {
    marker.join();
    GTEST_SKIP() << "kubectl is not installed";
  }
  auto r = kflex({"create", "cpw", "--wait", "--timeout", "20s"});
  marker.join();
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("is ready"), std::string::npos) << r.out;
  r = kflex({"create", "never", "--wait", "--timeout", "2s"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not ready"), std::string::npos) << r.err;
}

TEST_F(Cli, HubDownIsAClearError) {
  hub_->stop();
  auto r = kflex({"list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("connection refused"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("kflex-hub running"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kflex::test
