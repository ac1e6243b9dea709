// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "hub/app/hub_config.hpp"
#include "shared/common/util.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::hub {
namespace {

TEST(HubConfig, ReadsKnownKeysAndListsEveryProblem) {
  test::TempDir dir;
  auto f = dir.path() / "hub.yaml";
  ASSERT_TRUE(writeFileAtomic(f, "listen: 127.0.0.1:7443\ntls_sans: [hub.example.com]\ncolour: blue\nmax_connections: -1\n", 0644));
  HubConfig cfg;
  auto r = loadHubConfig(f, cfg);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("colour (" + f.string() + ":3): unknown setting"), std::string::npos);
  EXPECT_NE(r.error().message.find("max_connections"), std::string::npos);
}

TEST(HubConfig, PathsBecomeAbsoluteOnce) {
  HubConfig cfg;
  cfg.data_dir = "./hub-data/../hub-data";
  cfg.hosting_kubeconfig = "kc/host.yaml";
  makePathsAbsolute(cfg);
  EXPECT_EQ(cfg.data_dir, std::filesystem::current_path() / "hub-data");
  EXPECT_EQ(cfg.hosting_kubeconfig, std::filesystem::current_path() / "kc" / "host.yaml");
  HubConfig none;
  none.hosting_kubeconfig.clear();
  makePathsAbsolute(none);
  EXPECT_TRUE(none.hosting_kubeconfig.empty());  // not configured stays not configured
  EXPECT_EQ(none.data_dir, "/var/lib/kflex-hub");
}

TEST(HubConfig, ValidatesListen) {
  HubConfig cfg;
  EXPECT_TRUE(validateHubConfig(cfg));
  cfg.listen = "[::1]:0";
  EXPECT_TRUE(validateHubConfig(cfg));
  EXPECT_EQ(cfg.host(), "::1");
  cfg.listen = "localhost:6443";
  EXPECT_FALSE(validateHubConfig(cfg));
  cfg.listen = "127.0.0.1:99999";
  EXPECT_FALSE(validateHubConfig(cfg));
  cfg.listen = "127.0.0.1:6443";
  cfg.tls_sans = {"bad name!"};
  EXPECT_FALSE(validateHubConfig(cfg));
}

TEST(HubConfig, AgentStatusLimits) {
  test::TempDir dir;
  auto f = dir.path() / "hub.yaml";
  ASSERT_TRUE(writeFileAtomic(
      f, "agent_status_interval_ms: 250\nagent_status_writes_per_second: 4\nagent_status_burst: 8\n", 0644));
  HubConfig cfg;
  ASSERT_TRUE(loadHubConfig(f, cfg));
  EXPECT_EQ(cfg.agent_status_interval, std::chrono::milliseconds(250));
  EXPECT_EQ(cfg.agent_status_writes_per_second, 4u);
  EXPECT_EQ(cfg.agent_status_burst, 8u);
  EXPECT_TRUE(validateHubConfig(cfg));
  // A burst that alone could push every retained event out, and no writes at all, are refused.
  cfg.event_retention = 100;
  cfg.agent_status_burst = 51;
  cfg.agent_status_writes_per_second = 0;
  auto r = validateHubConfig(cfg);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("agent_status_burst: must be from 1 to half of event_retention (50)"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("agent_status_writes_per_second: must be at least 1"), std::string::npos);
}

}  // namespace
}  // namespace kflex::hub
