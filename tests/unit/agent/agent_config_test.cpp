// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "agent/agent_config.hpp"
#include "shared/common/util.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::agent {
namespace {

TEST(AgentConfig, PathsBecomeAbsoluteOnce) {
  AgentConfig cfg;
  cfg.data_dir = "./agent-data";
  cfg.bin_dir = "bin";
  cfg.programs["k3s"] = "opt/k3s";
  cfg.token_file = "-";  // standard input stays standard input
  cfg.postgres_password_file = "pg/password";
  cfg.cluster_kubeconfig = "";
  makePathsAbsolute(cfg);
  auto cwd = std::filesystem::current_path();
  EXPECT_EQ(cfg.data_dir, cwd / "agent-data");
  EXPECT_EQ(cfg.bin_dir, cwd / "bin");
  EXPECT_EQ(cfg.programs["k3s"], (cwd / "opt" / "k3s").string());
  EXPECT_EQ(cfg.token_file, "-");
  EXPECT_EQ(cfg.postgres_password_file, (cwd / "pg" / "password").string());
  EXPECT_EQ(cfg.cluster_kubeconfig, "");
}

TEST(AgentConfig, ReadsYamlAndListsEveryProblem) {
  test::TempDir dir;
  auto f = dir.path() / "agent.yaml";
  ASSERT_TRUE(writeFileAtomic(f, "hub_urls: [https://hub:6443, https://hub2:6443]\nname: edge-1\nlabels: {zone: eu}\n", 0644));
  AgentConfig cfg;
  ASSERT_TRUE(loadAgentConfig(f, cfg));
  EXPECT_EQ(cfg.hub_urls.size(), 2u);
  EXPECT_EQ(cfg.labels.at("zone"), "eu");
  EXPECT_TRUE(validateAgentConfig(cfg));

  ASSERT_TRUE(writeFileAtomic(f, "hub: http://plain\ncolour: blue\ntoken: nope\nca_cert_hash: md5:1\nname: Bad_Name\n", 0644));
  AgentConfig bad;
  auto r = loadAgentConfig(f, bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("colour"), std::string::npos);
  auto v = validateAgentConfig(bad);
  ASSERT_FALSE(v);
  for (const char* key : {"hub:", "token:", "ca_cert_hash:", "name:"}) {
    EXPECT_NE(v.error().message.find(key), std::string::npos) << key << "\n" << v.error().message;
  }
  std::map<std::string, std::string> labels;
  EXPECT_TRUE(parseLabels("a=b, c=d", labels));
  EXPECT_EQ(labels.at("c"), "d");
  EXPECT_FALSE(parseLabels("novalue", labels));
}

}  // namespace
}  // namespace kflex::agent
