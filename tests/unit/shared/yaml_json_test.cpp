// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "shared/config/yaml_json.hpp"

namespace kflex::config {
namespace {

TEST(YamlJson, ResolvesCoreSchemaScalars) {
  auto j = yamlToJson("a: 1\nb: true\nc: null\nd: \"1\"\ne: hello\nf: 1.5\ng: ~\nh: '007'\n");
  ASSERT_TRUE(j);
  EXPECT_EQ((*j)["a"], 1);
  EXPECT_EQ((*j)["b"], true);
  EXPECT_TRUE((*j)["c"].is_null());
  EXPECT_EQ((*j)["d"], "1");
  EXPECT_EQ((*j)["e"], "hello");
  EXPECT_EQ((*j)["f"], 1.5);
  EXPECT_TRUE((*j)["g"].is_null());
  EXPECT_EQ((*j)["h"], "007");
}

TEST(YamlJson, ReportsLineOfSyntaxErrors) {
  auto j = yamlToJson("a: 1\nb: [unclosed\n");
  ASSERT_FALSE(j);
  EXPECT_NE(j.error().message.find("line"), std::string::npos);
}

TEST(YamlJson, RejectsDuplicateKeys) {
  auto j = yamlToJson("a: 1\na: 2\n");
  ASSERT_FALSE(j);
  EXPECT_NE(j.error().message.find("already set"), std::string::npos);
}

TEST(YamlJson, RoundTripsThroughYaml) {
  nlohmann::json v = {{"s", "2026-01-01T00:00:00Z"}, {"n", 3}, {"b", false}, {"t", "true"}, {"e", ""},
                      {"list", {1, "two", {{"k", "v"}}}}, {"empty", nlohmann::json::object()},
                      {"multi", "line one\nline two"}, {"colon", "a: b"}, {"nested", {{"x", {{"y", "z"}}}}}};
  auto back = yamlToJson(jsonToYaml(v));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back.value(), v) << jsonToYaml(v);
}

}  // namespace
}  // namespace kflex::config
