// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "shared/model/selector.hpp"

namespace kflex::model {
namespace {

TEST(LabelSelector, AllOperators) {
  std::map<std::string, std::string> l = {{"env", "dev"}, {"tier", "edge"}};
  auto m = [&](const std::string& s) { return LabelSelector::parse(s).value().matches(l); };
  EXPECT_TRUE(m(""));
  EXPECT_TRUE(m("env=dev"));
  EXPECT_TRUE(m("env==dev,tier=edge"));
  EXPECT_FALSE(m("env=prod"));
  EXPECT_TRUE(m("env!=prod"));
  EXPECT_TRUE(m("env in (dev, prod)"));
  EXPECT_FALSE(m("env notin (dev)"));
  EXPECT_TRUE(m("tier"));
  EXPECT_FALSE(m("!tier"));
  EXPECT_TRUE(m("!missing"));
  EXPECT_FALSE(LabelSelector::parse("env in dev"));
  EXPECT_FALSE(LabelSelector::parse("a,,b"));
  EXPECT_FALSE(LabelSelector::parse("bad key=1"));
}

TEST(FieldSelector, MetadataNameOnly) {
  auto s = FieldSelector::parse("metadata.name=cp1");
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->matches("cp1"));
  EXPECT_FALSE(s->matches("cp2"));
  EXPECT_TRUE(FieldSelector::parse("metadata.name!=cp1")->matches("cp2"));
  auto bad = FieldSelector::parse("spec.type=k3s");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("not supported"), std::string::npos);
}

}  // namespace
}  // namespace kflex::model
