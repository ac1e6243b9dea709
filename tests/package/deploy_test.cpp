// SPDX-License-Identifier: Apache-2.0
// deploy/: the manifests render (kubectl kustomize, offline: there is no cluster here), carry
// what running the hub on a cluster needs, and their hub.yaml is accepted by the real binary.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "shared/config/yaml_json.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// The objects `kubectl kustomize DIR` renders, by kind.
std::map<std::string, Json> render(const fs::path& dir) {
  std::map<std::string, Json> by_kind;
  auto rendered = run({kubectlPath(), "kustomize", dir.string()});
  EXPECT_EQ(rendered.exit_code, 0) << rendered.err;
  std::string text = rendered.out;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find("\n---\n", start);
    std::string doc = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    auto obj = config::yamlToJson(doc);
    EXPECT_TRUE(obj) << obj.error().message << "\n" << doc;
    if (obj) {
      by_kind[obj.value().value("kind", "")] = obj.value();
    }
    start = end == std::string::npos ? text.size() : end + 5;
  }
  return by_kind;
}

// The Service's names are in the serving certificate's SANs of the ConfigMap's hub.yaml, and the
// real hub accepts that configuration (with `extra` arguments).
void expectServedConfig(std::map<std::string, Json>& by_kind, const std::vector<std::string>& extra) {
  std::string hub_yaml = by_kind["ConfigMap"]["data"]["hub.yaml"];
  const Json& svc = by_kind["Service"];
  std::string name = svc["metadata"]["name"].get<std::string>() + "." + svc["metadata"]["namespace"].get<std::string>();
  for (const std::string& san : {name, name + ".svc", name + ".svc.cluster.local"}) {
    EXPECT_NE(hub_yaml.find("- " + san + "\n"), std::string::npos) << san << " not a SAN in:\n" << hub_yaml;
  }
  TempDir dir;
  std::ofstream(dir.path() / "hub.yaml") << hub_yaml;
  std::vector<std::string> argv = {(binDir() / "kflex-hub").string(), "serve", "--check-config", "--config",
                                   (dir.path() / "hub.yaml").string()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto check = run(argv);
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

TEST(Deploy, ManifestsRenderAndRunTheHubConfinedWithProbes) {
  if (kubectlPath().empty()) {
    GTEST_SKIP() << "kubectl is not installed";
  }
  auto by_kind = render(sourceDir() / "deploy");
  ASSERT_EQ(by_kind.size(), 4u);
  const Json& sts = by_kind["StatefulSet"];
  const Json& pod = sts["spec"]["template"]["spec"];
  const Json& c = pod["containers"][0];
  EXPECT_EQ(sts["spec"]["replicas"], 1);
  EXPECT_EQ(pod["securityContext"]["runAsNonRoot"], true);
  EXPECT_EQ(c["securityContext"]["allowPrivilegeEscalation"], false);
  EXPECT_EQ(c["securityContext"]["readOnlyRootFilesystem"], true);
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"], "/readyz");
  EXPECT_EQ(c["livenessProbe"]["httpGet"]["path"], "/livez");
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
  EXPECT_TRUE(c["resources"].contains("requests"));
  EXPECT_EQ(sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "data");
  EXPECT_EQ(c["volumeMounts"][0]["mountPath"], "/var/lib/kflex-hub");
  expectServedConfig(by_kind, {});
}

// Three replicas on PostgreSQL: a Deployment that survives a node (anti-affinity) and a drain
// (disruption budget), the datastore's URI, password and secrets key from a Secret.
TEST(Deploy, TheReplicasVariantRunsThreeSpreadReplicasOnTheDatastoreFromASecret) {
  if (kubectlPath().empty()) {
    GTEST_SKIP() << "kubectl is not installed";
  }
  auto by_kind = render(sourceDir() / "deploy" / "replicas");
  ASSERT_EQ(by_kind.size(), 5u);
  const Json& deploy = by_kind["Deployment"];
  const Json& pod = deploy["spec"]["template"]["spec"];
  const Json& c = pod["containers"][0];
  EXPECT_EQ(deploy["spec"]["replicas"], 3);
  EXPECT_EQ(by_kind["PodDisruptionBudget"]["spec"]["minAvailable"], 2);
  EXPECT_EQ(by_kind["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
            deploy["spec"]["selector"]["matchLabels"]);
  const Json& anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
  EXPECT_EQ(anti["topologyKey"], "kubernetes.io/hostname");
  EXPECT_EQ(pod["securityContext"]["runAsNonRoot"], true);
  EXPECT_EQ(c["securityContext"]["readOnlyRootFilesystem"], true);
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"], "/readyz");
  // The URI from the Secret, as an argument; the password and the key as files from it.
  const Json& args = c["args"];
  auto at = std::find(args.begin(), args.end(), "--datastore");
  ASSERT_NE(at, args.end());
  EXPECT_EQ(*(at + 1), "$(KFLEX_DATASTORE)");
  EXPECT_EQ(c["env"][0]["valueFrom"]["secretKeyRef"]["name"], "kflex-hub-datastore");
  std::string secret_dir;
  for (const auto& v : pod["volumes"]) {
    if (v.contains("secret")) {
      EXPECT_EQ(v["secret"]["secretName"], "kflex-hub-datastore");
      for (const auto& m : c["volumeMounts"]) {
        if (m["name"] == v["name"]) {
          secret_dir = m["mountPath"];
        }
      }
    }
  }
  std::string hub_yaml = by_kind["ConfigMap"]["data"]["hub.yaml"];
  ASSERT_FALSE(secret_dir.empty());
  EXPECT_NE(hub_yaml.find("secrets_key_file: " + secret_dir + "/secrets.key"), std::string::npos) << hub_yaml;
  EXPECT_NE(hub_yaml.find("datastore_password_file: " + secret_dir + "/password"), std::string::npos) << hub_yaml;
  expectServedConfig(by_kind, {"--datastore", "postgres://kflex@db.example:5432/kflex?sslmode=verify-full"});
}

}  // namespace
}  // namespace kflex::test
