// SPDX-License-Identifier: Apache-2.0
#include "shared/model/control_plane_status.hpp"

#include <gtest/gtest.h>

namespace kflex::model {
namespace {

using Json = nlohmann::json;

protocol::StatusReport readyReport() {
  protocol::StatusReport r;
  r.control_plane = "cp1";
  r.conditions.push_back({"Ready", "True", "Available", "/readyz answered ok"});
  r.endpoint = "https://10.0.0.1:6443";
  return r;
}

TEST(ControlPlaneStatus, AReportSetsConditionsAndFieldsAndTellsWhetherAnythingChanged) {
  Json status = Json::object();
  const Json ref = {{"namespace", "cp1-system"}, {"name", "admin-kubeconfig"}};
  ASSERT_TRUE(applyStatusReport(status, readyReport(), ref, "2026-12-07T10:00:00Z", UnusedHooks::Forget));
  EXPECT_EQ(status["endpoint"], "https://10.0.0.1:6443");
  EXPECT_EQ(status["secretRef"], ref);
  ASSERT_EQ(status["conditions"].size(), 1u);
  EXPECT_EQ(status["conditions"][0]["reason"], "Available");
  EXPECT_EQ(status["conditions"][0]["lastTransitionTime"], "2026-12-07T10:00:00Z");
  EXPECT_FALSE(status.contains("components"));  // not reported: left alone

  // The same report again changes nothing (no write, and the transition time stays).
  EXPECT_FALSE(applyStatusReport(status, readyReport(), ref, "2026-12-07T10:05:00Z", UnusedHooks::Forget));
  EXPECT_EQ(status["conditions"][0]["lastTransitionTime"], "2026-12-07T10:00:00Z");
  // A null secret reference leaves the stored one.
  EXPECT_FALSE(applyStatusReport(status, readyReport(), Json(), "2026-12-07T10:05:00Z", UnusedHooks::Forget));
  EXPECT_EQ(status["secretRef"], ref);
}

TEST(ControlPlaneStatus, HookStatesAreForgottenOnlyWhereTheReporterKeepsItsOwnRecord) {
  protocol::StatusReport with_hooks = readyReport();
  with_hooks.hook_states = std::map<std::string, bool>{{"hello", true}};
  with_hooks.hooks_done = true;
  with_hooks.conditions.push_back({"PostCreateHooks", "True", "Completed", ""});
  Json agent = Json::object();
  ASSERT_TRUE(applyStatusReport(agent, with_hooks, Json(), "2026-12-07T10:00:00Z", UnusedHooks::Forget));
  EXPECT_EQ(agent["postCreateHooks"], (Json{{"hello", true}}));
  EXPECT_EQ(agent["postCreateHookCompleted"], true);
  Json hub = agent;

  // The control plane no longer uses hooks: an agent's report drops the hook fields and condition ...
  EXPECT_TRUE(applyStatusReport(agent, readyReport(), Json(), "2026-12-07T10:01:00Z", UnusedHooks::Forget));
  EXPECT_FALSE(agent.contains("postCreateHooks"));
  EXPECT_FALSE(agent.contains("postCreateHookCompleted"));
  for (const auto& c : agent["conditions"]) {
    EXPECT_NE(c["type"], "PostCreateHooks");
  }
  // ... the hub's cluster controller keeps them: they record what to remove on deletion.
  EXPECT_FALSE(applyStatusReport(hub, readyReport(), Json(), "2026-12-07T10:01:00Z", UnusedHooks::Keep));
  EXPECT_EQ(hub["postCreateHooks"], (Json{{"hello", true}}));
}

}  // namespace
}  // namespace kflex::model
