// SPDX-License-Identifier: Apache-2.0
// deploy/: the manifests render (kubectl kustomize, offline: there is no cluster here), carry
// what running the hub on a cluster needs, and their hub.yaml is accepted by the real binary.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "shared/config/yaml_json.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::test {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

TEST(Deploy, ManifestsRenderAndRunTheHubConfinedWithProbes) {
  if (kubectlPath().empty()) {
    GTEST_SKIP() << "kubectl is not installed";
  }
  auto rendered = run({kubectlPath(), "kustomize", (sourceDir() / "deploy").string()});
  ASSERT_EQ(rendered.exit_code, 0) << rendered.err;
  std::map<std::string, Json> by_kind;
  std::string text = rendered.out;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find("\n---\n", start);
    std::string doc = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    auto obj = config::yamlToJson(doc);
    ASSERT_TRUE(obj) << obj.error().message << "\n" << doc;
    by_kind[obj.value().value("kind", "")] = obj.value();
    start = end == std::string::npos ? text.size() : end + 5;
  }
  ASSERT_EQ(by_kind.size(), 4u) << text;
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
  // The Service's names are in the serving certificate's SANs.
  std::string hub_yaml = by_kind["ConfigMap"]["data"]["hub.yaml"];
  const Json& svc = by_kind["Service"];
  std::string name = svc["metadata"]["name"].get<std::string>() + "." + svc["metadata"]["namespace"].get<std::string>();
  for (const std::string& san : {name, name + ".svc", name + ".svc.cluster.local"}) {
    EXPECT_NE(hub_yaml.find("- " + san + "\n"), std::string::npos) << san << " not a SAN in:\n" << hub_yaml;
  }
  // And the real hub accepts that configuration.
  TempDir dir;
  std::ofstream(dir.path() / "hub.yaml") << hub_yaml;
  auto check = run({(binDir() / "kflex-hub").string(), "serve", "--check-config", "--config",
                    (dir.path() / "hub.yaml").string()});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

}  // namespace
}  // namespace kflex::test
