// SPDX-License-Identifier: Apache-2.0
// Control planes for real: a hub, an agent that runs the k3s stand-in (tests/standins) as it
// would run k3s, and kubectl against the result.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/host/netns.hpp"
#include "agent/host/supervisor.hpp"
#include "shared/common/util.hpp"
#include "shared/store/postgres.hpp"
#include "shared/tls/pki.hpp"
#include "tests/integration/agent_cleanup.hpp"
#include "tests/integration/control_planes.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

TEST_F(ControlPlanes, K3sBecomesReadyRestartsWhatDiesAndSurvivesAnAgentRestart) {
  startAgent();
  ASSERT_TRUE(waitFor([&] { return kubectl(hub_->kubeconfig(), {"get", "agent", "edge-1"}).exit_code == 0; }, 20s,
                      "edge-1 enrolled"));
  ASSERT_EQ(kflex({"create", "--no-wait", "cp1", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_TRUE(waitFor([&] { return ready("cp1") == "True/Available"; }, 30s, "cp1 Ready"))
      << ready("cp1") << "\n" << field("cp1", ".status") << "\n" << agent_->log() << hub_->log();
  EXPECT_EQ(field("cp1", ".status.conditions[?(@.type=='Synced')].status"), "True");
  std::string endpoint = field("cp1", ".status.endpoint");
  EXPECT_TRUE(std::regex_match(endpoint, std::regex("https://127\\.0\\.0\\.1:[0-9]+"))) << endpoint;
  EXPECT_EQ(field("cp1", ".status.components[0].name"), "k3s");
  EXPECT_EQ(field("cp1", ".status.components[0].state"), "Running");

  // kubectl reaches it through the advertised endpoint with the admin credentials k3s wrote.
  fs::path kc = reachableKubeconfig("cp1");
  auto readyz = kubectl(kc, {"get", "--raw", "/readyz"});
  EXPECT_EQ(readyz.exit_code, 0) << readyz.err;
  EXPECT_EQ(readyz.out, "ok");
  // Its serving certificate also names it as the hub's tunnel reaches it (the end-to-end TLS
  // through the tunnel verifies against that name: docs/dev/tunnel.md).
  auto tunnel_name = kubectl(kc, {"get", "--raw", "/readyz", "--tls-server-name", "cp1.controlplanes.kflex"});
  EXPECT_EQ(tunnel_name.exit_code, 0) << tunnel_name.err;
  EXPECT_NE(kubectl(kc, {"get", "--raw", "/readyz", "--tls-server-name", "cp2.controlplanes.kflex"}).exit_code, 0);

  // The hub hands out its kubeconfig as KubeFlex does: secret k3s-config in cp1-system.
  ASSERT_TRUE(waitFor([&] { return field("cp1", ".status.secretRef.name") == "k3s-config"; }, 10s, "secretRef"));
  EXPECT_EQ(field("cp1", ".status.secretRef.namespace"), "cp1-system");
  EXPECT_EQ(field("cp1", ".status.secretRef.key"), "config");
  EXPECT_EQ(field("cp1", ".status.secretRef.inClusterKey"), "config-incluster");
  // Key config reaches it through the hub (docs/dev/tunnel.md), config-direct at its endpoint.
  auto secret = kubectl(hub_->kubeconfig(), {"get", "secret", "-n", "cp1-system", "k3s-config", "-o", "jsonpath={.data.config-direct}"});
  ASSERT_EQ(secret.exit_code, 0) << secret.err;
  auto decoded = base64Decode(secret.out);
  ASSERT_TRUE(decoded);
  EXPECT_NE(decoded->find(endpoint), std::string::npos) << *decoded;
  auto routed = base64Decode(
      kubectl(hub_->kubeconfig(), {"get", "secret", "-n", "cp1-system", "k3s-config", "-o", "jsonpath={.data.config}"}).out);
  ASSERT_TRUE(routed);
  EXPECT_NE(routed->find("server: https://cp1.controlplanes.kflex:"), std::string::npos) << *routed;
  EXPECT_NE(routed->find("proxy-url: https://tunnel:"), std::string::npos) << *routed;
  auto listed = kubectl(hub_->kubeconfig(), {"get", "secrets", "-n", "cp1-system"});
  EXPECT_NE(listed.out.find("k3s-config"), std::string::npos) << listed.out << listed.err;
  EXPECT_NE(kubectl(hub_->kubeconfig(), {"get", "ns"}).out.find("cp1-system"), std::string::npos);
  auto write = kubectl(hub_->kubeconfig(), {"delete", "secret", "-n", "cp1-system", "k3s-config"});
  EXPECT_NE(write.exit_code, 0) << "read-only";
  // Sealed at rest: the database never holds the kubeconfig in the clear.
  for (const char* f : {"hub.db", "hub.db-wal"}) {
    auto bytes = readFile(dir_.path() / "hub" / f);
    if (bytes) {
      EXPECT_EQ(bytes->find("client-key-data"), std::string::npos) << f;
    }
  }
  // kflex ctx merges it as context cp1 (cluster cp1-cluster, user cp1-admin) and switches; kflex
  // ctx switches back to the hub.
  fs::path user_kc = dir_.path() / "user.kubeconfig";
  ASSERT_EQ(run({(binDir() / "kflex").string(), "--kubeconfig", user_kc.string(), "init", "--hub-kubeconfig",
                 hub_->kubeconfig().string()}).exit_code, 0);
  auto ctx = run({(binDir() / "kflex").string(), "--kubeconfig", user_kc.string(), "ctx", "cp1"});
  ASSERT_EQ(ctx.exit_code, 0) << ctx.err;
  EXPECT_EQ(kubectl(user_kc, {"config", "current-context"}).out, "cp1\n");
  // Through the hub's tunnel (docs/dev/tunnel.md): the context names the control plane by its
  // tunnel name and the hub as its proxy, with a token for cp1.
  auto through = kubectl(user_kc, {"get", "--raw", "/readyz"});
  EXPECT_EQ(through.out, "ok") << through.err << "\n" << hub_->log();
  EXPECT_EQ(kubectl(user_kc, {"config", "view", "-o", "jsonpath={.clusters[?(@.name=='cp1-cluster')].cluster.server}"}).out,
            "https://cp1.controlplanes.kflex:" + endpoint.substr(endpoint.rfind(':') + 1));
  std::string proxy =
      kubectl(user_kc, {"config", "view", "--raw", "-o", "jsonpath={.clusters[?(@.name=='cp1-cluster')].cluster.proxy-url}"}).out;
  EXPECT_TRUE(std::regex_match(proxy, std::regex("https://tunnel:[a-z0-9]{6}\\.[a-z0-9]{16}@127\\.0\\.0\\.1:[0-9]+")))
      << proxy;
  EXPECT_NE(hub_->log().find("msg=tunnel controlPlane=cp1 agent=edge-1"), std::string::npos) << hub_->log();
  EXPECT_EQ(hub_->log().find(proxy.substr(proxy.find(':', 6) + 1, 23)), std::string::npos) << "the token is never logged";
  EXPECT_EQ(kubectl(user_kc, {"config", "view", "-o", "jsonpath={.contexts[?(@.name=='cp1')].context.cluster}"}).out,
            "cp1-cluster");
  EXPECT_EQ(run({(binDir() / "kflex").string(), "--kubeconfig", user_kc.string(), "ctx", "cp1"}).exit_code, 0)
      << "idempotent";
  EXPECT_EQ(
      kubectl(user_kc, {"config", "view", "--raw", "-o", "jsonpath={.clusters[?(@.name=='cp1-cluster')].cluster.proxy-url}"}).out,
      proxy) << "the token is reused";
  auto direct = run({(binDir() / "kflex").string(), "--kubeconfig", user_kc.string(), "ctx", "cp1", "--direct"});
  ASSERT_EQ(direct.exit_code, 0) << direct.err;
  EXPECT_EQ(kubectl(user_kc, {"config", "view", "-o", "jsonpath={.clusters[?(@.name=='cp1-cluster')].cluster.server}"}).out,
            endpoint);
  EXPECT_EQ(kubectl(user_kc, {"get", "--raw", "/readyz"}).out, "ok");
  ASSERT_EQ(run({(binDir() / "kflex").string(), "--kubeconfig", user_kc.string(), "ctx"}).exit_code, 0);
  EXPECT_EQ(kubectl(user_kc, {"config", "current-context"}).out, "kflex-hub\n");
  // Its files: a private directory, the token as a file (never on the command line), the log.
  EXPECT_EQ(fs::status(cpDir("cp1")).permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_EQ(fs::status(cpDir("cp1") / "token").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  pid_t pid = k3sPid("cp1");
  ASSERT_GT(pid, 0);
  auto cmdline = readFile("/proc/" + std::to_string(pid) + "/cmdline");
  ASSERT_TRUE(cmdline);
  EXPECT_NE(cmdline->find("--token-file"), std::string::npos);
  EXPECT_NE(cmdline->find("--disable-agent"), std::string::npos);
  auto logs = run({(binDir() / "kflex-agent").string(), "logs", "cp1", "--config", "/dev/null", "--data-dir",
                   (dir_.path() / "edge-1").string()});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_NE(logs.out.find("Wrote kubeconfig"), std::string::npos) << logs.out;
  auto no_such = run({(binDir() / "kflex-agent").string(), "logs", "cp1", "kine", "--config", "/dev/null",
                      "--data-dir", (dir_.path() / "edge-1").string()});
  EXPECT_NE(no_such.exit_code, 0);
  EXPECT_NE(no_such.err.find("it has: k3s"), std::string::npos) << no_such.err;

  // A killed k3s is restarted, and the hub sees it.
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  EXPECT_TRUE(waitFor([&] { return field("cp1", ".status.components[0].restarts") == "1"; }, 20s, "restart counted"))
      << agent_->log();
  EXPECT_NE(field("cp1", ".status.components[0].lastExit").find("signal 9"), std::string::npos);
  EXPECT_TRUE(waitFor([&] { return ready("cp1") == "True/Available" && k3sPid("cp1") > 0 && k3sPid("cp1") != pid; },
                      30s, "cp1 Ready again"));
  pid = k3sPid("cp1");

  // An agent restart (an upgrade, say) adopts k3s instead of restarting it.
  agent_->signal(SIGTERM);
  ASSERT_EQ(agent_->wait(10s), 0);
  EXPECT_EQ(k3sPid("cp1"), pid) << "the control plane outlives the agent";
  startAgent({}, "edge-1-again.log");
  EXPECT_TRUE(waitFor([&] { return agent_->log().find("adopted a running process") != std::string::npos; }, 20s,
                      "adopted"))
      << agent_->log();
  EXPECT_TRUE(waitFor([&] { return ready("cp1") == "True/Available"; }, 20s, "still Ready"));
  EXPECT_EQ(k3sPid("cp1"), pid) << agent_->log();
  EXPECT_EQ(kubectl(reachableKubeconfig("cp1"), {"get", "--raw", "/readyz"}).out, "ok");

  // Deleting it waits (finalizer) until the agent has stopped k3s and removed its data.
  EXPECT_EQ(kubectl(hub_->kubeconfig(), {"get", "cp", "cp1", "-o", "jsonpath={.metadata.finalizers}"}).out,
            "[\"kflex.kubestellar.org/finalizer\"]");
  auto deleted = kflex({"delete", "cp1"});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_FALSE(fs::exists(cpDir("cp1"))) << "gone from the hub only once gone from the host";
  EXPECT_FALSE(running(pid)) << "k3s is stopped";
  EXPECT_NE(kubectl(hub_->kubeconfig(), {"get", "cp", "cp1"}).exit_code, 0);
  EXPECT_NE(kubectl(hub_->kubeconfig(), {"get", "secret", "-n", "cp1-system", "k3s-config"}).exit_code, 0);

  // An agent that is away holds a deletion until it is back, or until `kflex delete --force`;
  // the agent removes what is left when it returns.
  ASSERT_EQ(kflex({"create", "--no-wait", "cp2", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_TRUE(waitFor([&] { return ready("cp2") == "True/Available"; }, 30s, "cp2 Ready")) << agent_->log();
  pid_t pid2 = k3sPid("cp2");
  agent_->signal(SIGTERM);
  ASSERT_EQ(agent_->wait(10s), 0);
  auto pending = kflex({"delete", "cp2", "--no-wait"});
  EXPECT_NE(pending.out.find("being deleted"), std::string::npos) << pending.out;
  std::this_thread::sleep_for(1s);
  EXPECT_FALSE(field("cp2", ".metadata.deletionTimestamp").empty()) << "still there: its agent has not confirmed";
  auto forced = kflex({"delete", "cp2", "--force"});
  EXPECT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_NE(forced.err.find("may remain on that host"), std::string::npos) << forced.err;
  EXPECT_NE(kubectl(hub_->kubeconfig(), {"get", "cp", "cp2"}).exit_code, 0);
  EXPECT_TRUE(running(pid2));
  startAgent({}, "edge-1-third.log");
  EXPECT_TRUE(waitFor([&] { return !fs::exists(cpDir("cp2")) && !running(pid2); }, 30s, "leftovers removed"))
      << agent_->log();
}

// README's agent command gives --data-dir as a relative path; k3s runs in DIR/cp/NAME and is
// handed paths inside DIR: they must be absolute, or k3s cannot read its token file.
TEST_F(ControlPlanes, ARelativeDataDirectoryStillRunsK3s) {
  data_dir_arg_ = fs::relative(dir_.path() / "edge-1", fs::current_path()).string();
  ASSERT_EQ(data_dir_arg_.front(), '.') << "not a relative path: " << data_dir_arg_;
  startAgent();
  ASSERT_TRUE(waitFor([&] { return kubectl(hub_->kubeconfig(), {"get", "agent", "edge-1"}).exit_code == 0; }, 20s,
                      "edge-1 enrolled"));
  ASSERT_EQ(kflex({"create", "--no-wait", "cp1", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  EXPECT_TRUE(waitFor([&] { return ready("cp1") == "True/Available"; }, 30s, "cp1 Ready"))
      << ready("cp1") << "\n" << field("cp1", ".status") << "\n" << agent_->log();
  auto cmdline = readFile("/proc/" + std::to_string(k3sPid("cp1")) + "/cmdline");
  ASSERT_TRUE(cmdline);
  EXPECT_NE(cmdline.value().find(std::string("--data-dir") + '\0' + (dir_.path() / "edge-1" / "cp" / "cp1" / "k3s").string()),
            std::string::npos)
      << cmdline.value();
}

TEST_F(ControlPlanes, TwoK3sSideBySideEachInItsOwnNetworkNamespace) {
  if (!agent::runtime::NetNamespace::available()) {
    GTEST_SKIP() << "network namespaces need root (CAP_SYS_ADMIN)";
  }
  startAgent();
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-a", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-b", "-t", "k3s", "-b", "dedicated", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_TRUE(waitFor([&] { return ready("cp-a") == "True/Available" && ready("cp-b") == "True/Available"; }, 40s,
                      "both Ready"))
      << ready("cp-a") << " " << ready("cp-b") << "\n" << agent_->log();
  EXPECT_NE(field("cp-a", ".status.endpoint"), field("cp-b", ".status.endpoint"));
  // Both hold the same ports (6443, its API server on 6444, 10257, ...), each in its own namespace.
  pid_t a = k3sPid("cp-a");
  pid_t b = k3sPid("cp-b");
  ASSERT_GT(a, 0);
  ASSERT_GT(b, 0);
  EXPECT_NE(fs::read_symlink("/proc/" + std::to_string(a) + "/ns/net"),
            fs::read_symlink("/proc/" + std::to_string(b) + "/ns/net"));
  auto cmdline = readFile("/proc/" + std::to_string(b) + "/cmdline");
  EXPECT_NE(cmdline->find("--cluster-init"), std::string::npos) << "backend dedicated: its own embedded etcd";
  for (const char* cp : {"cp-a", "cp-b"}) {
    auto r = kubectl(reachableKubeconfig(cp), {"get", "--raw", "/readyz"});
    EXPECT_EQ(r.out, "ok") << cp << ": " << r.err;
  }
}

TEST_F(ControlPlanes, OnlyOneK3sRunsTheHostsNodeAgent) {
  if (!agent::runtime::NetNamespace::available()) {
    GTEST_SKIP() << "two k3s on one host need network namespaces, which need root (CAP_SYS_ADMIN)";
  }
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "agent.yaml", "k3s_node_agent: true\n", 0644));
  std::vector<std::string> argv = {"--config", (dir_.path() / "agent.yaml").string()};
  startAgent(argv);
  ASSERT_EQ(kflex({"create", "cp-a", "-t", "k3s", "--agent", "edge-1", "--timeout", "40s"}).exit_code, 0)
      << agent_->log();
  ASSERT_EQ(kflex({"create", "cp-b", "-t", "k3s", "--agent", "edge-1", "--timeout", "40s"}).exit_code, 0)
      << agent_->log();
  auto cmdline = [&](const std::string& cp) {
    auto text = readFile("/proc/" + std::to_string(k3sPid(cp)) + "/cmdline");
    return text ? text.value() : std::string();
  };
  EXPECT_EQ(cmdline("cp-a").find("--disable-agent"), std::string::npos) << "the first keeps the kubelet";
  EXPECT_NE(cmdline("cp-b").find("--disable-agent"), std::string::npos) << "the others run without";
  EXPECT_NE(field("cp-a", ".status.conditions[?(@.type=='Synced')].message").find("node agent"), std::string::npos);
  EXPECT_EQ(field("cp-b", ".status.conditions[?(@.type=='Synced')].message").find("node agent"), std::string::npos);
  // An agent restart keeps both as they are (adopted, not restarted).
  pid_t a = k3sPid("cp-a");
  pid_t b = k3sPid("cp-b");
  agent_->signal(SIGTERM);
  ASSERT_EQ(agent_->wait(10s), 0);
  startAgent(argv, "edge-1-again.log");
  ASSERT_TRUE(waitFor([&] { return ready("cp-a") == "True/Available" && ready("cp-b") == "True/Available"; }, 30s,
                      "Ready after restart"));
  EXPECT_EQ(k3sPid("cp-a"), a);
  EXPECT_EQ(k3sPid("cp-b"), b);
  // Its owner deleted, the kubelet goes to the next k3s control plane made here.
  ASSERT_EQ(kflex({"delete", "cp-a", "--timeout", "30s"}).exit_code, 0);
  ASSERT_EQ(kflex({"create", "cp-c", "-t", "k3s", "--agent", "edge-1", "--timeout", "40s"}).exit_code, 0)
      << agent_->log();
  EXPECT_EQ(cmdline("cp-c").find("--disable-agent"), std::string::npos);
  EXPECT_NE(cmdline("cp-b").find("--disable-agent"), std::string::npos);
  EXPECT_EQ(k3sPid("cp-b"), b);
}

// On the host's network each k3s has its own ports: the HTTPS port, its embedded API server one
// above it on 127.0.0.1 (k3s's rule: --https-listen-port + 1), and its controller manager's and
// scheduler's, which k3s otherwise fixes at 10257 and 10259 (where a second one collided).
TEST_F(ControlPlanes, TwoK3sOnTheHostNetworkEachWithItsOwnPortsAndAMissingProgramIsACondition) {
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "agent.yaml", "isolate_control_planes: false\n", 0644));
  std::vector<std::string> argv = {"--config", (dir_.path() / "agent.yaml").string()};
  startAgent(argv);
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-a", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-b", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_TRUE(waitFor([&] { return ready("cp-a") == "True/Available" && ready("cp-b") == "True/Available"; }, 40s,
                      "both Ready"))
      << field("cp-a", ".status") << "\n" << field("cp-b", ".status") << "\n" << agent_->log()
      << slurp(cpDir("cp-b") / "logs" / "k3s.log");
  for (const char* cp : {"cp-a", "cp-b"}) {
    std::string endpoint = field(cp, ".status.endpoint");
    int port = std::atoi(endpoint.substr(endpoint.rfind(':') + 1).c_str());
    auto log = slurp(cpDir(cp) / "logs" / "k3s.log");
    EXPECT_NE(log.find("--secure-port=" + std::to_string(port + 1)), std::string::npos) << log;
    auto cmdline = slurp("/proc/" + std::to_string(k3sPid(cp)) + "/cmdline");
    EXPECT_NE(cmdline.find("--kube-controller-manager-arg=secure-port="), std::string::npos) << cmdline;
    EXPECT_NE(cmdline.find(std::string("--node-ip") + '\0' + "127.0.0.1"), std::string::npos) << cmdline;
    EXPECT_NE(field(cp, ".status.conditions[?(@.type=='Synced')].message").find("on the host's network"),
              std::string::npos);
  }

  // A program that is not installed: a condition that says what to do, and the agent carries on.
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "agent.yaml",
                              "isolate_control_planes: false\nprograms:\n  k3s: " + (dir_.path() / "nowhere" / "k3s").string() + "\n",
                              0644));
  agent_->signal(SIGTERM);
  ASSERT_EQ(agent_->wait(10s), 0);
  startAgent(argv, "edge-1-again.log");
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-c", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  EXPECT_TRUE(waitFor([&] { return field("cp-c", ".status.conditions[?(@.type=='Synced')].reason") == "ReconcileError"; },
                      20s, "cp-c reported"))
      << agent_->log();
  std::string msg = field("cp-c", ".status.conditions[?(@.type=='Synced')].message");
  EXPECT_NE(msg.find("not found"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--bin-dir"), std::string::npos) << msg;
  EXPECT_TRUE(agent_->running());
}

// On the host's network what k3s cannot move allows one per host: embedded etcd's ports (backend
// dedicated) and the node agent's (kubelet 10250 and 10248, flannel 8472/udp, containerd's
// socket). When another program holds them the control plane is refused, saying so.
TEST_F(ControlPlanes, FixedPortsOnTheHostNetworkHeldByOthersAreRefusedWithAMessage) {
  std::vector<int> held;
  auto hold = [&](uint16_t port) {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s, 4) != 0) {
      if (s >= 0) {
        ::close(s);
      }
      return false;
    }
    held.push_back(s);
    return true;
  };
  if (!hold(2379) || !hold(10248)) {
    for (int s : held) {
      ::close(s);
    }
    GTEST_SKIP() << "127.0.0.1:2379 or 127.0.0.1:10248 is in use on this host already";
  }
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "agent.yaml", "isolate_control_planes: false\nk3s_node_agent: true\n", 0644));
  startAgent({"--config", (dir_.path() / "agent.yaml").string()});
  auto synced = [&](const std::string& cp) {
    return field(cp, ".status.conditions[?(@.type=='Synced')].reason") + ": " +
           field(cp, ".status.conditions[?(@.type=='Synced')].message");
  };
  // (The first k3s control plane made takes the node agent.)
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-node", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  EXPECT_TRUE(waitFor([&] { return synced("cp-node").rfind("PortInUse: the host's node agent (kubelet) needs port 10250", 0) == 0; },
                      20s, "cp-node refused"))
      << synced("cp-node");
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-etcd", "-t", "k3s", "-b", "dedicated", "--agent", "edge-1"}).exit_code, 0);
  EXPECT_TRUE(waitFor([&] { return synced("cp-etcd").rfind("PortInUse: backend dedicated runs k3s's embedded etcd", 0) == 0; },
                      20s, "cp-etcd refused"))
      << synced("cp-etcd");
  EXPECT_EQ(k3sPid("cp-node"), 0);
  EXPECT_EQ(k3sPid("cp-etcd"), 0);
  for (int s : held) {
    ::close(s);
  }
  // Once the ports are free again, the next attempt starts them.
  EXPECT_TRUE(waitFor([&] { return ready("cp-node") == "True/Available"; }, 40s, "cp-node Ready")) << synced("cp-node");
}

// Before it launches a program the agent reads its release: one outside the supported range is
// not started, and the control plane says which release it found and which it needs.
TEST_F(ControlPlanes, AnUnsupportedReleaseIsRefusedNamingTheRangeNeeded) {
  fs::create_directories(dir_.path() / "old");
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "old" / "k3s",
                              "#!/bin/sh\necho 'k3s version v1.27.4+k3s1 (36645e73)'\necho 'go version go1.20.6'\n", 0755));
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "agent.yaml", "programs:\n  k3s: " + (dir_.path() / "old" / "k3s").string() + "\n",
                              0644));
  startAgent({"--config", (dir_.path() / "agent.yaml").string()});
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-old", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  EXPECT_TRUE(waitFor([&] {
    return field("cp-old", ".status.conditions[?(@.type=='Synced')].reason") == "UnsupportedVersion";
  }, 20s, "reported")) << field("cp-old", ".status") << agent_->log();
  std::string msg = field("cp-old", ".status.conditions[?(@.type=='Synced')].message");
  EXPECT_NE(msg.find("v1.27.4+k3s1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("v1.28 to v1.30"), std::string::npos) << msg;
  EXPECT_EQ(k3sPid("cp-old"), 0) << "never started";
}

// As root k3s replaces /etc/rancher/k3s/k3s.yaml with a link to its own kubeconfig and, given no
// --config, reads /etc/rancher/k3s/config.yaml: on a host that runs k3s that is the host
// cluster's admin kubeconfig and config. Each control plane has its own /etc/rancher and config.
TEST_F(ControlPlanes, K3sLeavesTheHostsRancherFilesAlone) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "only k3s as root writes /etc/rancher (without root it uses $HOME, its own directory)";
  }
  const fs::path etc = "/etc/rancher/k3s";
  for (const char* f : {"k3s.yaml", "config.yaml", "config.yaml.d"}) {
    if (fs::exists(etc / f)) {  // (a dangling link an earlier test's k3s left is not a host's file)
      GTEST_SKIP() << (etc / f) << " exists on this host: this test never touches a host's k3s files";
    }
  }
  // The host's files for the length of the test, then gone with what was made for them (but
  // /etc/rancher, which the agent makes too: other control planes mount over it).
  struct HostFiles {
    bool made_k3s = false;
    HostFiles(const fs::path& etc) {
      fs::create_directories(etc.parent_path());
      made_k3s = fs::create_directory(etc);
    }
    ~HostFiles() {
      std::error_code ec;
      fs::remove("/etc/rancher/k3s/k3s.yaml", ec);
      fs::remove("/etc/rancher/k3s/config.yaml", ec);
      if (made_k3s) {
        fs::remove("/etc/rancher/k3s", ec);
      }
    }
  } files(etc);
  ASSERT_TRUE(writeFileAtomic(etc / "k3s.yaml", "# the host cluster's admin kubeconfig\n", 0600));
  // A host config that would change a control plane that read it (as server: would join it to
  // the host's cluster).
  ASSERT_TRUE(writeFileAtomic(etc / "config.yaml", "cluster-init: true\n", 0600));
  startAgent();
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-r", "-t", "k3s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_TRUE(waitFor([&] { return ready("cp-r") == "True/Available"; }, 40s, "cp-r Ready"))
      << field("cp-r", ".status") << "\n" << slurp(cpDir("cp-r") / "logs" / "k3s.log");
  EXPECT_FALSE(fs::is_symlink(etc / "k3s.yaml"));
  EXPECT_EQ(slurp(etc / "k3s.yaml"), "# the host cluster's admin kubeconfig\n");
  // Its link went to its own /etc/rancher.
  fs::path own = cpDir("cp-r") / "etc-rancher" / "k3s" / "k3s.yaml";
  ASSERT_TRUE(fs::is_symlink(own)) << own;
  EXPECT_EQ(fs::read_symlink(own), cpDir("cp-r") / "kubeconfig.yaml");
  // (The host's config asked for embedded etcd, which the k3s stand-in keeps in server/db/etcd.)
  EXPECT_FALSE(fs::exists(cpDir("cp-r") / "k3s" / "server" / "db" / "etcd"));
  ASSERT_EQ(kflex({"delete", "cp-r", "--timeout", "30s"}).exit_code, 0);
}

TEST_F(ControlPlanes, K8sOnTheSharedPostgresBecomesReadyAndDropsItsDatabase) {
  PostgresServer pg;
  if (!pg.problem().empty()) {
    GTEST_SKIP() << pg.problem();
  }
  store::PostgresTarget admin{pg.dsn(), pg.password()};
  startAgent({"--postgres-dsn", pg.dsn(), "--postgres-password-file", pg.passwordFile().string()});
  // A PostCreateHook into the control plane itself (no cluster near this agent).
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "hook.yaml", R"(apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: PostCreateHook
metadata:
  name: marker
  annotations: {kflex.kubestellar.org/target: hosted}
spec:
  templates:
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: "{{.HookName}}"}
    data: {type: "{{.TYPE}}"}
)", 0644));
  auto hook = kubectl(hub_->kubeconfig(), {"apply", "-f", (dir_.path() / "hook.yaml").string()});
  ASSERT_EQ(hook.exit_code, 0) << hook.err;
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-k8s", "-t", "k8s", "--agent", "edge-1", "-p", "marker", "-e", "TYPE=k8s"})
                .exit_code,
            0);
  ASSERT_TRUE(waitFor([&] { return ready("cp-k8s") == "True/Available"; }, 60s, "cp-k8s Ready"))
      << field("cp-k8s", ".status") << "\n" << agent_->log() << "\nkine: "
      << slurp(cpDir("cp-k8s") / "logs" / "kine.log");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(field("cp-k8s", ".status.components[" + std::to_string(i) + "].state"), "Running");
  }
  EXPECT_EQ(field("cp-k8s", ".status.components[*].name"), "kine kube-apiserver kube-controller-manager");
  // A database of its own, named as KubeFlex names it, with Kine's table in it.
  auto exists = store::databaseExists(admin, "cp_k8s");
  ASSERT_TRUE(exists && *exists) << (exists ? "" : exists.error().message);
  EXPECT_TRUE(store::execute(store::withDatabase(admin, "cp_k8s"), "SELECT COUNT(*) FROM kine"));
  // Kine is told its database on the command line (every release reads --endpoint; only v0.14.1
  // and later read KINE_ENDPOINT) and its password in a file of its own: never on a command line,
  // in its environment or in a log.
  pid_t kine = agent::runtime::runningPid(cpDir("cp-k8s") / "run" / "kine.pid");
  ASSERT_GT(kine, 0);
  std::string kine_cmdline = slurp("/proc/" + std::to_string(kine) + "/cmdline");
  EXPECT_NE(kine_cmdline.find("--endpoint=postgres://postgres@127.0.0.1:"), std::string::npos) << kine_cmdline;
  EXPECT_NE(kine_cmdline.find("/cp_k8s?sslmode=disable"), std::string::npos) << kine_cmdline;
  EXPECT_EQ(kine_cmdline.find(pg.password()), std::string::npos);
  EXPECT_EQ(slurp("/proc/" + std::to_string(kine) + "/environ").find(pg.password()), std::string::npos);
  EXPECT_EQ(agent_->log().find(pg.password()), std::string::npos);
  struct stat pgpass {};
  ASSERT_EQ(::stat((cpDir("cp-k8s") / "pgpass").c_str(), &pgpass), 0);
  EXPECT_EQ(pgpass.st_mode & 0777, 0600u);
  auto kine_log = readFile(cpDir("cp-k8s") / "logs" / "kine.log");
  EXPECT_NE(kine_log->find("Database tables and indexes are up to date"), std::string::npos) << *kine_log;
  // Its kubeconfig as KubeFlex keeps a k8s control plane's, and kflex ctx to it.
  ASSERT_TRUE(waitFor([&] { return field("cp-k8s", ".status.secretRef.name") == "admin-kubeconfig"; }, 10s, "secretRef"));
  EXPECT_EQ(field("cp-k8s", ".status.secretRef.key"), "kubeconfig");
  EXPECT_EQ(field("cp-k8s", ".status.secretRef.inClusterKey"), "kubeconfig-incluster");
  fs::path user_kc = dir_.path() / "user.kubeconfig";
  ASSERT_EQ(run({(binDir() / "kflex").string(), "--kubeconfig", user_kc.string(), "init", "--hub-kubeconfig",
                 hub_->kubeconfig().string()}).exit_code, 0);
  auto ctx = run({(binDir() / "kflex").string(), "--kubeconfig", user_kc.string(), "ctx", "cp-k8s"});
  ASSERT_EQ(ctx.exit_code, 0) << ctx.err;
  EXPECT_EQ(kubectl(user_kc, {"get", "--raw", "/readyz"}).out, "ok");
  EXPECT_EQ(kubectl(user_kc, {"config", "view", "-o", "jsonpath={.contexts[?(@.name=='cp-k8s')].context.user}"}).out,
            "cp-k8s-admin");
  EXPECT_TRUE(waitFor([&] { return field("cp-k8s", ".status.postCreateHookCompleted") == "true"; }, 20s, "the hook"))
      << field("cp-k8s", ".status");
  EXPECT_EQ(kubectl(user_kc, {"get", "cm", "-n", "cp-k8s-system", "marker", "-o", "jsonpath={.data.type}"}).out, "k8s");

  // PostgreSQL away: the API server's storage check fails and the control plane is not Ready;
  // back: Ready again.
  pg.stop();
  EXPECT_TRUE(waitFor([&] { return ready("cp-k8s") == "False/Unavailable"; }, 30s, "not Ready without its database"))
      << field("cp-k8s", ".status");
  EXPECT_NE(field("cp-k8s", ".status.conditions[?(@.type=='Ready')].message").find("etcd"), std::string::npos);
  ASSERT_TRUE(pg.start());
  EXPECT_TRUE(waitFor([&] { return ready("cp-k8s") == "True/Available"; }, 30s, "Ready again"))
      << field("cp-k8s", ".status");

  // Deleting it drops the database and removes its data before it is gone from the hub.
  auto deleted = kflex({"delete", "cp-k8s"});
  ASSERT_EQ(deleted.exit_code, 0) << deleted.err << agent_->log();
  auto still = store::databaseExists(admin, "cp_k8s");
  EXPECT_TRUE(still && !*still) << "the database is dropped";
  EXPECT_FALSE(fs::exists(cpDir("cp-k8s")));
  EXPECT_FALSE(running(kine));
}

TEST_F(ControlPlanes, TwoK8sSideBySideOnOneSharedPostgres) {
  if (!agent::runtime::NetNamespace::available()) {
    GTEST_SKIP() << "network namespaces need root (CAP_SYS_ADMIN)";
  }
  PostgresServer pg;
  if (!pg.problem().empty()) {
    GTEST_SKIP() << pg.problem();
  }
  startAgent({"--postgres-dsn", pg.dsn(), "--postgres-password-file", pg.passwordFile().string()});
  ASSERT_EQ(kflex({"create", "--no-wait", "k8s-a", "-t", "k8s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_EQ(kflex({"create", "--no-wait", "k8s-b", "-t", "k8s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_TRUE(waitFor([&] { return ready("k8s-a") == "True/Available" && ready("k8s-b") == "True/Available"; }, 60s,
                      "both Ready"))
      << field("k8s-a", ".status") << "\n" << field("k8s-b", ".status") << "\n" << agent_->log();
  // Same ports (API server 6443, controller manager 10257) in each namespace, each Kine on a
  // socket of its own; separate databases; separate endpoints.
  store::PostgresTarget admin{pg.dsn(), pg.password()};
  EXPECT_TRUE(store::databaseExists(admin, "k8s_a").value());
  EXPECT_TRUE(store::databaseExists(admin, "k8s_b").value());
  EXPECT_NE(field("k8s-a", ".status.endpoint"), field("k8s-b", ".status.endpoint"));
  for (const char* cp : {"k8s-a", "k8s-b"}) {
    auto r = kubectl(reachableKubeconfigFromSecret(cp), {"get", "--raw", "/readyz"});
    EXPECT_EQ(r.out, "ok") << cp << ": " << r.err;
    // The name the hub's tunnel reaches it by is on its serving certificate (docs/dev/tunnel.md).
    auto tunnel_name = kubectl(reachableKubeconfigFromSecret(cp),
                               {"get", "--raw", "/readyz", "--tls-server-name", std::string(cp) + ".controlplanes.kflex"});
    EXPECT_EQ(tunnel_name.out, "ok") << cp << ": " << tunnel_name.err;
    // ... and the secret's own key reaches it through the hub.
    auto through = kubectl(reachableKubeconfigFromSecret(cp, true), {"get", "--raw", "/readyz"});
    EXPECT_EQ(through.out, "ok") << cp << ": " << through.err;
  }
}

// With sslmode=verify-full Kine must reach PostgreSQL by the name on its certificate: the
// isolated control plane's Kine once got the host rewritten to 127.0.0.1 (a relay into its
// namespace), and TLS host verification failed.
TEST_F(ControlPlanes, K8sReachesAVerifyFullPostgresByTheNameOnItsCertificate) {
  if (!agent::runtime::NetNamespace::available()) {
    GTEST_SKIP() << "the isolated control plane needs network namespaces, which need root (CAP_SYS_ADMIN)";
  }
  SystemClock clock;
  auto ca = tls::createCa({"test-postgres-ca", {}, {}, {}, true, false, false, std::chrono::hours(24)}, clock);
  ASSERT_TRUE(ca);
  // The name only: 127.0.0.1 is not on it.
  auto serving = tls::issueCertificate(ca.value(), {"localhost", {}, {"localhost"}, {}, false, true, false,
                                                    std::chrono::hours(24)}, clock);
  ASSERT_TRUE(serving);
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "pg-ca.crt", ca->cert_pem, 0644));
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "pg.crt", serving->cert_pem, 0644));
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "pg.key", serving->key_pem, 0600));
  PostgresServer pg(PostgresServer::Tls{dir_.path() / "pg.crt", dir_.path() / "pg.key"});
  if (!pg.problem().empty()) {
    GTEST_SKIP() << pg.problem();
  }
  std::string dsn = "postgresql://postgres@localhost:" + std::to_string(pg.port()) +
                    "/postgres?sslmode=verify-full&sslrootcert=" + (dir_.path() / "pg-ca.crt").string();
  startAgent({"--postgres-dsn", dsn, "--postgres-password-file", pg.passwordFile().string()});
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-tls", "-t", "k8s", "--agent", "edge-1"}).exit_code, 0);
  ASSERT_TRUE(waitFor([&] { return ready("cp-tls") == "True/Available"; }, 60s, "cp-tls Ready"))
      << field("cp-tls", ".status") << "\n" << agent_->log() << "\nkine: " << slurp(cpDir("cp-tls") / "logs" / "kine.log");
  store::PostgresTarget admin{dsn, pg.password()};
  EXPECT_TRUE(store::execute(store::withDatabase(admin, "cp_tls"), "SELECT COUNT(*) FROM kine"));
  // (postgresql:// as the user wrote it; Kine before v0.13.1 takes only postgres://.)
  pid_t kine = agent::runtime::runningPid(cpDir("cp-tls") / "run" / "kine.pid");
  ASSERT_GT(kine, 0);
  EXPECT_NE(slurp("/proc/" + std::to_string(kine) + "/cmdline").find("--endpoint=postgres://postgres@localhost:"),
            std::string::npos);
  ASSERT_EQ(kflex({"delete", "cp-tls", "--timeout", "30s"}).exit_code, 0);
}

TEST_F(ControlPlanes, K8sWithoutASharedPostgresSaysWhatToConfigure) {
  startAgent();
  ASSERT_EQ(kflex({"create", "--no-wait", "cp-k8s", "-t", "k8s", "--agent", "edge-1"}).exit_code, 0);
  EXPECT_TRUE(waitFor([&] { return field("cp-k8s", ".status.conditions[?(@.type=='Synced')].reason") == "DatabaseUnavailable"; },
                      20s, "reported"))
      << field("cp-k8s", ".status") << agent_->log();
  std::string msg = field("cp-k8s", ".status.conditions[?(@.type=='Synced')].message");
  EXPECT_NE(msg.find("postgres_dsn"), std::string::npos) << msg;
  // (A control plane's status is written at most once a second: the agent's next report, with
  // Ready, may come a moment later.)
  EXPECT_TRUE(waitFor([&] { return ready("cp-k8s") == "False/Unavailable"; }, 5s, "Ready=False/Unavailable"))
      << ready("cp-k8s");
  // Bad agent settings are refused at start with the setting named.
  auto bad = run({(binDir() / "kflex-agent").string(), "run", "--config", "/dev/null", "--data-dir",
                  (dir_.path() / "x").string(), "--hub", hub_->url(), "--postgres-dsn", "postgres://u:secret@h/db"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("postgres_password_file"), std::string::npos) << bad.err;
  EXPECT_EQ(bad.err.find("secret"), std::string::npos) << "the password is not echoed";
}

}  // namespace
}  // namespace kflex::test
