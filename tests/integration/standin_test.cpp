// SPDX-License-Identifier: Apache-2.0
// The stand-ins refuse what the real programs refuse: the agent's command lines are only proven
// right if a wrong flag fails here as it would on a real host.
#include <gtest/gtest.h>

#include "shared/common/util.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

namespace fs = std::filesystem;

std::string standin(const char* name) { return (binDir() / "standins" / name).string(); }

TEST(StandIns, RefuseUnknownFlagsAndPositionalArgumentsAsTheRealProgramsDo) {
  auto k3s = run({standin("k3s"), "server", "--no-such-flag"});
  EXPECT_EQ(k3s.exit_code, 1);
  EXPECT_NE(k3s.err.find("flag provided but not defined: -no-such-flag"), std::string::npos) << k3s.err;
  auto k3s_cmd = run({standin("k3s"), "serve"});
  EXPECT_NE(k3s_cmd.exit_code, 0);
  auto kine = run({standin("kine"), "--listen", "127.0.0.1:0"});
  EXPECT_EQ(kine.exit_code, 1);
  EXPECT_NE(kine.err.find("flag provided but not defined: -listen"), std::string::npos) << kine.err;
  auto kine_pos = run({standin("kine"), "extra"});
  EXPECT_EQ(kine_pos.exit_code, 1);
  for (const char* p : {"kube-apiserver", "kube-controller-manager"}) {
    auto r = run({standin(p), "--secure-port=6443", "--insecure-port=8080"});
    EXPECT_EQ(r.exit_code, 1) << p;
    EXPECT_NE(r.err.find("Error: unknown flag: --insecure-port"), std::string::npos) << p << ": " << r.err;
  }
}

TEST(StandIns, CheckTheirRequiredFlagsValuesAndFiles) {
  TempDir dir;
  // kube-apiserver without the service-account flags or storage, as v1.29 answers.
  auto sa = run({standin("kube-apiserver"), "--etcd-servers=http://127.0.0.1:2379"});
  EXPECT_EQ(sa.exit_code, 1);
  EXPECT_NE(sa.err.find("service-account-issuer is a required flag"), std::string::npos) << sa.err;
  auto etcd = run({standin("kube-apiserver"), "--service-account-issuer=https://kubernetes.default.svc",
                   "--service-account-signing-key-file=/nonexistent/sa.key"});
  EXPECT_EQ(etcd.exit_code, 1);
  EXPECT_NE(etcd.err.find("--etcd-servers must be specified"), std::string::npos) << etcd.err;
  auto file = run({standin("kube-apiserver"), "--etcd-servers=http://127.0.0.1:2379",
                   "--service-account-issuer=https://kubernetes.default.svc",
                   "--service-account-signing-key-file=" + (dir.path() / "missing.key").string()});
  EXPECT_EQ(file.exit_code, 1);
  EXPECT_NE(file.err.find("no such file or directory"), std::string::npos) << file.err;
  // kube-controller-manager: an unknown controller.
  auto ctl = run({standin("kube-controller-manager"), "--controllers=namespace,no-such-controller"});
  EXPECT_EQ(ctl.exit_code, 1);
  EXPECT_NE(ctl.err.find("\"no-such-controller\" is not in the list of known controllers"), std::string::npos) << ctl.err;
  // k3s: a --disable item it does not have, a mode that is not octal, --cluster-init with SQL.
  auto disable = run({standin("k3s"), "server", "--data-dir", (dir.path() / "k3s").string(), "--disable=traefik,flannel"});
  EXPECT_EQ(disable.exit_code, 1);
  EXPECT_NE(disable.err.find("invalid value provided for --disable flag: flannel"), std::string::npos) << disable.err;
  auto mode = run({standin("k3s"), "server", "--data-dir", (dir.path() / "k3s").string(), "--write-kubeconfig-mode", "rw"});
  EXPECT_EQ(mode.exit_code, 1);
  auto init = run({standin("k3s"), "server", "--data-dir", (dir.path() / "k3s").string(), "--cluster-init",
                   "--datastore-endpoint", "postgres://u@h/db"});
  EXPECT_EQ(init.exit_code, 1);
  EXPECT_NE(init.err.find("--cluster-init cannot be used with --datastore-endpoint"), std::string::npos) << init.err;
  // kine: a storage it does not know.
  auto store = run({standin("kine"), "--endpoint", "mysql://u@tcp(h:3306)/db", "--listen-address", "127.0.0.1:0",
                    "--metrics-bind-address", "0"});
  EXPECT_EQ(store.exit_code, 1);
}

TEST(StandIns, KineDiesWhenItsMetricsPortIsTakenAsTheRealOneDoes) {
  TempDir dir;
  // Its default metrics address is :8080; two with the same explicit one collide.
  Process holder({standin("kine"), "--endpoint", "sqlite://" + (dir.path() / "b.db").string(), "--listen-address",
                  "127.0.0.1:0", "--metrics-bind-address", "127.0.0.1:18080"},
                 dir.path() / "holder.log");
  ASSERT_TRUE(waitFor([&] { return holder.log().find("Kine available at") != std::string::npos || !holder.running(); },
                      std::chrono::seconds(10), "second kine"));
  if (!holder.running()) {
    GTEST_SKIP() << "127.0.0.1:18080 is taken on this host";
  }
  auto third = run({standin("kine"), "--endpoint", "sqlite://" + (dir.path() / "c.db").string(), "--listen-address",
                    "127.0.0.1:0", "--metrics-bind-address", "127.0.0.1:18080"},
                   {}, "", std::chrono::seconds(10));
  EXPECT_EQ(third.exit_code, 1);
  EXPECT_NE(third.err.find("error creating the metrics listener"), std::string::npos) << third.err;
}

}  // namespace
}  // namespace kflex::test
