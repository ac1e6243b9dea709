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

TEST(YamlJson, RefusesExcessiveAliasing) {
  // Each level refers to the one before nine times: 9^9 strings from a few hundred bytes.
  std::string y = "a: &a [x,x,x,x,x,x,x,x,x]\n";
  std::string prev = "a";
  for (char c = 'b'; c <= 'j'; ++c) {
    y += std::string(1, c) + ": &" + c + " [*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + ",*" +
         prev + ",*" + prev + ",*" + prev + ",*" + prev + "]\n";
    prev = std::string(1, c);
  }
  auto r = config::yamlToJson(y);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("excessive aliasing"), std::string::npos) << r.error().message;
  // One long string referred to many times is refused as well.
  std::string big = "a: &a " + std::string(100000, 'x') + "\nb: [" ;
  for (int i = 0; i < 100; ++i) {
    big += (i ? ",*a" : "*a");
  }
  EXPECT_FALSE(config::yamlToJson(big + "]\n"));
  // A modest use of anchors is fine.
  auto ok = config::yamlToJson("d: &d {cpu: 1, mem: 2}\nx: *d\ny: *d\n");
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ((*ok)["y"]["mem"], 2);
}

TEST(YamlJson, RefusesTextThatIsNotUtf8AndNumbersOutOfRange) {
  auto bad = config::yamlToJson("a: \"\xff\"\n");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("UTF-8"), std::string::npos);
  EXPECT_FALSE(config::yamlToJson("\xff: a\n"));
  auto huge = config::yamlToJson("a: 1e400\n");
  ASSERT_FALSE(huge);
  EXPECT_NE(huge.error().message.find("out of range"), std::string::npos);
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
