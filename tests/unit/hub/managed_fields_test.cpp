// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "hub/api/managed_fields.hpp"

namespace kflex::hub {
namespace {

Json cp(const std::string& type) {
  return {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "ControlPlane"},
          {"metadata", {{"name", "a"}, {"labels", {{"x", "1"}}}}}, {"spec", {{"type", type}}}};
}

TEST(ManagedFields, FieldsV1RoundTrip) {
  FieldSet s = leafFields(cp("k3s"), false);
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(fromFieldsV1(toFieldsV1(s)), s);
  EXPECT_EQ(toFieldsV1(s).dump(), R"({"f:metadata":{"f:labels":{"f:x":{}}},"f:spec":{"f:type":{}}})");
}

TEST(ManagedFields, ApplyTakesOwnershipAndDetectsConflicts) {
  Json result;
  ASSERT_TRUE(applyConfig(nullptr, cp("k3s"), "alice", false, "", "t", result).empty());
  // bob changes spec.type with an update: he now owns it.
  Json updated = result;
  updated["spec"]["type"] = "k8s";
  recordUpdate(&result, updated, "bob", "", "t");
  Json again;
  auto conflicts = applyConfig(&updated, cp("k3s"), "alice", false, "", "t", again);
  ASSERT_EQ(conflicts.size(), 1u);
  EXPECT_EQ(conflicts[0].manager, "bob");
  EXPECT_EQ(pathString(conflicts[0].path), ".spec.type");
  // Applying the live value is no conflict; forcing takes the field.
  EXPECT_TRUE(applyConfig(&updated, cp("k8s"), "alice", false, "", "t", again).empty());
  EXPECT_EQ(applyConfig(&updated, cp("k3s"), "alice", true, "", "t", again).size(), 1u);
  EXPECT_EQ(again["spec"]["type"], "k3s");
}

TEST(ManagedFields, ApplyRemovesFieldsNoLongerApplied) {
  Json first;
  Json with_label = cp("k3s");
  with_label["metadata"]["labels"]["y"] = "2";
  applyConfig(nullptr, with_label, "alice", false, "", "t", first);
  Json second;
  ASSERT_TRUE(applyConfig(&first, cp("k3s"), "alice", false, "", "t", second).empty());
  EXPECT_FALSE(second["metadata"]["labels"].contains("y"));
  EXPECT_EQ(second["metadata"]["labels"]["x"], "1");
}

}  // namespace
}  // namespace kflex::hub
