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

}  // namespace
}  // namespace kflex::hub
