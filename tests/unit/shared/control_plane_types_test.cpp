// SPDX-License-Identifier: Apache-2.0
#include "shared/model/control_plane_types.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "shared/model/resource.hpp"

namespace kflex::model {
namespace {

std::vector<std::string> names(bool (*pick)(const ControlPlaneType&)) { return typeNames(pick); }

// The table says what every part of kflex used to list on its own.
TEST(ControlPlaneTypes, TheTableSaysWhereEachTypeRunsAndWhatItNeeds) {
  EXPECT_EQ(names([](const ControlPlaneType&) { return true; }),
            (std::vector<std::string>{"k8s", "k3s", "vcluster", "host", "external"}));
  EXPECT_EQ(names([](const ControlPlaneType& t) { return t.runs_on == RunsOn::Agent; }),
            (std::vector<std::string>{"k8s", "k3s", "vcluster"}));
  EXPECT_EQ(names([](const ControlPlaneType& t) { return t.runs_on == RunsOn::Hub; }),
            (std::vector<std::string>{"host", "external"}));
  EXPECT_EQ(names([](const ControlPlaneType& t) { return t.processes; }), (std::vector<std::string>{"k8s", "k3s"}));
  EXPECT_EQ(names([](const ControlPlaneType& t) { return t.agent_needs == AgentNeeds::Datastore; }),
            (std::vector<std::string>{"k8s"}));
  EXPECT_EQ(names([](const ControlPlaneType& t) { return t.agent_needs == AgentNeeds::Cluster; }),
            (std::vector<std::string>{"vcluster"}));
  EXPECT_EQ(adoptedType().name, "external");

  EXPECT_TRUE(runsOnAgent("k3s"));
  EXPECT_FALSE(runsOnAgent("external"));
  EXPECT_FALSE(runsOnAgent("ocm"));
  EXPECT_TRUE(agentServes("external"));
  EXPECT_FALSE(agentServes("host"));
  EXPECT_TRUE(servedByHub("host"));
  EXPECT_TRUE(isAdopted("external"));
  EXPECT_FALSE(isAdopted("host"));
  EXPECT_EQ(findControlPlaneType(kDeprecatedType), nullptr);
  EXPECT_EQ(findControlPlaneType("bogus"), nullptr);

  // Placement's reservations: k8s 1 CPU / 1 GiB, k3s and vcluster 500m / 512 MiB, external none.
  auto reservation = [](std::string_view t) {
    Resources r = findControlPlaneType(t)->reservation;
    return std::make_pair(r.cpu_millis, r.memory_bytes);
  };
  EXPECT_EQ(reservation("k8s"), std::make_pair(int64_t(1000), int64_t(1) << 30));
  EXPECT_EQ(reservation("k3s"), std::make_pair(int64_t(500), int64_t(512) << 20));
  EXPECT_EQ(reservation("vcluster"), std::make_pair(int64_t(500), int64_t(512) << 20));
  EXPECT_EQ(reservation("external"), std::make_pair(int64_t(0), int64_t(0)));
  // The agent's default cgroup limits: k8s 896 MiB, k3s 1 GiB, 2 CPUs.
  EXPECT_EQ(findControlPlaneType("k8s")->default_limits.memory_bytes, int64_t(896) << 20);
  EXPECT_EQ(findControlPlaneType("k3s")->default_limits.memory_bytes, int64_t(1) << 30);
  EXPECT_EQ(findControlPlaneType("k3s")->default_limits.cpu_millis, 2000);
}

TEST(ControlPlaneTypes, NamesJoinForMessages) {
  EXPECT_EQ(joinNames({"a", "b", "c"}, " and "), "a, b and c");
  EXPECT_EQ(joinNames({"a", "b"}, ", ", true), "\"a\", \"b\"");
  EXPECT_EQ(joinNames({"a"}, " or "), "a");
  EXPECT_EQ(joinNames({}, " or "), "");
}

// The CRD schema keeps upstream's enum (ocm included, for compatibility) in upstream's order, then
// kflex's own; validation refuses ocm.
TEST(ControlPlaneTypes, TheSchemaEnumComesFromTheTableAndKeepsUpstreamsOrder) {
  Registry r = kflexRegistry();
  const Json& type = r.findKind("tenancy.kflex.kubestellar.org/v1alpha1", "ControlPlane")
                         ->schema["properties"]["spec"]["properties"]["type"];
  EXPECT_EQ(type["enum"], Json::parse(R"(["k8s", "ocm", "vcluster", "host", "external", "k3s"])"));
  EXPECT_EQ(type["type"], "string");
  EXPECT_EQ(type["description"],
            "Kind of control plane: k8s (Kine + kube-apiserver + kube-controller-manager), k3s, vcluster, host (the "
            "hub's hosting cluster) or external (an adopted cluster). ocm is accepted by the schema for compatibility "
            "but rejected by kflex.");
  for (const auto& t : controlPlaneTypes()) {
    EXPECT_NE(std::find(type["enum"].begin(), type["enum"].end(), Json(std::string(t.name))), type["enum"].end())
        << t.name;
  }
}

}  // namespace
}  // namespace kflex::model
