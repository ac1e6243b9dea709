// SPDX-License-Identifier: Apache-2.0
// The lane for the real programs. Everywhere else the agent runs the stand-ins of tests/standins;
// here it runs whatever KFLEX_REAL_BIN_DIR holds (real k3s, kine, kube-apiserver,
// kube-controller-manager of a supported release, docs/launch-contract.md), and vClusters in the
// cluster KFLEX_REAL_CLUSTER_KUBECONFIG names. Without them every test here is skipped, saying
// which variable to set. Run as root, as the agent runs on an edge host:
//
//   KFLEX_REAL_BIN_DIR=/opt/k8s/bin ctest --test-dir build -R RealPrograms --output-on-failure
#include <unistd.h>

#include <cstdlib>

#include <gtest/gtest.h>

#include "shared/common/util.hpp"
#include "shared/store/postgres.hpp"
#include "tests/integration/agent_cleanup.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

class RealPrograms : public ::testing::Test {
 protected:
  void SetUp() override {
    bin_ = env("KFLEX_REAL_BIN_DIR");
    if (bin_.empty()) {
      GTEST_SKIP() << "KFLEX_REAL_BIN_DIR is not set: point it at a directory holding real k3s, kine, "
                      "kube-apiserver and kube-controller-manager to run the control planes for real";
    }
    if (kubectlPath().empty()) {
      GTEST_SKIP() << "kubectl is not installed";
    }
    hub_ = std::make_unique<HubProcess>(dir_.path() / "hub", std::vector<std::string>{"--listen", "127.0.0.1:0"});
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
      agent_->wait(10s);
    }
    endControlPlanes(dir_.path() / "edge-1");
  }
  void needs(const std::vector<std::string>& programs) {
    for (const auto& p : programs) {
      if (!fs::exists(fs::path(bin_) / p)) {
        GTEST_SKIP() << p << " is not in KFLEX_REAL_BIN_DIR (" << bin_ << ")";
      }
    }
  }
  CommandResult kflex(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {(binDir() / "kflex").string(), "--kubeconfig", hub_->kubeconfig().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, {}, "", 15min);
  }
  void startAgent(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {(binDir() / "kflex-agent").string(), "run", "--config", "/dev/null",
                                     "--data-dir", (dir_.path() / "edge-1").string(), "--hub", hub_->url(),
                                     "--name", "edge-1", "--token", token_, "--ca-cert-hash", pin_,
                                     "--bin-dir", bin_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    agent_ = std::make_unique<Process>(argv, dir_.path() / "edge-1.log");
  }
  // kubectl through `kflex ctx cp`.
  CommandResult throughContext(const std::string& cp, const std::vector<std::string>& args) {
    fs::path user = dir_.path() / ("user-" + cp + ".kubeconfig");
    fs::copy_file(hub_->kubeconfig(), user, fs::copy_options::overwrite_existing);  // (the hub current: a fresh ctx)
    auto r = run({(binDir() / "kflex").string(), "--kubeconfig", user.string(), "ctx", cp});
    return r.exit_code != 0 ? r : kubectl(user, args);
  }
  std::string agentLog() const { return agent_ ? agent_->log() : ""; }

  TempDir dir_;
  std::string bin_;
  std::unique_ptr<HubProcess> hub_;
  std::unique_ptr<Process> agent_;
  std::string token_;
  std::string pin_;
};

TEST_F(RealPrograms, TheHostCheckPasses) {
  auto r = run({(binDir() / "kflex-agent").string(), "check", "--config", "/dev/null", "--data-dir",
                (dir_.path() / "edge-1").string(), "--bin-dir", bin_});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

TEST_F(RealPrograms, K3sBecomesReadyAndServes) {
  needs({"k3s"});
  startAgent();
  auto r = kflex({"create", "real-k3s", "-t", "k3s", "--agent", "edge-1", "--timeout", "5m"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << agentLog();
  EXPECT_EQ(throughContext("real-k3s", {"get", "--raw", "/readyz"}).out, "ok");
  EXPECT_EQ(throughContext("real-k3s", {"create", "namespace", "made-here"}).exit_code, 0);
  r = kflex({"delete", "real-k3s", "--timeout", "2m"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(RealPrograms, K8sOnPostgresBecomesReadyAndServes) {
  needs({"kine", "kube-apiserver", "kube-controller-manager"});
  PostgresServer pg;
  if (!pg.problem().empty()) {
    GTEST_SKIP() << pg.problem();
  }
  startAgent({"--postgres-dsn", pg.dsn(), "--postgres-password-file", pg.passwordFile().string()});
  auto r = kflex({"create", "real-k8s", "-t", "k8s", "--agent", "edge-1", "--timeout", "5m"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << agentLog();
  EXPECT_EQ(throughContext("real-k8s", {"get", "--raw", "/readyz"}).out, "ok");
  EXPECT_EQ(throughContext("real-k8s", {"create", "namespace", "made-here"}).exit_code, 0);
  // Kine keeps it in PostgreSQL, not in a SQLite file of its own.
  EXPECT_TRUE(store::execute(store::withDatabase({pg.dsn(), pg.password()}, "real_k8s"),
                             "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM kine WHERE name = '/registry/namespaces/made-here') "
                             "THEN RAISE EXCEPTION 'namespace made-here is not in kine'; END IF; END $$"));
  r = kflex({"delete", "real-k8s", "--timeout", "2m"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(RealPrograms, VClusterBecomesReadyAndRunsAJob) {
  std::string cluster = env("KFLEX_REAL_CLUSTER_KUBECONFIG");
  if (cluster.empty()) {
    GTEST_SKIP() << "KFLEX_REAL_CLUSTER_KUBECONFIG is not set: point it at a real cluster for vCluster 0.16";
  }
  startAgent({"--cluster-kubeconfig", cluster});
  auto r = kflex({"create", "real-vc", "-t", "vcluster", "--agent", "edge-1", "--timeout", "10m"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << agentLog();
  EXPECT_EQ(throughContext("real-vc", {"get", "--raw", "/readyz"}).out, "ok");
  auto job = throughContext("real-vc", {"create", "job", "real-job", "--image=busybox", "--", "true"});
  EXPECT_EQ(job.exit_code, 0) << job.err;
  auto done = throughContext("real-vc", {"wait", "--for=condition=complete", "job/real-job", "--timeout=5m"});
  EXPECT_EQ(done.exit_code, 0) << done.out << done.err;
  r = kflex({"delete", "real-vc", "--timeout", "5m"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace kflex::test
