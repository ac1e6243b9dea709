// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "shared/model/resource.hpp"

namespace kflex::model {
namespace {

const ResourceType& controlPlane() {
  static Registry r = kflexRegistry();
  return *r.findKind("tenancy.kflex.kubestellar.org/v1alpha1", "ControlPlane");
}

std::vector<FieldError> check(Json obj, UnknownFields unknown = UnknownFields::Reject, Json* out = nullptr) {
  std::vector<FieldError> errors;
  std::vector<std::string> dropped;
  validateAndDefault(controlPlane().schema, obj, "", unknown, errors, dropped);
  controlPlane().validate(obj, errors);
  if (out != nullptr) {
    *out = obj;
  }
  return errors;
}

TEST(Schema, AcceptsUpstreamObjectAndAppliesDefaults) {
  Json out;
  auto errors = check({{"spec", {{"type", "k8s"}, {"backend", "shared"}}}}, UnknownFields::Reject, &out);
  EXPECT_TRUE(errors.empty());
  EXPECT_EQ(out["spec"]["tokenExpirationSeconds"], 31536000);
  EXPECT_EQ(out["spec"]["waitForPostCreateHooks"], false);
}

TEST(Schema, RejectsBadEnumNamingTheField) {
  auto errors = check({{"spec", {{"type", "bogus"}}}});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].field, "spec.type");
  EXPECT_EQ(errors[0].reason, "FieldValueNotSupported");
  EXPECT_NE(errors[0].message.find("\"k3s\""), std::string::npos);
}

TEST(Schema, RejectsOcmWithAClearMessage) {
  auto errors = check({{"spec", {{"type", "ocm"}}}});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].message.find("deprecated"), std::string::npos);
  EXPECT_EQ(errors[0].message,
            "Unsupported value: \"ocm\": type ocm is deprecated upstream and not run by kflex; supported values: "
            "\"k8s\", \"k3s\", \"vcluster\", \"host\", \"external\"");
}

TEST(Schema, RejectsUnknownFieldsOrDropsThemWhenAsked) {
  auto errors = check({{"spec", {{"type", "k3s"}, {"colour", "red"}}}});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].field, "spec.colour");
  Json out;
  EXPECT_TRUE(check({{"spec", {{"type", "k3s"}, {"colour", "red"}}}}, UnknownFields::Drop, &out).empty());
  EXPECT_FALSE(out["spec"].contains("colour"));
}

TEST(Schema, RejectsHookReferenceThatIsNotAString) {
  auto errors = check({{"spec", {{"type", "k3s"}, {"postCreateHooks", {{{"hookName", 7}}}}}}});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].field, "spec.postCreateHooks[0].hookName");
  EXPECT_EQ(errors[0].reason, "FieldValueTypeInvalid");
}

TEST(Schema, RequiresTypeAndHookName) {
  auto errors = check({{"spec", {{"postCreateHooks", {{{"vars", {{"a", "b"}}}}}}}}});
  ASSERT_EQ(errors.size(), 2u);
  std::set<std::string> fields = {errors[0].field, errors[1].field};
  EXPECT_TRUE(fields.count("spec.type"));
  EXPECT_TRUE(fields.count("spec.postCreateHooks[0].hookName"));
}

TEST(Schema, MapValuesAreTyped) {
  auto errors = check({{"spec", {{"type", "k3s"}, {"globalVars", {{"a", 1}}}}}});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].field, "spec.globalVars.a");
}

TEST(Schema, EmbeddedResourcesNeedApiVersionAndKind) {
  Registry r = kflexRegistry();
  const ResourceType* pch = r.find("tenancy.kflex.kubestellar.org", "v1alpha1", "postcreatehooks");
  ASSERT_NE(pch, nullptr);
  Json obj = {{"spec", {{"templates", {{{"kind", "Job"}, {"spec", {{"anything", {{"goes", true}}}}}}}}}}};
  std::vector<FieldError> errors;
  std::vector<std::string> dropped;
  validateAndDefault(pch->schema, obj, "", UnknownFields::Reject, errors, dropped);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].field, "spec.templates[0].apiVersion");
}

TEST(ObjectMeta, NamesMustBeLabels) {
  std::vector<FieldError> errors;
  validateObjectMeta({{"name", "Bad_Name"}}, false, true, errors);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].field, "metadata.name");
  errors.clear();
  validateObjectMeta({{"name", "good-name"}, {"labels", {{"app.kubernetes.io/name", "x"}}}}, false, true, errors);
  EXPECT_TRUE(errors.empty());
  validateObjectMeta({{"name", "a"}, {"labels", {{"bad key!", "x"}}}, {"bogus", 1}}, false, true, errors);
  EXPECT_EQ(errors.size(), 2u);
}

TEST(JsonPath, PrinterColumnExpressions) {
  Json obj = {{"spec", {{"type", "k3s"}}},
              {"status", {{"conditions", {{{"type", "Synced"}, {"status", "True"}}, {{"type", "Ready"}, {"status", "False"}}}}}}};
  EXPECT_EQ(evalJsonPath(obj, ".spec.type"), "k3s");
  EXPECT_EQ(evalJsonPath(obj, ".status.conditions[?(@.type=='Ready')].status"), "False");
  EXPECT_EQ(evalJsonPath(obj, ".status.conditions[?(@.type=='Gone')].status"), nullptr);
  EXPECT_EQ(evalJsonPath(obj, ".metadata.name"), nullptr);
}

}  // namespace
}  // namespace kflex::model
