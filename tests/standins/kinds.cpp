// SPDX-License-Identifier: Apache-2.0
// The Kubernetes kinds the stand-in API servers serve: enough of core, RBAC, apps, batch and
// apiextensions for what kflex applies (adoption, vCluster, PostCreateHooks). Bodies beyond
// metadata are kept as given, as a server without those kinds' schemas would.
#include "tests/standins/standin.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>

#include "shared/common/util.hpp"

namespace kflex::standin {
namespace {

using model::Json;

std::string toLower(std::string s) {
  for (auto& c : s) {
    c = char(std::tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

model::ResourceType kind(const std::string& group, const std::string& kind, const std::string& plural,
                         bool namespaced, bool has_status, std::vector<std::string> short_names = {}) {
  model::ResourceType t;
  t.group = group;
  t.version = "v1";
  t.kind = kind;
  t.list_kind = kind + "List";
  t.plural = plural;
  t.singular = toLower(kind);
  t.short_names = std::move(short_names);
  t.namespaced = namespaced;
  t.has_status = has_status;
  t.name_is_label = false;
  t.schema = Json{{"type", "object"},
                  {"x-kubernetes-preserve-unknown-fields", true},
                  {"properties", {{"apiVersion", {{"type", "string"}}}, {"kind", {{"type", "string"}}},
                                  {"metadata", {{"type", "object"}}}}}};
  return t;
}

int freeNodePort() {
  std::random_device rd;
  std::mt19937 gen(rd());
  std::uniform_int_distribution<int> dist(30000, 32767);
  for (int attempt = 0; attempt < 200; ++attempt) {
    int port = dist(gen);
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool free = s >= 0 && ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    if (s >= 0) {
      ::close(s);
    }
    if (free) {
      return port;
    }
  }
  return 30000;
}

}  // namespace

model::Registry clusterRegistry() {
  model::Registry r;
  auto ns = kind("", "Namespace", "namespaces", false, true, {"ns"});
  ns.name_is_label = true;
  // The namespace controller empties a deleting namespace, then lets it go (the stand-in keeps
  // that as a metadata finalizer; kube-apiserver keeps it in spec.finalizers).
  ns.on_create = [](Json& obj) {
    obj["metadata"]["finalizers"] = Json::array({"kubernetes"});
    obj["status"] = {{"phase", "Active"}};
  };
  r.add(std::move(ns));
  r.add(kind("", "ServiceAccount", "serviceaccounts", true, false, {"sa"}));
  auto secret = kind("", "Secret", "secrets", true, false);
  secret.admit = [](Json& obj) {
    // stringData is write-only: it becomes base64 data, as kube-apiserver stores it.
    if (auto sd = obj.find("stringData"); sd != obj.end() && sd->is_object()) {
      for (auto it = sd->begin(); it != sd->end(); ++it) {
        if (it.value().is_string()) {
          obj["data"][it.key()] = base64Encode(it.value().get<std::string>());
        }
      }
      obj.erase("stringData");
    }
    if (!obj.contains("type")) {
      obj["type"] = "Opaque";
    }
  };
  r.add(std::move(secret));
  r.add(kind("", "ConfigMap", "configmaps", true, false, {"cm"}));
  auto svc = kind("", "Service", "services", true, true, {"svc"});
  svc.admit = [](Json& obj) {
    // NodePort services get a node port from 30000-32767 when they name none (one that is free
    // on this host: the stand-in cluster's node is this host's loopback).
    Json& spec = obj["spec"];
    if (!spec.is_object() || spec.value("type", "") != "NodePort" || !spec["ports"].is_array()) {
      return;
    }
    for (auto& port : spec["ports"]) {
      if (port.is_object() && !port.contains("nodePort")) {
        port["nodePort"] = freeNodePort();
      }
    }
  };
  r.add(std::move(svc));
  r.add(kind("", "Pod", "pods", true, true, {"po"}));
  r.add(kind("", "PersistentVolumeClaim", "persistentvolumeclaims", true, true, {"pvc"}));
  for (const char* k : {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}) {
    std::string plural = toLower(k) + "s";
    auto t = kind("rbac.authorization.k8s.io", k, plural, std::string(k).rfind("Cluster", 0) != 0, false);
    r.add(std::move(t));
  }
  r.add(kind("apps", "Deployment", "deployments", true, true, {"deploy"}));
  r.add(kind("apps", "StatefulSet", "statefulsets", true, true, {"sts"}));
  r.add(kind("batch", "Job", "jobs", true, true));
  r.add(kind("apiextensions.k8s.io", "CustomResourceDefinition", "customresourcedefinitions", false, true,
             {"crd", "crds"}));
  return r;
}

}  // namespace kflex::standin
