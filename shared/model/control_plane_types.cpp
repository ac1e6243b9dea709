// SPDX-License-Identifier: Apache-2.0
#include "shared/model/control_plane_types.hpp"

#include <algorithm>

namespace kflex::model {
namespace {

constexpr int64_t kMi = int64_t(1) << 20;

// k8s: upstream KubeFlex's chart limits for kube-apiserver 512Mi + kube-controller-manager 128Mi +
// Kine 256Mi; k3s (and vCluster's k3s) up to 1Gi; 2 CPUs each.
const std::vector<ControlPlaneType> kTypes = {
    {.name = "k8s",
     .runs_on = RunsOn::Agent,
     .agent_needs = AgentNeeds::Datastore,
     .processes = true,
     .programs = {"kine", "kube-apiserver", "kube-controller-manager"},
     .reservation = {1000, 1024 * kMi},
     .default_limits = {2000, (512 + 128 + 256) * kMi},
     .description = "Kine + kube-apiserver + kube-controller-manager"},
    {.name = "k3s",
     .runs_on = RunsOn::Agent,
     .processes = true,
     .programs = {"k3s"},
     .reservation = {500, 512 * kMi},
     .default_limits = {2000, 1024 * kMi}},
    {.name = "vcluster",
     .runs_on = RunsOn::Agent,
     .agent_needs = AgentNeeds::Cluster,
     .programs = {"vcluster"},
     .reservation = {500, 512 * kMi},
     .default_limits = {2000, 1024 * kMi}},
    {.name = "host",
     .runs_on = RunsOn::Hub,
     .default_limits = {2000, 1024 * kMi},
     .description = "the hub's hosting cluster"},
    {.name = "external",
     .runs_on = RunsOn::Hub,
     .adopted = true,
     .default_limits = {2000, 1024 * kMi},
     .description = "an adopted cluster"},
};

// Upstream KubeFlex's spec.type enum, in its order: the CRD schema keeps it for compatibility.
constexpr std::string_view kUpstreamTypeEnum[] = {"k8s", kDeprecatedType, "vcluster", "host", "external"};

}  // namespace

std::span<const ControlPlaneType> controlPlaneTypes() { return kTypes; }

const ControlPlaneType* findControlPlaneType(std::string_view name) {
  auto it = std::find_if(kTypes.begin(), kTypes.end(), [&](const ControlPlaneType& t) { return t.name == name; });
  return it == kTypes.end() ? nullptr : &*it;
}

const ControlPlaneType& adoptedType() {
  return *std::find_if(kTypes.begin(), kTypes.end(), [](const ControlPlaneType& t) { return t.adopted; });
}

bool runsOnAgent(std::string_view type) {
  const ControlPlaneType* t = findControlPlaneType(type);
  return t != nullptr && t->runs_on == RunsOn::Agent;
}

bool isAdopted(std::string_view type) {
  const ControlPlaneType* t = findControlPlaneType(type);
  return t != nullptr && t->adopted;
}

bool agentServes(std::string_view type) { return runsOnAgent(type) || isAdopted(type); }

bool servedByHub(std::string_view type) {
  const ControlPlaneType* t = findControlPlaneType(type);
  return t != nullptr && t->runs_on == RunsOn::Hub;
}

std::vector<std::string> typeNames(bool (*pick)(const ControlPlaneType&)) {
  std::vector<std::string> out;
  for (const auto& t : kTypes) {
    if (pick(t)) {
      out.emplace_back(t.name);
    }
  }
  return out;
}

std::string joinNames(const std::vector<std::string>& names, std::string_view last_separator, bool quoted) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) {
      out += i + 1 == names.size() ? std::string(last_separator) : std::string(", ");
    }
    out += quoted ? "\"" + names[i] + "\"" : names[i];
  }
  return out;
}

nlohmann::json specTypeSchema() {
  nlohmann::json values = nlohmann::json::array();
  for (std::string_view v : kUpstreamTypeEnum) {
    values.push_back(v);
  }
  std::vector<std::string> described;
  for (const auto& t : kTypes) {
    if (std::find(std::begin(kUpstreamTypeEnum), std::end(kUpstreamTypeEnum), t.name) == std::end(kUpstreamTypeEnum)) {
      values.push_back(t.name);
    }
    described.push_back(std::string(t.name) + (t.description.empty() ? "" : " (" + std::string(t.description) + ")"));
  }
  return {{"type", "string"},
          {"enum", values},
          {"description", "Kind of control plane: " + joinNames(described, " or ") + ". " + std::string(kDeprecatedType) +
                              " is accepted by the schema for compatibility but rejected by kflex."}};
}

}  // namespace kflex::model
