// SPDX-License-Identifier: Apache-2.0
// Control planes the hub serves itself: adopted clusters (type external, `kflex adopt`) and the
// hub's hosting cluster (type host). The clusters are the kube-cluster stand-in
// (tests/standins/kube_cluster.cpp): a Kubernetes API with service-account tokens and RBAC's
// cluster-admin binding.
#include <signal.h>

#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agent/runtime/vcluster_runtime.hpp"
#include "shared/common/util.hpp"
#include "tests/integration/agent_cleanup.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string slurp(const fs::path& p) {
  auto t = readFile(p);
  return t ? t.value() : std::string();
}

// A kube-cluster stand-in in its own directory.
class Cluster {
 public:
  explicit Cluster(fs::path dir) : dir_(std::move(dir)) { start(); }
  ~Cluster() { stop(); }
  void start() {
    fs::remove(dir_ / "admin.kubeconfig");
    // Its Service range as a k3s host's (not kube-apiserver's default 10.96.0.0/12).
    proc_ = std::make_unique<Process>(std::vector<std::string>{(binDir() / "standins" / "kube-cluster").string(),
                                                               "--data-dir", dir_.string(), "--listen", listen_,
                                                               "--service-cluster-ip-range", "10.43.0.0/16"},
                                      dir_.string() + ".log");
    waitFor([&] { return fs::exists(dir_ / "admin.kubeconfig"); }, 10s, "kube-cluster's kubeconfig");
    // Keep the port across restarts (the adopted kubeconfig points at it).
    auto kc = readFile(dir_ / "admin.kubeconfig");
    auto at = kc ? kc->find("https://127.0.0.1:") : std::string::npos;
    if (at != std::string::npos) {
      listen_ = "127.0.0.1:" + kc->substr(at + 18, kc->find_first_not_of("0123456789", at + 18) - at - 18);
    }
  }
  void stop() {
    if (proc_) {
      proc_->signal(SIGTERM);
      proc_->wait(10s);
      proc_.reset();
    }
  }
  fs::path kubeconfig() const { return dir_ / "admin.kubeconfig"; }
  CommandResult kubectl(const std::vector<std::string>& args) { return test::kubectl(kubeconfig(), args); }

 private:
  fs::path dir_;
  std::string listen_ = "127.0.0.1:0";
  std::unique_ptr<Process> proc_;
};

class Clusters : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kubectlPath().empty()) {
      GTEST_SKIP() << "kubectl is not installed";
    }
    fs::create_directories(dir_.path() / "cluster");
    cluster_ = std::make_unique<Cluster>(dir_.path() / "cluster");
  }
  void startHub(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--listen", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    hub_ = std::make_unique<HubProcess>(dir_.path() / "hub", args);
    ASSERT_TRUE(hub_->ok()) << hub_->log();
  }
  CommandResult kflex(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {(binDir() / "kflex").string(), "--kubeconfig", hub_->kubeconfig().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  }
  std::string field(const std::string& cp, const std::string& path) {
    return kubectl(hub_->kubeconfig(), {"get", "cp", cp, "-o", "jsonpath={" + path + "}"}).out;
  }
  std::string condition(const std::string& cp, const std::string& type) {
    return field(cp, ".status.conditions[?(@.type=='" + type + "')].status") + "/" +
           field(cp, ".status.conditions[?(@.type=='" + type + "')].reason");
  }
  // The hub's kubeconfig secret of `cp`, key `key`, decoded.
  std::string secretData(const std::string& cp, const std::string& key) {
    auto r = kubectl(hub_->kubeconfig(), {"get", "secret", "-n", cp + "-system", "admin-kubeconfig", "-o",
                                          "jsonpath={.data." + key + "}"});
    auto text = base64Decode(r.out);
    return text ? text.value() : "";
  }
  // `kflex ctx cp` into a kubeconfig of its own, then kubectl through it.
  CommandResult throughContext(const std::string& cp, const std::vector<std::string>& args,
                               const std::string& input = "") {
    fs::path user = dir_.path() / ("user-" + cp + ".kubeconfig");
    fs::copy_file(hub_->kubeconfig(), user, fs::copy_options::overwrite_existing);  // (the hub current: a fresh ctx)
    std::vector<std::string> ctx = {(binDir() / "kflex").string(), "--kubeconfig", user.string(), "ctx", cp};
    auto r = run(ctx);
    if (r.exit_code != 0) {
      return r;
    }
    return kubectl(user, args, input);
  }

  // The Job `inside` in the vCluster `cp`: its status.succeeded.
  std::string insideJobSucceeded(const std::string& cp) {
    return throughContext(cp, {"get", "job", "-n", cp + "-system", "inside", "-o", "jsonpath={.status.succeeded}"}).out;
  }

  // Enrolls and starts agent edge-1 (stand-ins for programs), with `extra` flags.
  void startAgent(const std::vector<std::string>& extra) {
    auto t = kflex({"token", "create"});
    ASSERT_EQ(t.exit_code, 0) << t.err;
    auto join = agentJoinIn(t.out);
    ASSERT_TRUE(join) << t.out;
    std::vector<std::string> argv = {(binDir() / "kflex-agent").string(), "run",
                                     "--data-dir", (dir_.path() / "edge-1").string(), "--hub", hub_->url(),
                                     "--name", "edge-1", "--token", join->token, "--ca-cert-hash", join->pin,
                                     "--bin-dir", (binDir() / "standins").string()};
    if (std::find(extra.begin(), extra.end(), "--config") == extra.end()) {
      argv.insert(argv.end(), {"--config", "/dev/null"});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    agent_ = std::make_unique<Process>(argv, dir_.path() / "edge-1.log");
    ASSERT_TRUE(waitFor([&] {
      return kubectl(hub_->kubeconfig(), {"get", "agent", "edge-1", "-o",
                                          "jsonpath={.status.conditions[?(@.type=='Ready')].status}"}).out == "True";
    }, 20s, "agent Ready"));
  }
  void restartAgent() {
    agent_->signal(SIGTERM);
    ASSERT_EQ(agent_->wait(10s), 0) << agent_->log();
    std::vector<std::string> argv = {(binDir() / "kflex-agent").string(), "run", "--config", "/dev/null",
                                     "--data-dir", (dir_.path() / "edge-1").string(), "--hub", hub_->url(),
                                     "--bin-dir", (binDir() / "standins").string(), "--cluster-kubeconfig",
                                     cluster_->kubeconfig().string()};
    agent_ = std::make_unique<Process>(argv, dir_.path() / "edge-1-again.log");
  }
  void TearDown() override {
    if (agent_) {
      agent_->signal(SIGTERM);
      agent_->wait(10s);
    }
    endControlPlanes(dir_.path() / "edge-1");
  }

  TempDir dir_;
  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<HubProcess> hub_;
  std::unique_ptr<Process> agent_;
};

TEST_F(Clusters, AdoptAnExternalClusterWithATokenOnly) {
  startHub();
  auto r = kflex({"adopt", "ext1", "--adopted-kubeconfig", cluster_->kubeconfig().string(), "--timeout", "30s"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << hub_->log();
  EXPECT_NE(r.out.find("is ready"), std::string::npos) << r.out;
  EXPECT_EQ(condition("ext1", "Synced"), "True/ReconcileSuccess");
  EXPECT_EQ(condition("ext1", "Ready"), "True/Available");
  EXPECT_EQ(field("ext1", ".spec.bootstrapSecretRef.name"), "ext1-bootstrap");
  EXPECT_EQ(field("ext1", ".spec.tokenExpirationSeconds"), "31536000");
  EXPECT_EQ(field("ext1", ".status.secretRef.name"), "admin-kubeconfig");

  // The bootstrap credential (a client certificate of the cluster's admin) is gone from the hub:
  // neither served nor stored, not even sealed.
  auto gone = kubectl(hub_->kubeconfig(), {"get", "secret", "-n", "kubeflex-system", "ext1-bootstrap"});
  EXPECT_NE(gone.exit_code, 0);
  EXPECT_NE(gone.err.find("NotFound"), std::string::npos) << gone.err;
  // The hub holds its file exclusively while it runs: read a copy (the file and its log).
  fs::create_directories(dir_.path() / "copy");
  for (const char* f : {"hub.db", "hub.db-wal"}) {
    if (fs::exists(dir_.path() / "hub" / f)) {
      fs::copy_file(dir_.path() / "hub" / f, dir_.path() / "copy" / f, fs::copy_options::overwrite_existing);
    }
  }
  auto db = run({"sqlite3", (dir_.path() / "copy" / "hub.db").string(), "SELECT count(*) FROM objects WHERE "
                                                                           "resource LIKE '%bootstrap%'"});
  if (db.exit_code == 0) {
    EXPECT_EQ(trim(db.out), "0") << db.out;
  } else if (db.exit_code != 127) {  // 127: no sqlite3 program here
    ADD_FAILURE() << "cannot read the copy of hub.db: " << db.err;
  }
  // What the hub keeps: a kubeconfig holding only the service account's token.
  std::string kc = secretData("ext1", "kubeconfig");
  EXPECT_NE(kc.find("token:"), std::string::npos) << kc;
  EXPECT_EQ(kc.find("client-key-data"), std::string::npos) << kc;
  EXPECT_EQ(kc.find("client-certificate-data"), std::string::npos) << kc;
  EXPECT_FALSE(secretData("ext1", "kubeconfig-incluster").empty());
  // ... made in the adopted cluster as upstream makes it.
  EXPECT_EQ(cluster_->kubectl({"get", "sa", "-n", "kube-system", "kubeflex", "-o", "name"}).out,
            "serviceaccount/kubeflex\n");
  EXPECT_EQ(cluster_->kubectl({"get", "clusterrolebinding", "kubeflex-clusterrolebinding", "-o",
                               "jsonpath={.roleRef.name}/{.subjects[0].name}"}).out,
            "cluster-admin/kubeflex");

  // kflex ctx, then kubectl through the token.
  auto readyz = throughContext("ext1", {"get", "--raw", "/readyz"});
  EXPECT_EQ(readyz.exit_code, 0) << readyz.err;
  EXPECT_EQ(readyz.out, "ok");
  auto ns = kubectl(dir_.path() / "user-ext1.kubeconfig", {"get", "ns", "kube-system", "-o", "name"});
  EXPECT_EQ(ns.out, "namespace/kube-system\n") << ns.err;

  // Health is the hub's probe: the cluster stops, Ready goes False; it comes back, Ready again.
  cluster_->stop();
  EXPECT_TRUE(waitFor([&] { return condition("ext1", "Ready") == "False/Unavailable"; }, 20s, "Unavailable"));
  cluster_->start();
  EXPECT_TRUE(waitFor([&] { return condition("ext1", "Ready") == "True/Available"; }, 20s, "Available again"));

  // Deleting forgets the credentials.
  r = kflex({"delete", "ext1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(waitFor([&] {
    return kubectl(hub_->kubeconfig(), {"get", "secret", "-A", "-o", "name"}).out.find("admin-kubeconfig") ==
           std::string::npos;
  }, 10s, "credentials forgotten"));
}

TEST_F(Clusters, AdoptionFailuresKeepTheBootstrapAndSayWhy) {
  startHub();
  // A context that is not there, and an override that points at a loopback address.
  auto r = kflex({"adopt", "ext2", "--adopted-kubeconfig", cluster_->kubeconfig().string(), "--adopted-context",
                  "nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("nope"), std::string::npos) << r.err;
  r = kflex({"adopt", "ext2", "--adopted-kubeconfig", cluster_->kubeconfig().string(), "--url-override",
             "https://127.0.0.1:6443"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("loopback"), std::string::npos) << r.err;
  r = kflex({"adopt", "Bad_Name", "--adopted-kubeconfig", cluster_->kubeconfig().string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(kflex({"create", "ext9", "-t", "external"}).exit_code, 2);
  EXPECT_EQ(kubectl(hub_->kubeconfig(), {"get", "cp", "-o", "name"}).out, "");

  // Credentials the cluster refuses: the control plane says so and the bootstrap secret stays
  // for the next attempt.
  std::string server = readFile(cluster_->kubeconfig()).value();
  auto at = server.find("https://127.0.0.1:");
  ASSERT_NE(at, std::string::npos);
  std::string url = server.substr(at, server.find_first_of(" \n\"", at) - at);
  fs::path bogus = dir_.path() / "bogus.kubeconfig";
  ASSERT_TRUE(writeFileAtomic(bogus, "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: " +
                                         url + "\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n"
                                         "    token: not-a-real-token\ncontexts:\n- name: x\n  context:\n    cluster: c\n"
                                         "    user: u\ncurrent-context: x\n", 0600));
  r = kflex({"adopt", "ext3", "--adopted-kubeconfig", bogus.string(), "--no-wait"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(waitFor([&] { return condition("ext3", "Synced") == "False/ReconcileError"; }, 20s, "ReconcileError"));
  EXPECT_NE(field("ext3", ".status.conditions[?(@.type=='Synced')].message").find("Unauthorized"), std::string::npos)
      << field("ext3", ".status.conditions");
  EXPECT_NE(condition("ext3", "Ready").rfind("True", 0), 0u);
  EXPECT_EQ(kubectl(hub_->kubeconfig(), {"get", "secret", "-n", "kubeflex-system", "ext3-bootstrap", "-o", "name"}).out,
            "secret/ext3-bootstrap\n");
  EXPECT_EQ(kflex({"list"}).exit_code, 0);
  // Given up on: the control plane goes, and another cluster's admin credentials go with it.
  r = kflex({"delete", "ext3", "--timeout", "30s"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(waitFor([&] {
    return kubectl(hub_->kubeconfig(), {"get", "secret", "-n", "kubeflex-system", "-o", "name"}).out.empty();
  }, 10s, "the bootstrap secret deleted")) << hub_->log();
}

TEST_F(Clusters, HostIsTheHubsHostingCluster) {
  startHub({"--hosting-kubeconfig", cluster_->kubeconfig().string()});
  auto r = kflex({"create", "h1", "-t", "host", "--timeout", "30s"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << hub_->log();
  EXPECT_EQ(condition("h1", "Ready"), "True/Available");
  EXPECT_EQ(field("h1", ".metadata.finalizers[0]"), "kflex.kubestellar.org/finalizer");
  // Upstream's objects in the hosting cluster.
  EXPECT_EQ(cluster_->kubectl({"get", "sa", "-n", "h1-system", "h1", "-o", "name"}).out, "serviceaccount/h1\n");
  EXPECT_EQ(cluster_->kubectl({"get", "clusterrolebinding", "h1-binding", "-o", "jsonpath={.roleRef.name}"}).out,
            "cluster-admin");
  EXPECT_NE(secretData("h1", "kubeconfig-incluster").find("https://kubernetes.default.svc"), std::string::npos);
  auto readyz = throughContext("h1", {"get", "--raw", "/readyz"});
  EXPECT_EQ(readyz.out, "ok") << readyz.err;

  // Deleting removes them from the hosting cluster before the control plane goes.
  r = kflex({"delete", "h1", "--timeout", "30s"});
  ASSERT_EQ(r.exit_code, 0) << r.err << hub_->log();
  EXPECT_EQ(kubectl(hub_->kubeconfig(), {"get", "cp", "-o", "name"}).out, "");
  EXPECT_NE(cluster_->kubectl({"get", "clusterrolebinding", "h1-binding"}).exit_code, 0);
  EXPECT_TRUE(waitFor([&] { return cluster_->kubectl({"get", "ns", "h1-system"}).exit_code != 0; }, 10s,
                      "namespace gone"));
}

TEST_F(Clusters, HostWithoutAHostingClusterSaysHowToConfigureOne) {
  startHub();
  auto r = kflex({"create", "h2", "-t", "host", "--no-wait"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(waitFor([&] { return condition("h2", "Synced") == "False/ReconcileError"; }, 20s, "ReconcileError"));
  EXPECT_NE(field("h2", ".status.conditions[?(@.type=='Synced')].message").find("--hosting-kubeconfig"),
            std::string::npos);
  // Nothing was made anywhere: deleting is immediate.
  r = kflex({"delete", "h2", "--timeout", "20s"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(Clusters, VClusterRunsInTheClusterNearTheAgent) {
  startHub();
  startAgent({"--cluster-kubeconfig", cluster_->kubeconfig().string()});
  // A hook beside it in the hosting cluster, reaching it through the vCluster's own secret.
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "hook.yaml", R"(apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: PostCreateHook
metadata:
  name: vcjob
spec:
  templates:
  - apiVersion: batch/v1
    kind: Job
    metadata: {name: "{{.HookName}}"}
    spec:
      template:
        spec:
          containers:
          - name: kubectl
            image: bitnami/kubectl
            args: [get, ns]
            env: [{name: KUBECONFIG, value: /etc/kube/config-incluster}]
            volumeMounts: [{name: kubeconfig, mountPath: /etc/kube, readOnly: true}]
          volumes: [{name: kubeconfig, secret: {secretName: vc-vcluster}}]
          restartPolicy: Never
)", 0644));
  auto hook = kubectl(hub_->kubeconfig(), {"apply", "-f", (dir_.path() / "hook.yaml").string()});
  ASSERT_EQ(hook.exit_code, 0) << hook.err;
  // And a Job inside it: vCluster runs it in the virtual cluster and syncs its pod to the host.
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "inside.yaml", R"(apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: PostCreateHook
metadata:
  name: inside
  annotations: {kflex.kubestellar.org/target: hosted}
spec:
  templates:
  - apiVersion: batch/v1
    kind: Job
    metadata: {name: inside}
    spec:
      template:
        spec:
          containers: [{name: work, image: busybox, command: [sleep, "1"]}]
          restartPolicy: Never
)", 0644));
  hook = kubectl(hub_->kubeconfig(), {"apply", "-f", (dir_.path() / "inside.yaml").string()});
  ASSERT_EQ(hook.exit_code, 0) << hook.err;
  auto r = kubectl(hub_->kubeconfig(), {"apply", "-f", "-"}, R"(apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: ControlPlane
metadata: {name: vc1}
spec:
  type: vcluster
  postCreateHooks: [{hookName: vcjob}, {hookName: inside}]
)");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_TRUE(waitFor([&] { return condition("vc1", "Ready") == "True/Available"; }, 60s, "vc1 Ready"))
      << field("vc1", ".status") << agent_->log() << slurp(dir_.path() / "cluster.log");
  // The virtual cluster's Service range is the host's (a k3s host's here), as the chart detects it:
  // the syncer gives the virtual `kubernetes` Service the host Service's ClusterIP.
  EXPECT_NE(cluster_->kubectl({"get", "sts", "-n", "vc1-system", "vcluster", "-o",
                               "jsonpath={.spec.template.spec.containers[0].args}"}).out.find("--service-cidr=10.43.0.0/16"),
            std::string::npos);
  EXPECT_NE(field("vc1", ".status.conditions[?(@.type=='Synced')].message").find("Service range 10.43.0.0/16"),
            std::string::npos);
  EXPECT_EQ(cluster_->kubectl({"get", "sa", "-n", "vc1-system", "vc-workload-vcluster", "-o", "name"}).out,
            "serviceaccount/vc-workload-vcluster\n");
  // What KubeFlex's chart makes, in <cp>-system of the cluster near the agent.
  EXPECT_EQ(cluster_->kubectl({"get", "sts", "-n", "vc1-system", "vcluster", "-o",
                               "jsonpath={.spec.template.spec.containers[*].image}"}).out,
            "rancher/k3s:v1.27.2-k3s1 ghcr.io/loft-sh/vcluster:0.16.4");
  std::string node_port = cluster_->kubectl({"get", "svc", "-n", "vc1-system", "vcluster-nodeport", "-o",
                                             "jsonpath={.spec.ports[0].nodePort}"}).out;
  ASSERT_FALSE(node_port.empty());
  EXPECT_EQ(field("vc1", ".status.endpoint"), "https://127.0.0.1:" + node_port);
  // Its kubeconfig, as KubeFlex exposes it: vc-vcluster, config and config-incluster.
  EXPECT_EQ(field("vc1", ".status.secretRef.name"), "vc-vcluster");
  auto incluster = kubectl(hub_->kubeconfig(), {"get", "secret", "-n", "vc1-system", "vc-vcluster", "-o",
                                                "jsonpath={.data.config-incluster}"});
  auto incluster_text = base64Decode(incluster.out);
  ASSERT_TRUE(incluster_text) << incluster.err;
  EXPECT_NE(incluster_text->find("https://vcluster.vc1-system"), std::string::npos);
  auto readyz = throughContext("vc1", {"get", "--raw", "/readyz"});
  EXPECT_EQ(readyz.out, "ok") << readyz.err;
  EXPECT_TRUE(waitFor([&] { return field("vc1", ".status.postCreateHookCompleted") == "true"; }, 20s, "the hook"))
      << field("vc1", ".status");
  EXPECT_EQ(cluster_->kubectl({"get", "job", "-n", "vc1-system", "vcjob", "-o", "jsonpath={.status.succeeded}"}).out, "1");
  // The Job inside ran through a pod on the host, under the workload account.
  ASSERT_TRUE(waitFor([&] { return insideJobSucceeded("vc1") == "1"; }, 30s, "the Job inside the vCluster"))
      << slurp(dir_.path() / "cluster.log");
  EXPECT_NE(cluster_->kubectl({"get", "pods", "-n", "vc1-system", "-o",
                               "jsonpath={.items[*].spec.serviceAccountName}"}).out.find("vc-workload-vcluster"),
            std::string::npos);
  std::string generation = cluster_->kubectl({"get", "sts", "-n", "vc1-system", "vcluster", "-o",
                                              "jsonpath={.metadata.generation}/{.metadata.resourceVersion}"}).out;

  // An agent restart neither reinstalls nor disturbs it.
  restartAgent();
  EXPECT_TRUE(waitFor([&] { return condition("vc1", "Ready") == "True/Available"; }, 20s, "Ready after restart"));
  EXPECT_EQ(cluster_->kubectl({"get", "sts", "-n", "vc1-system", "vcluster", "-o",
                               "jsonpath={.metadata.generation}/{.metadata.resourceVersion}"}).out,
            generation);

  // Deleting removes its namespace from the cluster before the control plane goes.
  r = kflex({"delete", "vc1", "--timeout", "30s"});
  ASSERT_EQ(r.exit_code, 0) << r.err << agent_->log();
  EXPECT_NE(cluster_->kubectl({"get", "ns", "vc1-system"}).exit_code, 0);
}

// A vCluster's data and certificates live on a claimed volume, as with the chart's default: a new
// pod (here the cluster restarting) finds them. A volume lost (the claim deleted) comes back with
// a new CA; the syncer writes a new kubeconfig, and the agent takes it.
TEST_F(Clusters, AVClusterKeepsItsDataOnItsVolumeAndTheAgentFollowsANewKubeconfig) {
  startHub();
  startAgent({"--cluster-kubeconfig", cluster_->kubeconfig().string()});
  auto r = kflex({"create", "vc2", "-t", "vcluster", "--agent", "edge-1", "--timeout", "60s"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << agent_->log() << slurp(dir_.path() / "cluster.log");
  EXPECT_EQ(cluster_->kubectl({"get", "pvc", "-n", "vc2-system", "data-vcluster-0", "-o",
                               "jsonpath={.status.phase}"}).out, "Bound");
  CommandResult made;
  ASSERT_TRUE(waitFor([&] {
    // (Through -f: `kubectl create configmap` sends protobuf, which the stand-in does not read.)
    made = throughContext("vc2", {"create", "-f", "-"},
                          "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"kept\", "
                          "\"namespace\": \"default\"}}");
    return made.exit_code == 0;
  }, 20s, "a ConfigMap in the vCluster")) << made.out << made.err;
  auto hub_secret = [&] {
    return kubectl(hub_->kubeconfig(), {"get", "secret", "-n", "vc2-system", "vc-vcluster", "-o",
                                        "jsonpath={.data.config}"}).out;
  };
  std::string first = hub_secret();

  cluster_->stop();
  cluster_->start();
  ASSERT_TRUE(waitFor([&] { return throughContext("vc2", {"get", "configmap", "kept", "-n", "default"}).exit_code == 0; },
                      30s, "the vCluster back with its data"))
      << slurp(dir_.path() / "cluster.log");
  EXPECT_TRUE(waitFor([&] { return condition("vc2", "Ready") == "True/Available"; }, 30s, "Ready"));
  EXPECT_EQ(hub_secret(), first);

  ASSERT_EQ(cluster_->kubectl({"delete", "pvc", "-n", "vc2-system", "data-vcluster-0"}).exit_code, 0);
  cluster_->stop();
  cluster_->start();
  ASSERT_TRUE(waitFor([&] { return hub_secret() != first && condition("vc2", "Ready") == "True/Available"; }, 60s,
                      "a new kubeconfig, taken"))
      << field("vc2", ".status") << agent_->log();
  EXPECT_NE(throughContext("vc2", {"get", "configmap", "kept", "-n", "default"}).exit_code, 0) << "a new, empty volume";
  EXPECT_EQ(throughContext("vc2", {"get", "--raw", "/readyz"}).out, "ok");
}

// A vCluster an earlier agent installed keeps its volume layout: a StatefulSet's
// volumeClaimTemplates cannot be changed, so the agent keeps its emptyDir (and says what that
// means) instead of failing to apply, and keeps the Service range it was given.
TEST_F(Clusters, AVClusterAnEarlierAgentInstalledOnAnEmptyDirKeepsRunning) {
  startHub();
  // (As JSON through apply: `kubectl create namespace` sends protobuf, which the stand-in does not read.)
  auto objects = agent::runtime::VClusterRuntime::manifests("vc3", "", 0, "10.43.0.0/16", false);
  Json list = {{"apiVersion", "v1"}, {"kind", "List"}, {"items", Json::array({objects.front(), objects.back()})}};
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "old-sts.json", list.dump(), 0644));
  auto applied = cluster_->kubectl({"apply", "--server-side", "--field-manager=kflex-agent", "--validate=false", "-f",
                                    (dir_.path() / "old-sts.json").string()});
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  startAgent({"--cluster-kubeconfig", cluster_->kubeconfig().string()});
  auto r = kflex({"create", "vc3", "-t", "vcluster", "--agent", "edge-1", "--timeout", "60s"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << field("vc3", ".status") << slurp(dir_.path() / "cluster.log");
  EXPECT_NE(field("vc3", ".status.conditions[?(@.type=='Synced')].message").find("emptyDir"), std::string::npos)
      << field("vc3", ".status.conditions");
  EXPECT_EQ(cluster_->kubectl({"get", "sts", "-n", "vc3-system", "vcluster", "-o",
                               "jsonpath={.spec.volumeClaimTemplates}"}).out, "");
  EXPECT_EQ(throughContext("vc3", {"get", "--raw", "/readyz"}).out, "ok");
}

TEST_F(Clusters, AnAgentAdoptsAndProbesAClusterForTheHub) {
  startHub();
  startAgent({});
  auto r = kflex({"adopt", "ext4", "--adopted-kubeconfig", cluster_->kubeconfig().string(), "--agent", "edge-1",
                  "--timeout", "30s"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << agent_->log();
  EXPECT_EQ(field("ext4", ".status.agent"), "edge-1");
  EXPECT_EQ(condition("ext4", "Ready"), "True/Available");
  EXPECT_EQ(field("ext4", ".status.conditions[?(@.type=='Synced')].message"),
            "adopted by this agent with a service-account token");
  EXPECT_TRUE(waitFor([&] {
    return kubectl(hub_->kubeconfig(), {"get", "secret", "-n", "kubeflex-system", "-o", "name"}).out.empty();
  }, 10s, "bootstrap secret deleted"));
  std::string kc = secretData("ext4", "kubeconfig");
  EXPECT_NE(kc.find("token:"), std::string::npos);
  EXPECT_EQ(kc.find("client-key-data"), std::string::npos);
  auto readyz = throughContext("ext4", {"get", "--raw", "/readyz"});
  EXPECT_EQ(readyz.out, "ok") << readyz.err;
  // That went through the hub's tunnel and the agent (the cluster keeps its own server name).
  EXPECT_NE(hub_->log().find("msg=tunnel controlPlane=ext4 agent=edge-1"), std::string::npos) << hub_->log();
  std::string routed = secretData("ext4", "kubeconfig");
  EXPECT_NE(routed.find("proxy-url: https://tunnel:"), std::string::npos) << routed;
  EXPECT_NE(routed.find("server: " + field("ext4", ".status.endpoint")), std::string::npos) << routed;
  // The agent keeps the token-only kubeconfig (0600) across restarts; it no longer has the bootstrap.
  fs::path kept = dir_.path() / "edge-1" / "cp" / "ext4" / "kubeconfig.yaml";
  ASSERT_TRUE(fs::exists(kept));
  EXPECT_EQ(fs::status(kept).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  restartAgent();
  EXPECT_TRUE(waitFor([&] { return condition("ext4", "Ready") == "True/Available"; }, 20s, "Ready after restart"));
  // Health is the agent's probe.
  cluster_->stop();
  EXPECT_TRUE(waitFor([&] { return condition("ext4", "Ready") == "False/Unavailable"; }, 20s, "Unavailable"));
  cluster_->start();
  r = kflex({"delete", "ext4", "--timeout", "30s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(waitFor([&] { return !fs::exists(dir_.path() / "edge-1" / "cp" / "ext4"); }, 10s, "forgotten"));
}

TEST_F(Clusters, VClusterOnAnAgentWithoutAClusterSaysWhatToConfigure) {
  startHub();
  startAgent({});
  EXPECT_EQ(kubectl(hub_->kubeconfig(), {"get", "agent", "edge-1", "-o", "jsonpath={.status.controlPlaneTypes}"}).out,
            "[\"k3s\",\"external\"]");
  // Chosen by kflex, only an agent that can run the type qualifies.
  auto r = kflex({"create", "vc3", "-t", "vcluster", "--no-wait"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(waitFor([&] {
    return field("vc3", ".status.conditions[?(@.type=='Scheduled')].message").find("can run vcluster") !=
           std::string::npos;
  }, 10s, "Unschedulable")) << field("vc3", ".status.conditions");
  EXPECT_EQ(field("vc3", ".status.agent"), "");
  // Named by the user, it is tried and says why it cannot.
  r = kflex({"create", "vc2", "-t", "vcluster", "--agent", "edge-1", "--no-wait"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(waitFor([&] { return condition("vc2", "Synced") == "False/ReconcileError"; }, 20s, "ReconcileError"));
  EXPECT_NE(field("vc2", ".status.conditions[?(@.type=='Synced')].message").find("cluster_kubeconfig"),
            std::string::npos);
  r = kflex({"delete", "vc2", "--timeout", "20s"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace kflex::test

namespace kflex::test {
namespace {

// PostCreateHooks on control planes an agent runs: templates rendered with the control plane's
// variables and applied to the cluster near the agent (the hosting cluster) or, annotated
// `kflex.kubestellar.org/target: hosted`, to the control plane itself.
class Hooks : public Clusters {
 protected:
  // kubectl apply on the hub.
  void apply(const std::string& yaml) {
    fs::path f = dir_.path() / "apply.yaml";
    ASSERT_TRUE(writeFileAtomic(f, yaml, 0644));
    auto r = kubectl(hub_->kubeconfig(), {"apply", "-f", f.string()});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  bool waitForCondition(const std::string& cp, const std::string& type, const std::string& want,
                        std::chrono::seconds limit = 30s) {
    return waitFor([&] { return condition(cp, type) == want; }, limit, cp + " " + type + " " + want);
  }
  std::string hookMessage(const std::string& cp) {
    return field(cp, ".status.conditions[?(@.type=='PostCreateHooks')].message");
  }
  // An agent with no cluster near it (the edge case) whose k3s runs the host's kubelet, so that
  // Jobs run in it.
  void startEdgeAgent() {
    ASSERT_TRUE(writeFileAtomic(dir_.path() / "agent.yaml", "k3s_node_agent: true\n", 0644));
    startAgent({"--config", (dir_.path() / "agent.yaml").string()});
  }
};

// A PostCreateHook that targets the hosted control plane, with `extra` metadata lines (indented
// two spaces) and `templates` (YAML list items, indented two spaces).
std::string hostedHook(const std::string& name, const std::string& templates, const std::string& extra = "") {
  return "apiVersion: tenancy.kflex.kubestellar.org/v1alpha1\nkind: PostCreateHook\nmetadata:\n  name: " + name +
         "\n  annotations:\n    kflex.kubestellar.org/target: hosted\n" + extra + "spec:\n  templates:\n" + templates;
}

// Shaped as upstream's hello sample: a Job echoing a default var, in {{.Namespace}}.
constexpr const char* kHelloHook = R"(apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: PostCreateHook
metadata:
  name: hello
  labels:
    kflex.kubestellar.io/cptype: demo
spec:
  defaultVars:
    - name: "MESSAGE"
      value: "Hello from Defaults"
  templates:
  - apiVersion: batch/v1
    kind: Job
    metadata:
      name: hello
      namespace: somewhere-else
    spec:
      template:
        spec:
          containers:
          - name: hello
            image: public.ecr.aws/docker/library/busybox:1.36
            command: ["echo", "{{.MESSAGE}}", "World"]
          restartPolicy: Never
      backoffLimit: 1
  - apiVersion: batch/v1
    kind: Job
    metadata:
      name: "{{.HookName}}-kubeconfig"
    spec:
      template:
        spec:
          containers:
          - name: kubectl
            image: bitnami/kubectl
            args: ["get", "ns"]
            env:
            - name: KUBECONFIG
              value: /etc/kube/config-incluster
            volumeMounts:
            - name: kubeconfig
              mountPath: /etc/kube
              readOnly: true
          volumes:
          - name: kubeconfig
            secret:
              secretName: k3s-config
          restartPolicy: Never
      backoffLimit: 1
)";

TEST_F(Hooks, AHookGoesToTheClusterNearTheAgentAndHoldsReadyUntilItCompletes) {
  startHub();
  startAgent({"--cluster-kubeconfig", cluster_->kubeconfig().string()});
  apply(kHelloHook);
  apply(R"(apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: ControlPlane
metadata:
  name: cp1
spec:
  type: k3s
  postCreateHooks:
  - hookName: hello
    vars:
      MESSAGE: "Hello from the use"
  waitForPostCreateHooks: true
)");
  ASSERT_TRUE(waitForCondition("cp1", "Ready", "True/Available", 60s)) << hookMessage("cp1") << agent_->log();
  EXPECT_EQ(field("cp1", ".status.postCreateHooks.hello"), "true");
  EXPECT_EQ(field("cp1", ".status.postCreateHookCompleted"), "true");
  EXPECT_EQ(condition("cp1", "PostCreateHooks"), "True/Completed");
  // In <cp>-system of the hosting cluster whatever the template said, rendered, applied by kflex.
  auto job = cluster_->kubectl({"get", "job", "-n", "cp1-system", "hello", "-o", "json", "--show-managed-fields"});
  ASSERT_EQ(job.exit_code, 0) << job.err;
  Json j = Json::parse(job.out);
  EXPECT_EQ(j["spec"]["template"]["spec"]["containers"][0]["command"],
            Json::array({"echo", "Hello from the use", "World"}));
  EXPECT_GT(j["status"].value("succeeded", 0), 0);
  EXPECT_EQ(j["metadata"]["labels"].value("kflex.kubestellar.org/control-plane", ""), "cp1");
  bool by_kflex = false;
  for (const auto& m : j["metadata"]["managedFields"]) {
    by_kflex = by_kflex || (m.value("manager", "") == "kflex" && m.value("operation", "") == "Apply");
  }
  EXPECT_TRUE(by_kflex) << j["metadata"]["managedFields"].dump();
  // The Job that mounts the control plane's kubeconfig found it there (k3s-config, as KubeFlex names it).
  EXPECT_EQ(cluster_->kubectl({"get", "job", "-n", "cp1-system", "hello-kubeconfig", "-o",
                               "jsonpath={.status.succeeded}"}).out, "1");
  auto secret = cluster_->kubectl({"get", "secret", "-n", "cp1-system", "k3s-config", "-o",
                                   "jsonpath={.data.config-incluster}"});
  ASSERT_EQ(secret.exit_code, 0) << secret.err;
  auto secret_text = base64Decode(secret.out);
  ASSERT_TRUE(secret_text);
  EXPECT_NE(secret_text->find("https://"), std::string::npos) << *secret_text;
  // As upstream, the hook's labels are copied onto the control plane.
  EXPECT_TRUE(waitFor([&] { return field("cp1", ".metadata.labels.kflex\\.kubestellar\\.io/cptype") == "demo"; }, 10s,
                      "hook labels on the control plane"));

  // Editing the hook later does not run it again; the status says how to.
  apply(std::string(kHelloHook) + "  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: later\n");
  EXPECT_TRUE(waitFor([&] { return hookMessage("cp1").find("kflex hook rerun cp1 hello") != std::string::npos; }, 15s,
                      "the rerun hint"))
      << hookMessage("cp1");
  EXPECT_NE(cluster_->kubectl({"get", "cm", "-n", "cp1-system", "later"}).exit_code, 0);
  // ... until asked.
  auto rerun = kflex({"hook", "rerun", "cp1", "hello"});
  ASSERT_EQ(rerun.exit_code, 0) << rerun.out << rerun.err;
  EXPECT_TRUE(waitFor([&] { return cluster_->kubectl({"get", "cm", "-n", "cp1-system", "later"}).exit_code == 0; }, 20s,
                      "the rerun applied the new template"))
      << hookMessage("cp1");
  EXPECT_TRUE(waitForCondition("cp1", "PostCreateHooks", "True/Completed"));

  // An agent restart repeats nothing: the Job is the one that ran.
  std::string uid = cluster_->kubectl({"get", "job", "-n", "cp1-system", "hello", "-o", "jsonpath={.metadata.uid}"}).out;
  std::string rv = cluster_->kubectl({"get", "job", "-n", "cp1-system", "hello", "-o",
                                      "jsonpath={.metadata.resourceVersion}"}).out;
  restartAgent();
  EXPECT_TRUE(waitForCondition("cp1", "Ready", "True/Available"));
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(cluster_->kubectl({"get", "job", "-n", "cp1-system", "hello", "-o",
                               "jsonpath={.metadata.uid}/{.metadata.resourceVersion}"}).out,
            uid + "/" + rv);

  // Deleting the control plane removes what its hooks made in the cluster.
  auto del = kflex({"delete", "cp1", "--timeout", "30s"});
  ASSERT_EQ(del.exit_code, 0) << del.err << agent_->log();
  EXPECT_TRUE(waitFor([&] { return cluster_->kubectl({"get", "ns", "cp1-system"}).exit_code != 0; }, 20s,
                      "cp1-system gone from the cluster"))
      << agent_->log();
}

TEST_F(Hooks, AHostedHookReachesTheControlPlaneWithoutAnyCluster) {
  startHub();
  startEdgeAgent();
  apply(R"(apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: PostCreateHook
metadata:
  name: settings
  annotations:
    kflex.kubestellar.org/target: hosted
spec:
  defaultVars:
  - {name: FROM_DEFAULT, value: default}
  - {name: GLOBAL_BEATS_DEFAULT, value: default}
  - {name: USE_BEATS_GLOBAL, value: default}
  - {name: Namespace, value: never}
  templates:
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: "{{.HookName}}"
    data:
      fromDefault: "{{.FROM_DEFAULT}}"
      globalBeatsDefault: "{{.GLOBAL_BEATS_DEFAULT}}"
      useBeatsGlobal: "{{ .USE_BEATS_GLOBAL }}"
      namespace: "{{.Namespace}}"
      controlPlane: "{{.ControlPlaneName}}"
  - apiVersion: rbac.authorization.k8s.io/v1
    kind: ClusterRole
    metadata:
      name: "{{.Namespace}}-{{.HookName}}"
    rules:
    - apiGroups: [""]
      resources: [configmaps]
      verbs: [get]
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: dashboards
      namespace: monitoring
    data: {a: b}
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: cluster-info-extra
      namespace: kube-system
    data: {a: b}
  - apiVersion: batch/v1
    kind: Job
    metadata:
      name: "{{.HookName}}"
    spec:
      template:
        spec:
          containers:
          - name: c
            image: busybox
            command: [sh, -c, "sleep 1"]
          restartPolicy: Never
)");
  apply(R"(apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: ControlPlane
metadata:
  name: edge
spec:
  type: k3s
  globalVars:
    GLOBAL_BEATS_DEFAULT: global
    USE_BEATS_GLOBAL: global
  postCreateHooks:
  - hookName: settings
    vars:
      USE_BEATS_GLOBAL: use
      ControlPlaneName: never
  waitForPostCreateHooks: true
)");
  ASSERT_TRUE(waitForCondition("edge", "Ready", "True/Available", 60s)) << field("edge", ".status") << agent_->log();
  EXPECT_EQ(field("edge", ".status.postCreateHooks.settings"), "true");
  auto cm = throughContext("edge", {"get", "cm", "-n", "edge-system", "settings", "-o", "json"});
  ASSERT_EQ(cm.exit_code, 0) << cm.err;
  Json data = Json::parse(cm.out)["data"];
  EXPECT_EQ(data["fromDefault"], "default");
  EXPECT_EQ(data["globalBeatsDefault"], "global");
  EXPECT_EQ(data["useBeatsGlobal"], "use");
  EXPECT_EQ(data["namespace"], "edge-system");
  EXPECT_EQ(data["controlPlane"], "edge");
  auto role = throughContext("edge", {"get", "clusterrole", "edge-system-settings", "-o",
                                      "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by}"});
  EXPECT_EQ(role.out, "Helm") << role.err;
  EXPECT_EQ(throughContext("edge", {"get", "job", "-n", "edge-system", "settings", "-o",
                                    "jsonpath={.status.succeeded}"}).out, "1");
  // Inside the control plane a namespace the template names is honoured (and made first).
  EXPECT_EQ(throughContext("edge", {"get", "ns", "monitoring", "-o", "name"}).out, "namespace/monitoring\n");
  EXPECT_EQ(throughContext("edge", {"get", "cm", "-n", "monitoring", "dashboards", "-o", "name"}).out,
            "configmap/dashboards\n");
  EXPECT_EQ(throughContext("edge", {"get", "cm", "-n", "kube-system", "cluster-info-extra", "-o", "name"}).out,
            "configmap/cluster-info-extra\n");
  EXPECT_NE(throughContext("edge", {"get", "cm", "-n", "edge-system", "dashboards"}).exit_code, 0);

  // Spec edits are taken as docs/api.md says: a hook added later runs; a completed one whose
  // variables changed is not run again (kflex hook rerun does that).
  apply(R"(apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: PostCreateHook
metadata:
  name: later
  annotations:
    kflex.kubestellar.org/target: hosted
spec:
  templates:
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: later
    data: {added: "yes"}
)");
  auto patched = kubectl(hub_->kubeconfig(),
                         {"patch", "cp", "edge", "--type=merge", "-p",
                          R"({"spec":{"postCreateHooks":[{"hookName":"settings","vars":{"USE_BEATS_GLOBAL":"changed"}},)"
                          R"({"hookName":"later"}]}})"});
  ASSERT_EQ(patched.exit_code, 0) << patched.err;
  EXPECT_TRUE(waitFor([&] { return field("edge", ".status.postCreateHooks.later") == "true"; }, 30s, "the added hook ran"))
      << field("edge", ".status");
  EXPECT_EQ(throughContext("edge", {"get", "cm", "-n", "edge-system", "later", "-o", "jsonpath={.data.added}"}).out, "yes");
  EXPECT_EQ(throughContext("edge", {"get", "cm", "-n", "edge-system", "settings", "-o", "jsonpath={.data.useBeatsGlobal}"}).out,
            "use");
}

TEST_F(Hooks, FailingAndMissingHooksSayWhyAndAMissingOneRunsWhenItAppears) {
  startHub();
  startEdgeAgent();
  auto job = [](const std::string& name, const std::string& command) {
    return "  - apiVersion: batch/v1\n    kind: Job\n    metadata: {name: " + name +
           "}\n    spec:\n      backoffLimit: 1\n      template:\n        spec:\n          containers:\n"
           "          - {name: c, image: busybox, command: " + command + "}\n          restartPolicy: Never\n";
  };
  auto config_map = [](const std::string& name) {
    return "  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: \"" + name + "\"\n";
  };
  apply(hostedHook("fails", job("fails", "[sh, -c, \"exit 3\"]")) + "---\n" +
        hostedHook("hangs", job("hangs", "[sleep, infinity]"), "    kflex.kubestellar.org/timeout: 3s\n") + "---\n" +
        hostedHook("broken", config_map("{{.NOT_DEFINED}}")) + "---\n" +
        hostedHook("refused", config_map("{{.HookName}}_Not_A_Name")) + R"(---
apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: PostCreateHook
metadata:
  name: hosting
spec:
  templates:
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: x
---
apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: ControlPlane
metadata:
  name: nowait
spec:
  type: k3s
  postCreateHooks:
  - hookName: refused
  - hookName: fails
  - hookName: hangs
  - hookName: hosting
  - hookName: broken
  - hookName: later
)");
  // Not waiting for hooks: Ready as the control plane is; Synced says what went wrong.
  ASSERT_TRUE(waitForCondition("nowait", "Ready", "True/Available", 60s)) << agent_->log();
  ASSERT_TRUE(waitFor([&] {
    std::string m = hookMessage("nowait");
    return m.find("fails: Failed") != std::string::npos && m.find("hangs: Failed") != std::string::npos &&
           m.find("refused: Failed") != std::string::npos &&
           m.find("broken: Failed") != std::string::npos;
  }, 30s, "the hooks to fail")) << hookMessage("nowait");
  std::string msg = hookMessage("nowait");
  EXPECT_NE(msg.find("BackoffLimitExceeded"), std::string::npos) << msg;
  EXPECT_NE(msg.find("hangs: Failed (not complete after 3s: Job nowait-system/hangs is not complete)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cluster_kubeconfig"), std::string::npos) << msg;
  EXPECT_NE(msg.find("template: broken.templates[0]:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("map has no entry for key \"NOT_DEFINED\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("later: Missing"), std::string::npos) << msg;
  EXPECT_NE(msg.find("refused: Failed (the control plane refused ConfigMap nowait-system/refused_Not_A_Name: "),
            std::string::npos) << msg;
  EXPECT_EQ(condition("nowait", "Synced"), "False/ReconcileError");
  EXPECT_EQ(field("nowait", ".status.postCreateHookCompleted"), "false");
  EXPECT_EQ(field("nowait", ".status.postCreateHooks.fails"), "false");
  // The broken template applied nothing at all.
  EXPECT_EQ(throughContext("nowait", {"get", "cm", "-n", "nowait-system", "-o", "name"}).out, "");

  // Waiting for hooks: Ready stays False until the missing hook appears and completes.
  apply(R"(apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: ControlPlane
metadata:
  name: waits
spec:
  type: k3s
  postCreateHook: later
  waitForPostCreateHooks: true
)");
  ASSERT_TRUE(waitForCondition("waits", "Ready", "False/WaitingForPostCreateHooks", 60s)) << agent_->log();
  EXPECT_EQ(condition("waits", "PostCreateHooks"), "False/HookNotFound");
  apply(hostedHook("later", config_map("{{.HookName}}")));
  EXPECT_TRUE(waitForCondition("waits", "Ready", "True/Available")) << hookMessage("waits");
  EXPECT_EQ(field("waits", ".status.postCreateHookCompleted"), "true");
  auto later = throughContext("waits", {"get", "cm", "-n", "waits-system", "later", "-o", "name"});
  EXPECT_EQ(later.out, "configmap/later\n") << later.err;
  // The other control plane that waited for it got it too.
  EXPECT_TRUE(waitFor([&] { return field("nowait", ".status.postCreateHooks.later") == "true"; }, 20s, "later on nowait"));
}

TEST_F(Hooks, TheHubRunsTheHooksOfHostAndExternalControlPlanes) {
  startHub({"--hosting-kubeconfig", cluster_->kubeconfig().string()});
  // Shaped as upstream's openshift-crds hook: a helm Job reaching the control plane through the
  // mounted admin-kubeconfig secret's in-cluster key.
  apply(R"(apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: PostCreateHook
metadata:
  name: crds
  labels:
    kflex.kubestellar.io/flavor: openshift
spec:
  templates:
  - apiVersion: batch/v1
    kind: Job
    metadata:
      name: "{{.HookName}}"
    spec:
      template:
        spec:
          containers:
          - name: "{{.HookName}}"
            image: quay.io/kubestellar/helm:3.14.0
            args: [upgrade, --install, "{{.HookName}}", oci://quay.io/kubestellar/openshift-crds, --version, "0.1.0"]
            env:
            - name: KUBECONFIG
              value: "/etc/kube/kubeconfig-incluster"
            volumeMounts:
            - name: kubeconfig
              mountPath: "/etc/kube"
              readOnly: true
          volumes:
          - name: kubeconfig
            secret:
              secretName: admin-kubeconfig
          restartPolicy: Never
      backoffLimit: 1
---
apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: PostCreateHook
metadata:
  name: marker
  annotations:
    kflex.kubestellar.org/target: hosted
spec:
  templates:
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: "{{.HookName}}-{{.ControlPlaneName}}"
    data:
      who: "{{.WHO}}"
  - apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: widgets.example.com
    spec:
      group: example.com
      names: {kind: Widget, plural: widgets, singular: widget}
      scope: Namespaced
      versions:
      - name: v1
        served: true
        storage: true
        schema: {openAPIV3Schema: {type: object}}
)");
  auto r = kflex({"create", "h1", "-t", "host", "-p", "crds", "--timeout", "30s"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << hub_->log();
  ASSERT_TRUE(waitForCondition("h1", "PostCreateHooks", "True/Completed")) << hookMessage("h1") << hub_->log();
  EXPECT_EQ(field("h1", ".status.postCreateHooks.crds"), "true");
  EXPECT_EQ(cluster_->kubectl({"get", "job", "-n", "h1-system", "crds", "-o", "jsonpath={.status.succeeded}"}).out, "1");
  EXPECT_TRUE(waitFor([&] { return field("h1", ".metadata.labels.kflex\\.kubestellar\\.io/flavor") == "openshift"; },
                      10s, "the hook's label on h1"));

  r = kflex({"adopt", "ext", "--adopted-kubeconfig", cluster_->kubeconfig().string(), "-p", "marker", "-e",
             "WHO=adopter", "--timeout", "30s"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << hub_->log();
  ASSERT_TRUE(waitForCondition("ext", "PostCreateHooks", "True/Completed")) << hookMessage("ext") << hub_->log();
  EXPECT_EQ(cluster_->kubectl({"get", "cm", "-n", "ext-system", "marker-ext", "-o", "jsonpath={.data.who}"}).out,
            "adopter");
  // (Complete only once the CRD is Established.)
  EXPECT_EQ(cluster_->kubectl({"get", "crd", "widgets.example.com", "-o",
                               "jsonpath={.status.conditions[?(@.type=='Established')].status}"}).out, "True");

  // A hub restart repeats nothing: status.postCreateHooks says what ran.
  std::string rv = cluster_->kubectl({"get", "job", "-n", "h1-system", "crds", "-o",
                                      "jsonpath={.metadata.resourceVersion}"}).out;
  hub_.reset();
  startHub({"--hosting-kubeconfig", cluster_->kubeconfig().string()});
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(condition("h1", "PostCreateHooks"), "True/Completed") << hookMessage("h1");
  EXPECT_EQ(cluster_->kubectl({"get", "job", "-n", "h1-system", "crds", "-o",
                               "jsonpath={.metadata.resourceVersion}"}).out, rv);
}

TEST_F(Hooks, TheHubRefusesHooksItCannotRun) {
  startHub();
  auto applyBad = [&](const std::string& yaml) {
    fs::path f = dir_.path() / "bad.yaml";
    EXPECT_TRUE(writeFileAtomic(f, yaml, 0644));
    return kubectl(hub_->kubeconfig(), {"apply", "-f", f.string()});
  };
  std::string huge = "apiVersion: tenancy.kflex.kubestellar.org/v1alpha1\nkind: PostCreateHook\nmetadata:\n  name: huge\n"
                     "spec:\n  templates:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: big\n"
                     "    data:\n      blob: \"" + std::string(600 * 1024, 'x') + "\"\n";
  auto r = applyBad(huge);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("spec.templates: Too long"), std::string::npos) << r.err;
  r = applyBad(R"(apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: PostCreateHook
metadata:
  name: where
  annotations:
    kflex.kubestellar.org/target: elsewhere
    kflex.kubestellar.org/timeout: soon
spec:
  templates: []
)");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("supported values: \"hosted\", \"hosting\""), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("must be a positive duration"), std::string::npos) << r.err;
  EXPECT_EQ(kubectl(hub_->kubeconfig(), {"get", "pch", "-o", "name"}).out, "");
  // kflex hook rerun names what a control plane uses.
  // (kubectl: kflex create refuses a hook that does not exist.)
  ASSERT_EQ(kubectl(hub_->kubeconfig(), {"apply", "-f", "-"},
                    "apiVersion: tenancy.kflex.kubestellar.org/v1alpha1\nkind: ControlPlane\nmetadata: {name: c1}\n"
                    "spec: {type: host, postCreateHooks: [{hookName: one}]}\n")
                .exit_code,
            0);
  r = kflex({"hook", "rerun", "c1", "two"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not use PostCreateHook two (it uses: one)"), std::string::npos) << r.err;
}

TEST_F(Hooks, LargeHooksReachTheAgentInOneDelta) {
  startHub();
  // No cluster: the vcluster control planes wait, their hooks stay Pending. Room for all twelve.
  ASSERT_TRUE(writeFileAtomic(dir_.path() / "agent.yaml", "capacity: {cpu: \"16\", memory: 64Gi}\n", 0644));
  startAgent({"--config", (dir_.path() / "agent.yaml").string()});
  std::string cps;
  for (int i = 0; i < 12; ++i) {
    cps += "---\napiVersion: tenancy.kflex.kubestellar.org/v1alpha1\nkind: ControlPlane\nmetadata:\n  name: vc" +
           std::to_string(i) + "\n  annotations: {kflex.kubestellar.org/agent: edge-1}\nspec:\n  type: vcluster\n"
           "  postCreateHook: big\n";
  }
  apply(cps);
  ASSERT_TRUE(waitFor([&] { return hookMessage("vc11").find("big: Missing") != std::string::npos; }, 20s,
                      "the hook reported missing"))
      << field("vc11", ".status") << agent_->log();
  // 450 KiB of templates used by 12 control planes: one delta of about 5.4 MiB.
  // (Server-side apply: kubectl's client-side apply would copy it into an annotation.)
  fs::path big = dir_.path() / "big.yaml";
  ASSERT_TRUE(writeFileAtomic(big, hostedHook("big", "  - apiVersion: v1\n    kind: ConfigMap\n    metadata: {name: big}\n"
                                                     "    data:\n      blob: \"" + std::string(450 * 1024, 'x') + "\"\n"),
                              0644));
  auto created = kubectl(hub_->kubeconfig(), {"apply", "--server-side", "-f", big.string()});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_TRUE(waitFor([&] {
    for (int i = 0; i < 12; ++i) {
      if (hookMessage("vc" + std::to_string(i)).find("big: Pending") == std::string::npos) {
        return false;
      }
    }
    return true;
  }, 30s, "every control plane to have the hook")) << hookMessage("vc0") << agent_->log();
  EXPECT_EQ(agent_->log().find("oversized"), std::string::npos);
  EXPECT_EQ(hub_->log().find("too slow"), std::string::npos);
}

}  // namespace
}  // namespace kflex::test
