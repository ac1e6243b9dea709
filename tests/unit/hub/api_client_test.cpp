// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "hub/api/api_client.hpp"
#include "hub/api/errors.hpp"
#include "tests/unit/hub/api_call.hpp"

namespace kflex::hub {
namespace {

template <class T>
T run(net::awaitable<T> call) {
  return runToEnd(std::move(call));
}

class ApiClientTest : public ApiFixture {
 protected:
  void SetUp() override {
    ApiFixture::SetUp();
    cps_ = registry_.find("tenancy.kflex.kubestellar.org", "v1alpha1", "controlplanes");
    ASSERT_NE(cps_, nullptr);
  }
  ApiClient& client() { return *api_; }
  static Json controlPlane(const std::string& name, const std::string& type = "k3s") {
    return {{"metadata", {{"name", name}}}, {"spec", {{"type", type}}}};
  }

  const model::ResourceType* cps_ = nullptr;
};

TEST_F(ApiClientTest, CreateThenGetAndASecondCreateIsAConflict) {
  Result<Json> made = run(client().create(*cps_, controlPlane("cp1")));
  ASSERT_TRUE(made) << made.error().message;
  EXPECT_EQ((*made)["metadata"]["generation"], 1);
  EXPECT_EQ((*made)["kind"], "ControlPlane");
  Result<Json> got = client().get(*cps_, "", "cp1");
  ASSERT_TRUE(got);
  EXPECT_EQ((*got)["metadata"]["uid"], (*made)["metadata"]["uid"]);
  Result<Json> again = run(client().create(*cps_, controlPlane("cp1")));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::Conflict);
  EXPECT_NE(again.error().message.find("already exists"), std::string::npos);
}

TEST_F(ApiClientTest, WhatIsMissingIsNotFound) {
  Result<Json> got = client().get(*cps_, "", "nope");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, Errc::NotFound);
  Result<void> changed = run(client().changeStatus(*cps_, "nope", [](Json&) { return true; }));
  ASSERT_FALSE(changed);
  EXPECT_EQ(changed.error().code, Errc::NotFound);
  Result<Json> patched = run(client().mergePatch(*cps_, "", "nope", Json{{"metadata", {{"labels", {{"a", "b"}}}}}}));
  ASSERT_FALSE(patched);
  EXPECT_EQ(patched.error().code, Errc::NotFound);
  Result<void> removed = run(client().remove(*cps_, "", "nope"));
  ASSERT_FALSE(removed);
  EXPECT_EQ(removed.error().code, Errc::NotFound);
  EXPECT_TRUE(run(client().removeFinalizer(*cps_, "nope", "x")));  // already gone
}

TEST_F(ApiClientTest, AnObjectBreakingTheRulesIsInvalid) {
  Json bad = controlPlane("cp1");
  bad["spec"]["type"] = 42;
  Result<Json> made = run(client().create(*cps_, bad));
  ASSERT_FALSE(made);
  EXPECT_EQ(made.error().code, Errc::Invalid);
  EXPECT_NE(made.error().message.find("is invalid"), std::string::npos);
  Result<Json> wrong_kind = run(client().create(*cps_, Json{{"kind", "Agent"}, {"metadata", {{"name", "x"}}}}));
  ASSERT_FALSE(wrong_kind);
  EXPECT_EQ(wrong_kind.error().code, Errc::Invalid);
  EXPECT_FALSE(client().get(*cps_, "", "cp1"));
}

TEST_F(ApiClientTest, ChangeStatusWritesOnlyStatusAndAStalePatchIsAConflict) {
  ASSERT_TRUE(run(client().create(*cps_, controlPlane("cp1"))));
  Result<void> changed = run(client().changeStatus(*cps_, "cp1", [](Json& obj) {
    obj["status"]["agent"] = "edge-1";
    obj["status"]["conditions"] = Json::array();
    obj["status"]["observedGeneration"] = 1;
    obj["spec"]["type"] = "k8s";  // not a status write's to change
    return true;
  }));
  ASSERT_TRUE(changed) << changed.error().message;
  Json now = client().get(*cps_, "", "cp1").value();
  EXPECT_EQ(now["status"]["agent"], "edge-1");
  EXPECT_EQ(now["spec"]["type"], "k3s");
  EXPECT_TRUE(run(client().changeStatus(*cps_, "cp1", [](Json&) { return false; })));  // nothing to write
  Result<Json> stale = run(client().mergePatch(
      *cps_, "", "cp1", Json{{"metadata", {{"labels", {{"a", "b"}}}, {"resourceVersion", "1"}}}}));
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, Errc::Conflict);
  Result<Json> current = run(client().mergePatch(*cps_, "", "cp1", Json{{"metadata", {{"labels", {{"a", "b"}}}}}}));
  ASSERT_TRUE(current) << current.error().message;
  EXPECT_EQ((*current)["metadata"]["labels"]["a"], "b");
}

TEST_F(ApiClientTest, RemovingTheLastFinalizerOfADeletingObjectDeletesIt) {
  Json cp = controlPlane("cp1");
  cp["metadata"]["finalizers"] = {"test/hold"};
  ASSERT_TRUE(run(client().create(*cps_, cp)));
  ASSERT_TRUE(run(client().remove(*cps_, "", "cp1")));
  Result<Json> deleting = client().get(*cps_, "", "cp1");
  ASSERT_TRUE(deleting);
  EXPECT_TRUE((*deleting)["metadata"].contains("deletionTimestamp"));
  // (The kind adds finalizers of its own: every one goes.)
  for (const auto& f : (*deleting)["metadata"]["finalizers"]) {
    EXPECT_TRUE(run(client().removeFinalizer(*cps_, "cp1", f.get<std::string>())));
  }
  Result<Json> gone = client().get(*cps_, "", "cp1");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, Errc::NotFound);
}

TEST(ApiErrors, ReasonsAndCodesMapToHttpStatusesInOnePlace) {
  EXPECT_EQ(httpStatus(failure("NotFound", "x")), 404u);
  EXPECT_EQ(failure("NotFound", "x").code, Errc::NotFound);
  EXPECT_EQ(httpStatus(failure("AlreadyExists", "x")), 409u);
  EXPECT_EQ(failure("AlreadyExists", "x").code, Errc::Conflict);
  EXPECT_EQ(httpStatus(failure("Invalid", "x")), 422u);
  EXPECT_EQ(httpStatus(failure("BadRequest", "x")), 400u);
  EXPECT_EQ(failure("BadRequest", "x").code, Errc::Invalid);
  EXPECT_EQ(httpStatus(failure("RequestEntityTooLarge", "x")), 413u);
  // A store failure the API did not word: its code decides.
  EXPECT_EQ(httpStatus(Errc::Unavailable, "ServiceUnavailable"), 503u);
  EXPECT_EQ(httpStatus(Errc::Internal, ""), 500u);
  EXPECT_EQ(httpStatus(Errc::Conflict, ""), 409u);
  ApiResponse r = fromDecision(failure("Conflict", "changed", Json{{"name", "a"}}));
  EXPECT_EQ(r.status, 409u);
  EXPECT_EQ(Json::parse(r.body)["reason"], "Conflict");
  EXPECT_EQ(Json::parse(r.body)["code"], 409);
}

}  // namespace
}  // namespace kflex::hub
