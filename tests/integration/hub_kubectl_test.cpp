// SPDX-License-Identifier: Apache-2.0
// The real kflex-hub binary driven by real clients: kubectl (every version the image ships) and
// the official Python client.
#include <gtest/gtest.h>

#include <regex>

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <thread>

#include <nlohmann/json.hpp>

#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/tls/pki.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

using Json = nlohmann::json;

constexpr const char* kCp = R"(apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: ControlPlane
metadata:
  name: cp1
  labels:
    env: dev
spec:
  type: k3s
  backend: shared
  postCreateHooks:
  - hookName: openshift-crds
    vars:
      a: b
)";

class HubKubectl : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kubectlPath().empty()) {
      GTEST_SKIP() << "kubectl is not installed";
    }
    hub_ = std::make_unique<HubProcess>(dir_.path() / "data");
    ASSERT_TRUE(hub_->ok()) << hub_->log();
  }
  CommandResult k(const std::vector<std::string>& args, const std::string& input = "") {
    return kubectl(hub_->kubeconfig(), args, input);
  }
  TempDir dir_;
  std::unique_ptr<HubProcess> hub_;
};

TEST_F(HubKubectl, ApplyGetPatchWatchDeleteRestart) {
  auto r = k({"apply", "-f", "-"}, kCp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("controlplane.tenancy.kflex.kubestellar.org/cp1 created"), std::string::npos);
  r = k({"apply", "-f", "-"}, kCp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("unchanged"), std::string::npos) << r.out;

  r = k({"get", "cp", "cp1", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json obj = Json::parse(r.out);
  EXPECT_EQ(obj["spec"]["type"], "k3s");
  EXPECT_EQ(obj["spec"]["tokenExpirationSeconds"], 31536000);
  EXPECT_EQ(obj["metadata"]["generation"], 1);
  std::string uid = obj["metadata"]["uid"];

  r = k({"get", "controlplanes"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("NAME"), std::string::npos);
  EXPECT_NE(r.out.find("SYNCED"), std::string::npos);
  EXPECT_NE(r.out.find("TYPE"), std::string::npos);
  EXPECT_NE(r.out.find("k3s"), std::string::npos);
  // SYNCED and READY are never blank: with no agent to place it on, both say why not.
  EXPECT_TRUE(std::regex_search(r.out, std::regex("cp1 +False +False +k3s"))) << r.out;
  r = k({"get", "cp", "cp1", "-o",
         "jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason} {end}"});
  EXPECT_EQ(r.out, "Scheduled=False/Unschedulable Synced=False/Unschedulable Ready=False/Unschedulable ") << r.err;

  EXPECT_NE(k({"get", "cp", "-l", "env=dev", "-o", "name"}).out.find("cp1"), std::string::npos);
  r = k({"get", "cp", "-l", "env=prod", "-o", "name"});
  EXPECT_EQ(r.out, "");

  // Patch spec: generation moves.
  r = k({"patch", "cp", "cp1", "--type", "merge", "-p", R"({"spec":{"type":"k8s"}})"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(k({"get", "cp", "cp1", "-o", "jsonpath={.metadata.generation}"}).out, "2");

  // Status through the main resource is ignored; through /status it sticks.
  k({"patch", "cp", "cp1", "--type", "merge", "-p", R"({"status":{"observedGeneration":9,"conditions":[]}})"});
  // (The placement controller may have written Scheduled=False: no agent is enrolled here.)
  EXPECT_NE(k({"get", "cp", "cp1", "-o", "jsonpath={.status.observedGeneration}"}).out, "9");
  r = k({"patch", "cp", "cp1", "--subresource", "status", "--type", "merge", "-p",
         R"({"status":{"observedGeneration":2,"conditions":[{"type":"Ready","status":"True","reason":"Available","message":"","lastTransitionTime":"2026-01-01T00:00:00Z","lastUpdateTime":"2026-01-01T00:00:00Z"}]}})"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(k({"get", "cp", "cp1", "-o", "jsonpath={.status.conditions[0].reason}"}).out, "Available");

  // Watch: a change made while kubectl watches arrives.
  std::string rv = k({"get", "cp", "cp1", "-o", "jsonpath={.metadata.resourceVersion}"}).out;
  CommandResult watched;
  std::thread watcher([&] {
    watched = kubectl(hub_->kubeconfig(), {"get", "cp", "--watch-only", "-o", "json", "--output-watch-events",
                                           "--request-timeout=5s"}, "", std::chrono::seconds(8));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  k({"label", "cp", "cp1", "watched=yes"});
  watcher.join();
  EXPECT_NE(watched.out.find("\"MODIFIED\""), std::string::npos) << watched.out << watched.err;
  EXPECT_NE(watched.out.find("\"watched\":\"yes\""), std::string::npos) << watched.out;

  // Stale update: 409.
  Json stale = Json::parse(k({"get", "cp", "cp1", "-o", "json"}).out);
  stale["metadata"]["resourceVersion"] = rv;
  r = k({"replace", "-f", "-"}, stale.dump());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("the object has been modified"), std::string::npos) << r.err;

  // Delete with a finalizer waits for it (someone else's: kflex's own is released at once for a
  // control plane that no agent runs).
  k({"patch", "cp", "cp1", "--type", "merge", "-p", R"({"metadata":{"finalizers":["example.com/hold"]}})"});
  r = k({"delete", "cp", "cp1", "--wait=false"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(k({"get", "cp", "cp1", "-o", "jsonpath={.metadata.deletionTimestamp}"}).out, "");

  // Restart: everything is still there.
  ASSERT_EQ(hub_->stop(), 0);
  EXPECT_NE(hub_->log().find("msg=stopped"), std::string::npos);
  hub_ = std::make_unique<HubProcess>(dir_.path() / "data");
  ASSERT_TRUE(hub_->ok()) << hub_->log();
  obj = Json::parse(k({"get", "cp", "cp1", "-o", "json"}).out);
  EXPECT_EQ(obj["metadata"]["uid"], uid);
  EXPECT_EQ(obj["spec"]["type"], "k8s");
  EXPECT_TRUE(obj["metadata"].contains("deletionTimestamp"));

  r = k({"patch", "cp", "cp1", "--type", "json", "-p", R"([{"op":"remove","path":"/metadata/finalizers"}])"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = k({"get", "cp", "cp1"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("NotFound"), std::string::npos) << r.err;
}

TEST_F(HubKubectl, ServerSideApplyAndExplain) {
  auto r = k({"apply", "--server-side", "-f", "-"}, kCp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("serverside-applied"), std::string::npos);
  k({"patch", "cp", "cp1", "--type", "merge", "-p", R"({"spec":{"type":"vcluster"}})"});
  r = k({"apply", "--server-side", "-f", "-"}, kCp);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("conflict"), std::string::npos) << r.err;
  r = k({"apply", "--server-side", "--force-conflicts", "-f", "-"}, kCp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(k({"get", "cp", "cp1", "-o", "jsonpath={.spec.type}"}).out, "k3s");
  r = k({"explain", "controlplane.spec.type"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("k3s"), std::string::npos) << r.out;
  r = k({"apply", "--dry-run=server", "-f", "-"}, std::string(kCp).replace(std::string(kCp).find("cp1"), 3, "dry"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(k({"get", "cp", "dry"}).exit_code, 0);
}

// `kubectl apply --server-side` on an object made by client-side apply hands the fields over (a
// JSON patch testing the resourceVersion and replacing managedFields): no warning, and later
// server-side applies change those fields without conflicts.
TEST_F(HubKubectl, ServerSideApplyTakesOverFromClientSideApply) {
  auto r = k({"apply", "-f", "-"}, kCp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = k({"apply", "--server-side", "-f", "-"}, kCp);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("Warning"), std::string::npos) << r.err;
  std::string managers =
      k({"get", "cp", "cp1", "-o", "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation} {end}"}).out;
  EXPECT_NE(managers.find("kubectl/Apply"), std::string::npos) << managers;
  EXPECT_EQ(managers.find("kubectl-client-side-apply"), std::string::npos) << managers;
  std::string changed = kCp;
  changed.replace(changed.find("env: dev"), 8, "env: prod");
  r = k({"apply", "--server-side", "-f", "-"}, changed);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(k({"get", "cp", "cp1", "-o", "jsonpath={.metadata.labels.env}"}).out, "prod");
}

TEST_F(HubKubectl, InvalidObjectsAreRejectedNamingTheField) {
  std::string bad = R"(apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: ControlPlane
metadata:
  name: Bad_Name
spec:
  type: nope
  colour: red
  postCreateHooks:
  - hookName: 5
)";
  auto r = k({"apply", "-f", "-"}, bad);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("metadata.name"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("spec.type: Unsupported value: \"nope\""), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("spec.colour"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("spec.postCreateHooks[0].hookName"), std::string::npos) << r.err;
  // --validate=warn stores the object without the unknown field and says so.
  std::string warn = R"(apiVersion: tenancy.kflex.kubestellar.org/v1alpha1
kind: ControlPlane
metadata:
  name: warned
spec:
  type: k3s
  colour: red
)";
  r = k({"create", "--validate=warn", "-f", "-"}, warn);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("unknown field \"spec.colour\""), std::string::npos) << r.err;
  EXPECT_EQ(k({"get", "cp", "warned", "-o", "jsonpath={.spec.colour}"}).out, "");
  r = k({"create", "-f", "-"}, "{\"apiVersion\": ");
  EXPECT_NE(r.exit_code, 0);
  // Oversized bodies: 413, and the hub keeps serving.
  std::string big = "{\"apiVersion\":\"tenancy.kflex.kubestellar.org/v1alpha1\",\"kind\":\"ControlPlane\","
                    "\"metadata\":{\"name\":\"big\",\"annotations\":{\"a\":\"" + std::string(4 << 20, 'x') +
                    "\"}},\"spec\":{\"type\":\"k3s\"}}";
  r = k({"create", "-f", "-"}, big);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("RequestEntityTooLarge"), std::string::npos) << r.err;
  EXPECT_EQ(k({"get", "cp", "-o", "name"}).exit_code, 0);
}

// `kubectl get -o yaml` of many objects writes a `kind: List`; kubectl validates a List against
// /openapi/v2 in protobuf. A backup made that way applies back, and a bad item is caught.
TEST_F(HubKubectl, ListsApplyAndABackupRestores) {
  std::string list = "apiVersion: v1\nkind: List\nitems:\n";
  for (const char* name : {"l1", "l2", "l3"}) {
    list += std::string("- apiVersion: tenancy.kflex.kubestellar.org/v1alpha1\n  kind: ControlPlane\n  metadata:\n") +
            "    name: " + name + "\n    labels:\n      set: l\n  spec:\n    type: k3s\n";
  }
  auto r = k({"apply", "-f", "-"}, list);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("l3 created"), std::string::npos) << r.out;

  std::string bad = list;
  bad.replace(bad.rfind("type: k3s"), 9, "type: k3s\n    bogus: 1");
  r = k({"apply", "-f", "-"}, bad);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("unknown field \"bogus\""), std::string::npos) << r.err;

  auto backup = k({"get", "cp", "-l", "set=l", "-o", "yaml"});
  ASSERT_EQ(backup.exit_code, 0) << backup.err;
  EXPECT_NE(backup.out.find("kind: List"), std::string::npos);
  ASSERT_EQ(k({"delete", "cp", "-l", "set=l"}).exit_code, 0);
  r = k({"apply", "-f", "-"}, backup.out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto names = k({"get", "cp", "-l", "set=l", "-o", "jsonpath={.items[*].metadata.name}"});
  EXPECT_EQ(names.out, "l1 l2 l3");
}

TEST_F(HubKubectl, RequestsWithoutAValidClientCertificateAreRefused) {
  auto kc = config::Kubeconfig::load(hub_->kubeconfig());
  ASSERT_TRUE(kc);
  auto access = kc->access();
  ASSERT_TRUE(access);
  // No certificate at all, only a token the hub does not know.
  config::Kubeconfig anon;
  anon.setContext("x", "x", "x", {{"server", access->server}, {"certificate-authority-data", base64Encode(access->ca_pem)}},
                  {{"token", "abcdef.0123456789abcdef"}});
  anon.setCurrentContext("x");
  ASSERT_TRUE(anon.save(dir_.path() / "anon.kubeconfig"));
  // kubectl words a 401 as "You must be logged in to the server (...)".
  auto r = kubectl(dir_.path() / "anon.kubeconfig", {"get", "cp"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("You must be logged in to the server"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("abcdef.0123456789abcdef"), std::string::npos);
  // A certificate from another CA, even one claiming system:masters.
  SystemClock clock;
  auto ca = tls::createCa({.common_name = "evil-ca"}, clock);
  auto cert = tls::issueCertificate(ca.value(), {.common_name = "mallory", .organizations = {"system:masters"},
                                                 .client_auth = true}, clock);
  config::Kubeconfig foreign;
  foreign.setContext("x", "x", "x", {{"server", access->server}, {"certificate-authority-data", base64Encode(access->ca_pem)}},
                     {{"client-certificate-data", base64Encode(cert->cert_pem)},
                      {"client-key-data", base64Encode(cert->key_pem)}});
  foreign.setCurrentContext("x");
  ASSERT_TRUE(foreign.save(dir_.path() / "foreign.kubeconfig"));
  r = kubectl(dir_.path() / "foreign.kubeconfig", {"get", "cp"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("You must be logged in to the server"), std::string::npos) << r.err;
  EXPECT_EQ(k({"get", "cp"}).exit_code, 0);
}

// Every kubectl the image ships, each with a fresh discovery cache: kubectl 1.27-1.29 ask for
// apidiscovery.k8s.io/v2beta1 and find no resource at all in a v2 answer; newer ones ask for v2.
TEST_F(HubKubectl, EveryShippedKubectlVersionFindsAndManagesControlPlanes) {
  std::vector<std::string> binaries = versionedKubectls();
  if (binaries.empty()) {
    GTEST_SKIP() << "no versioned kubectl (kubectl.1.*) beside the real path of " << kubectlPath();
  }
  binaries.push_back(kubectlPath());
  for (const auto& binary : binaries) {
    SCOPED_TRACE(binary);
    std::string version = std::filesystem::path(binary).filename().string();
    std::string name = "cp-" + (version == "kubectl" ? std::string("default") : version.substr(8));
    std::replace(name.begin(), name.end(), '.', '-');
    TempDir cache;
    KubectlOptions which{.binary = binary, .cache_dir = cache.path()};
    auto run = [&](const std::vector<std::string>& args, const std::string& input = "") {
      return kubectl(which, hub_->kubeconfig(), args, input);
    };

    auto r = run({"get", "cp"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err.find("doesn't have a resource type"), std::string::npos) << r.err;

    std::string manifest = kCp;
    manifest.replace(manifest.find("name: cp1"), 9, "name: " + name);
    r = run({"apply", "-f", "-"}, manifest);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("controlplane.tenancy.kflex.kubestellar.org/" + name + " created"),
              std::string::npos)
        << r.out << r.err;

    r = run({"get", "cp", name, "-o", "json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    Json obj = Json::parse(r.out, nullptr, false);
    EXPECT_TRUE(obj.is_object()) << r.out;
    if (obj.is_object()) {
      EXPECT_EQ(obj["kind"], "ControlPlane");
      EXPECT_EQ(obj["metadata"]["name"], name);
      EXPECT_EQ(obj["spec"]["type"], "k3s");
    }

    r = run({"delete", "cp", name});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("\"" + name + "\" deleted"), std::string::npos) << r.out << r.err;
    EXPECT_NE(k({"get", "cp", name}).exit_code, 0)
        << "still there after " << binary << " deleted it";
  }
}

// The official Python client (Debian's python3-kubernetes), run by
// tests/integration/python_client.py with the system python3: CustomObjectsApi
// list/create/get/delete, the dynamic client resolving kind ControlPlane by discovery, and /api and
// /apis asked through its transport as kubectl asks (Content-Type, apiVersion and Vary as they
// arrive over HTTPS).
TEST(HubPythonClient, CustomObjectsAndDynamicDiscovery) {
  const char* python = "/usr/bin/python3";
  if (::access(python, X_OK) != 0) {
    GTEST_SKIP() << python << " is not installed";
  }
  auto probe = run({python, "-c", "import kubernetes"});
  if (probe.exit_code != 0) {
    GTEST_SKIP() << python
                 << " cannot import kubernetes (Debian package python3-kubernetes): " << probe.err;
  }
  TempDir dir;
  HubProcess hub(dir.path() / "data");
  ASSERT_TRUE(hub.ok()) << hub.log();
  TempDir cache;
  auto r = run({python, (sourceDir() / "tests/integration/python_client.py").string(),
                hub.kubeconfig().string(), cache.path().string(), "from-python"},
               {"HOME=" + dir.path().string()}, "", std::chrono::seconds(120));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  for (const char* step : {"ok: list", "ok: create", "ok: get", "ok: create again is a conflict",
                           "ok: discover kind ControlPlane", "ok: dynamic get",
                           "ok: dynamic list by label", "ok: negotiated discovery", "ok: delete"}) {
    EXPECT_NE(r.out.find(std::string(step) + "\n"), std::string::npos) << step << "\n"
                                                                       << r.out << r.err;
  }
}

}  // namespace
}  // namespace kflex::test
