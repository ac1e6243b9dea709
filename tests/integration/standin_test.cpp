// SPDX-License-Identifier: Apache-2.0
// The stand-ins refuse what the real programs refuse: the agent's command lines are only proven
// right if a wrong flag fails here as it would on a real host.
#include <unistd.h>

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
  auto kine_pos = run({standin("kine"), "extra"}, {"KFLEX_STANDIN_KINE_VERSION=v0.16.0"});
  EXPECT_EQ(kine_pos.exit_code, 1);
  EXPECT_NE(kine_pos.err.find("kine does not accept positional arguments, only flags"), std::string::npos) << kine_pos.err;
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

// The Kine stand-in is one release at a time, as kflex meets them on real hosts: v0.11.4 (what
// KubeFlex pins, the default) reads no KINE_* variable, has no --table-name and refuses
// postgresql://; without --endpoint it quietly runs on SQLite in ./db/state.db.
TEST(StandIns, KineBehavesAsTheReleaseItClaims) {
  TempDir dir;
  auto version = run({standin("kine"), "--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.out.find("kine version v0.11.4"), std::string::npos) << version.out;
  auto table = run({standin("kine"), "--table-name", "kine"});
  EXPECT_EQ(table.exit_code, 1);
  EXPECT_NE(table.out.find("Incorrect Usage. flag provided but not defined: -table-name"), std::string::npos) << table.out;
  auto scheme = run({standin("kine"), "--endpoint", "postgresql://u@127.0.0.1:1/db", "--metrics-bind-address", "0"});
  EXPECT_EQ(scheme.exit_code, 1);
  EXPECT_NE(scheme.err.find("building kine: storage backend is not defined"), std::string::npos) << scheme.err;
  // KINE_ENDPOINT is ignored: SQLite in the working directory, and it says it is available.
  std::string sock = (dir.path() / "kine.sock").string();
  auto quiet = run({"/bin/sh", "-c", "cd '" + dir.path().string() + "' && exec " + standin("kine") +
                                         " --listen-address=unix://" + sock + " --metrics-bind-address=0"},
                   {"KINE_ENDPOINT=postgres://u@127.0.0.1:1/db"}, "", std::chrono::seconds(2));
  EXPECT_TRUE(quiet.timed_out) << quiet.err;
  EXPECT_NE(quiet.err.find("Kine available at unix://" + sock), std::string::npos) << quiet.err;
  EXPECT_TRUE(fs::exists(dir.path() / "db" / "state.db"));

  // From v0.14.1 every flag has its KINE_* variable; from v0.13.1 postgresql:// is PostgreSQL.
  auto env = run({standin("kine"), "--metrics-bind-address", "0"},
                 {"KFLEX_STANDIN_KINE_VERSION=v0.14.1", "KINE_ENDPOINT=nats://127.0.0.1:1"});
  EXPECT_EQ(env.exit_code, 1);
  EXPECT_NE(env.err.find("nats://127.0.0.1:1"), std::string::npos) << env.err;
  auto pg = run({standin("kine"), "--endpoint", "postgresql://u@127.0.0.1:1/db", "--metrics-bind-address", "0"},
                {"KFLEX_STANDIN_KINE_VERSION=v0.13.1"});
  EXPECT_EQ(pg.exit_code, 1);
  EXPECT_EQ(pg.err.find("storage backend is not defined"), std::string::npos) << pg.err;
  EXPECT_NE(pg.err.find("127.0.0.1"), std::string::npos) << pg.err;
  auto bad = run({standin("kine"), "--version"}, {"KFLEX_STANDIN_KINE_VERSION=latest"});
  EXPECT_EQ(bad.exit_code, 2);
}

// k3s looks up the host's IP at start: in a network namespace with no default route it exits,
// unless --node-ip names one.
TEST(StandIns, K3sNeedsADefaultRouteOrANodeIp) {
  if (::geteuid() != 0 || run({"unshare", "--net", "setpriv", "--reuid=65534", "true"}).exit_code != 0) {
    GTEST_SKIP() << "needs root, unshare(1) and setpriv(1) for a network namespace";
  }
  TempDir dir;
  // (As nobody, so that it links $HOME/.kube/k3s.yaml, not the host's /etc/rancher/k3s/k3s.yaml.)
  fs::permissions(dir.path(), fs::perms::all);
  std::vector<std::string> argv = {"unshare", "--net", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                   standin("k3s"), "server", "--config",
                                   (dir.path() / "none.yaml").string(), "--data-dir", (dir.path() / "k3s").string(),
                                   "--write-kubeconfig", (dir.path() / "kc.yaml").string(), "--disable-agent"};
  auto r = run(argv, {"HOME=" + dir.path().string()}, "", std::chrono::seconds(10));
  EXPECT_EQ(r.exit_code, 1);
  // (As k3s's logrus writes it: level=fatal msg="no default routes found in \"/proc/net/route\" ...".)
  EXPECT_NE(r.err.find("no default routes found in"), std::string::npos) << r.err;
  argv.insert(argv.end(), {"--node-ip", "127.0.0.1"});
  auto with_ip = run(argv, {"HOME=" + dir.path().string(), "KFLEX_STANDIN_STARTUP_MS=0"}, "", std::chrono::seconds(3));
  EXPECT_TRUE(with_ip.timed_out) << with_ip.err;  // it runs (until the deadline ends it)
  EXPECT_NE(with_ip.err.find("k3s is up and running"), std::string::npos) << with_ip.err;
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
