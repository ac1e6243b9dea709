// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <thread>

#include "hub/agents/placement.hpp"
#include "tests/unit/hub/api_call.hpp"

namespace kflex::hub {
namespace {

constexpr const char* kGroup = "/apis/tenancy.kflex.kubestellar.org/v1alpha1";

// The placement controller against a real store and API: its watch loop runs on a thread of its
// own, requests come from the test's thread as they would from the server's.
class PlacementTest : public ApiFixture {
 protected:
  void SetUp() override {
    ApiFixture::SetUp();
    placement_ = std::make_unique<PlacementController>(ioc_, *api_, *api_, *store_, registry_, clock_);
  }
  void TearDown() override {
    if (loop_.joinable()) {
      placement_->stop();
      work_.reset();
      ioc_.stop();
      loop_.join();
    }
  }
  void start() {
    placement_->start();
    loop_ = std::thread([this] { ioc_.run(); });
  }

  Json get(const std::string& plural, const std::string& name) {
    auto r = call(http::verb::get, std::string(kGroup) + "/" + plural + "/" + name);
    return r.status == 200 ? Json::parse(r.body) : Json();
  }
  // A Ready agent with room for `k3s_slots` k3s control planes (500m CPU, 512 MiB each).
  void agent(const std::string& name, int k3s_slots) {
    Json a = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "Agent"}, {"metadata", {{"name", name}}}};
    ASSERT_EQ(call(http::verb::post, std::string(kGroup) + "/agents", a.dump()).status, 201u);
    Json status = {{"status",
                    {{"capacity", {{"cpu", std::to_string(500 * k3s_slots) + "m"}, {"memory", std::to_string(512 * k3s_slots) + "Mi"}}},
                     {"conditions", Json::array({{{"type", "Ready"}, {"status", "True"}, {"reason", "AgentReady"}}})}}}};
    auto r = call(http::verb::patch, std::string(kGroup) + "/agents/" + name + "/status", status.dump(),
                  "application/merge-patch+json");
    ASSERT_EQ(r.status, 200u) << r.body;
  }
  ApiResponse create(const std::string& name, bool dry_run = false) {
    Json cp = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "ControlPlane"},
               {"metadata", {{"name", name}}}, {"spec", {{"type", "k3s"}}}};
    return call(http::verb::post, std::string(kGroup) + "/controlplanes" + (dry_run ? "?dryRun=All" : ""), cp.dump());
  }
  static std::string agentOf(const Json& cp) { return cp.value("status", Json::object()).value("agent", ""); }
  static Json scheduledCondition(const Json& cp) {
    for (const auto& c : cp.value("status", Json::object()).value("conditions", Json::array())) {
      if (c.value("type", "") == "Scheduled") {
        return c;
      }
    }
    return Json::object();
  }
  static std::string scheduled(const Json& cp) {
    Json c = scheduledCondition(cp);
    return c.empty() ? "" : c.value("status", "") + "/" + c.value("reason", "");
  }
  static std::string why(const Json& cp) { return scheduledCondition(cp).value("message", ""); }
  // Admission decides once the controller's view is built: a dry run says so.
  void waitUntilAdmitting() {
    ASSERT_TRUE(test::waitFor([&] { return !scheduled(Json::parse(create("probe", true).body)).empty(); },
                              std::chrono::seconds(10), "placement admits creates"));
  }

  net::io_context ioc_;
  net::executor_work_guard<net::io_context::executor_type> work_ = net::make_work_guard(ioc_);
  std::unique_ptr<PlacementController> placement_;
  std::thread loop_;
};

// The create's own write carries the decision: the 201 names the agent, the hub owns that status,
// and no second write follows.
TEST_F(PlacementTest, ACreateIsPlacedInItsOwnWrite) {
  agent("edge-1", 4);
  start();
  waitUntilAdmitting();
  auto r = create("cp-1");
  ASSERT_EQ(r.status, 201u) << r.body;
  Json cp = Json::parse(r.body);
  EXPECT_EQ(agentOf(cp), "edge-1");
  EXPECT_EQ(scheduled(cp), "True/Scheduled");
  EXPECT_EQ(cp["status"]["observedGeneration"], 0);
  bool hub_owns_status = false;
  for (const auto& e : cp["metadata"]["managedFields"]) {
    if (e.value("manager", "") == kHubFieldManager) {
      hub_owns_status = e.value("subresource", "") == "status" && e["fieldsV1"]["f:status"].contains("f:agent");
    }
  }
  EXPECT_TRUE(hub_owns_status) << cp["metadata"]["managedFields"].dump();
  // The agent's bookkeeping follows; the control plane is not written again.
  EXPECT_TRUE(test::waitFor([&] { return get("agents", "edge-1")["status"].value("controlPlanes", 0) == 1; },
                            std::chrono::seconds(10), "edge-1 counts cp-1"));
  EXPECT_EQ(get("controlplanes", "cp-1")["metadata"]["resourceVersion"], cp["metadata"]["resourceVersion"]);
}

// Decisions at create count against the agent at once: never beyond its capacity, and a dry run
// holds nothing back.
TEST_F(PlacementTest, AdmissionCountsCapacityAndDryRunsReserveNothing) {
  agent("edge-1", 2);
  start();
  waitUntilAdmitting();
  for (const char* name : {"dry-1", "dry-2", "dry-3"}) {
    auto r = create(name, true);
    ASSERT_EQ(r.status, 201u) << r.body;
    EXPECT_EQ(agentOf(Json::parse(r.body)), "edge-1") << name;
  }
  EXPECT_EQ(agentOf(Json::parse(create("cp-1").body)), "edge-1");
  EXPECT_EQ(agentOf(Json::parse(create("cp-2").body)), "edge-1");
  Json third = Json::parse(create("cp-3").body);
  EXPECT_EQ(agentOf(third), "");
  EXPECT_EQ(scheduled(third), "False/Unschedulable");
  EXPECT_NE(why(third).find("free for a k3s control plane"), std::string::npos) << third.dump();
  EXPECT_EQ(create("cp-1").status, 409u);
  EXPECT_TRUE(test::waitFor([&] { return get("agents", "edge-1")["status"].value("controlPlanes", 0) == 2; },
                            std::chrono::seconds(10), "edge-1 counts two"));
}

// A create decided as unschedulable is placed by the controller's passes once an agent can take it.
TEST_F(PlacementTest, AnUnschedulableCreateIsPlacedWhenAnAgentComes) {
  start();
  waitUntilAdmitting();
  Json cp = Json::parse(create("cp-1").body);
  EXPECT_EQ(scheduled(cp), "False/Unschedulable");
  EXPECT_NE(why(cp).find("no agent is enrolled"), std::string::npos) << cp.dump();
  agent("edge-1", 1);
  EXPECT_TRUE(test::waitFor([&] { return agentOf(get("controlplanes", "cp-1")) == "edge-1"; }, std::chrono::seconds(10),
                            "cp-1 placed on edge-1"));
  EXPECT_EQ(scheduled(get("controlplanes", "cp-1")), "True/Scheduled");
}

// Why nothing fits is in the Scheduled condition's reason, for clients to branch on: no room
// (Unschedulable) may change by itself; no matching agent that runs the type (NoAgentForType) or a
// malformed selector (InvalidSelector) needs a change by the user. Synced and Ready say
// Unschedulable for all.
TEST_F(PlacementTest, TheScheduledReasonSaysWhyNothingFits) {
  agent("edge-1", 1);
  auto typed = call(http::verb::patch, std::string(kGroup) + "/agents/edge-1/status",
                    R"({"status":{"controlPlaneTypes":["k3s","external"]}})", "application/merge-patch+json");
  ASSERT_EQ(typed.status, 200u) << typed.body;
  start();
  waitUntilAdmitting();
  auto reasonOf = [](const Json& cp, const std::string& type) {
    for (const auto& c : cp.value("status", Json::object()).value("conditions", Json::array())) {
      if (c.value("type", "") == type) {
        return c.value("status", "") + "/" + c.value("reason", "");
      }
    }
    return std::string("<none>");
  };
  Json vc = {{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "ControlPlane"},
             {"metadata", {{"name", "vc-1"}}}, {"spec", {{"type", "vcluster"}}}};
  auto r = call(http::verb::post, std::string(kGroup) + "/controlplanes", vc.dump());
  ASSERT_EQ(r.status, 201u) << r.body;
  Json cp = Json::parse(r.body);
  EXPECT_EQ(agentOf(cp), "");
  EXPECT_EQ(scheduled(cp), "False/NoAgentForType");
  EXPECT_NE(why(cp).find("can run vcluster"), std::string::npos) << cp.dump();
  EXPECT_EQ(reasonOf(cp, "Synced"), "False/Unschedulable");
  EXPECT_EQ(reasonOf(cp, "Ready"), "False/Unschedulable");
  // The agent's one slot taken, a k3s one waits for room.
  EXPECT_EQ(agentOf(Json::parse(create("cp-1").body)), "edge-1");
  EXPECT_EQ(scheduled(Json::parse(create("cp-2").body)), "False/Unschedulable");
  // (The API refuses a malformed selector; placement says so all the same.)
  Json bad = {{"metadata", {{"name", "bad-1"}, {"annotations", {{model::kAgentSelectorAnnotation, "zone in (eu"}}}}},
              {"spec", {{"type", "k3s"}}}};
  placement_->settled("bad-1", placement_->admit(bad, false), false);
  EXPECT_EQ(scheduled(bad), "False/InvalidSelector") << bad.dump();
  // Once the agent runs vcluster, the pass places it like any other.
  auto more = call(http::verb::patch, std::string(kGroup) + "/agents/edge-1/status",
                   R"({"status":{"capacity":{"cpu":"2","memory":"2Gi"},"controlPlaneTypes":["k3s","vcluster"]}})",
                   "application/merge-patch+json");
  ASSERT_EQ(more.status, 200u) << more.body;
  EXPECT_TRUE(test::waitFor([&] { return agentOf(get("controlplanes", "vc-1")) == "edge-1"; }, std::chrono::seconds(10),
                            "vc-1 placed on edge-1"));
  EXPECT_EQ(scheduled(get("controlplanes", "vc-1")), "True/Scheduled");
}

// A control plane created by server-side apply (no admission) is placed by the controller's pass.
TEST_F(PlacementTest, AnAppliedControlPlaneIsPlacedByThePass) {
  agent("edge-1", 2);
  start();
  waitUntilAdmitting();
  auto r = call(http::verb::patch, std::string(kGroup) + "/controlplanes/cp-applied?fieldManager=kubectl",
                "apiVersion: tenancy.kflex.kubestellar.org/v1alpha1\nkind: ControlPlane\nmetadata:\n  name: cp-applied\n"
                "spec:\n  type: k3s\n",
                "application/apply-patch+yaml");
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_FALSE(Json::parse(r.body).contains("status"));
  EXPECT_TRUE(test::waitFor([&] { return agentOf(get("controlplanes", "cp-applied")) == "edge-1"; },
                            std::chrono::seconds(10), "cp-applied placed on edge-1"));
  // Its room is counted: one more fits, the next does not.
  EXPECT_EQ(agentOf(Json::parse(create("cp-2").body)), "edge-1");
  EXPECT_EQ(scheduled(Json::parse(create("cp-3").body)), "False/Unschedulable");
}

// Admission's in-flight bookkeeping: a decision whose create was not stored gives its room back,
// one that was stored holds it until its event arrives.
TEST_F(PlacementTest, AnAdmittedCreateThatFailsGivesItsRoomBack) {
  agent("edge-1", 1);
  start();
  waitUntilAdmitting();
  auto admitted = [&](const std::string& name, uint64_t& ticket) {
    Json obj = {{"metadata", {{"name", name}}}, {"spec", {{"type", "k3s"}}}};
    ticket = placement_->admit(obj, false);
    return agentOf(obj);
  };
  uint64_t t1 = 0;
  uint64_t t2 = 0;
  EXPECT_EQ(admitted("lost-1", t1), "edge-1");
  EXPECT_NE(t1, 0u);
  EXPECT_EQ(admitted("lost-2", t2), "");  // edge-1's one slot is held by lost-1
  placement_->settled("lost-2", t2, false);
  placement_->settled("lost-1", t1, false);
  EXPECT_EQ(agentOf(Json::parse(create("cp-1").body)), "edge-1");
}

}  // namespace
}  // namespace kflex::hub
