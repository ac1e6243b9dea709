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

TEST(ManagedFields, CreateGivesEveryFieldToTheCreatorAsTheGeneralPathWould) {
  Json obj = cp("k3s");
  obj["metadata"]["uid"] = "u";
  obj["spec"]["globalVars"] = Json::object();
  obj["spec"]["postCreateHooks"] = Json::array({{{"hookName", "h"}}});
  obj["status"] = {{"observedGeneration", 0}};
  Json created = obj;
  recordUpdate(nullptr, created, "kubectl", "", "t");
  ASSERT_EQ(created["metadata"]["managedFields"].size(), 1u);
  const Json& e = created["metadata"]["managedFields"][0];
  EXPECT_EQ(e["manager"], "kubectl");
  EXPECT_EQ(e["operation"], "Update");
  EXPECT_EQ(e["time"], "t");
  EXPECT_EQ(e["apiVersion"], "tenancy.kflex.kubestellar.org/v1alpha1");
  EXPECT_FALSE(e.contains("subresource"));
  // Identity fields and status are not owned by a main-resource update; empty objects and lists are leaves.
  EXPECT_EQ(e["fieldsV1"].dump(),
            R"({"f:metadata":{"f:labels":{"f:x":{}}},"f:spec":{"f:globalVars":{},"f:postCreateHooks":{},"f:type":{}}})");
  FieldSet expected = leafFields(obj, false);
  EXPECT_EQ(fromFieldsV1(e["fieldsV1"]), expected);

  // Written through the status subresource, status fields count too.
  Json via_status = obj;
  recordUpdate(nullptr, via_status, "agent", "status", "t");
  EXPECT_EQ(fromFieldsV1(via_status["metadata"]["managedFields"][0]["fieldsV1"]), leafFields(obj, true));
  EXPECT_EQ(via_status["metadata"]["managedFields"][0]["subresource"], "status");
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
