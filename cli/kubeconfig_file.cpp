// SPDX-License-Identifier: Apache-2.0
#include "cli/kubeconfig_file.hpp"

#include <system_error>

#include "shared/common/util.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/config/yaml_json.hpp"

namespace kflex::cli {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;
constexpr const char* kExtension = "kflex";

using config::findNamed;

void eraseNamed(Json& list, const std::string& name) {
  if (!list.is_array()) {
    return;
  }
  for (auto it = list.begin(); it != list.end(); ++it) {
    if (it->is_object() && it->value("name", "") == name) {
      list.erase(it);
      return;
    }
  }
}

// The `extension` of the entry called `kflex` in an extensions list, or null.
Json namedExtension(const Json& holder) {
  if (!holder.is_object() || !holder.contains("extensions")) {
    return nullptr;
  }
  const Json* e = findNamed(holder["extensions"], kExtension);
  return e != nullptr && e->contains("extension") ? (*e)["extension"] : Json(nullptr);
}

void setNamedExtension(Json& holder, const Json& value) {
  Json& list = holder["extensions"];
  if (!list.is_array()) {
    list = Json::array();
  }
  Json entry = {{"name", kExtension}, {"extension", value}};
  if (Json* e = findNamed(list, kExtension)) {
    *e = entry;
  } else {
    list.push_back(entry);
  }
}

// How many contexts refer to cluster (field "cluster") or user (field "user") `name`.
int uses(const Json& doc, const char* field, const std::string& name) {
  int n = 0;
  for (const auto& c : doc["contexts"]) {
    if (c.is_object() && c.contains("context") && c["context"].is_object() && c["context"].value(field, "") == name) {
      ++n;
    }
  }
  return n;
}

}  // namespace

Result<KubeconfigFile> KubeconfigFile::load(const fs::path& path, bool allow_missing) {
  auto kc = config::Kubeconfig::load(path, allow_missing);
  if (!kc) {
    return kc.error();
  }
  return KubeconfigFile(path, kc->doc());
}

KubeconfigFile::KubeconfigFile(fs::path path, Json doc) : path_(std::move(path)), doc_(std::move(doc)) {
  for (const char* list : {"clusters", "users", "contexts"}) {
    if (!doc_.contains(list) || !doc_[list].is_array()) {
      doc_[list] = Json::array();
    }
  }
}

Result<void> KubeconfigFile::save() const {
  std::error_code ec;
  if (!path_.parent_path().empty()) {
    fs::create_directories(path_.parent_path(), ec);
  }
  return writeFileAtomic(path_, config::jsonToYaml(doc_), 0600);
}

std::vector<std::string> KubeconfigFile::contextNames() const {
  std::vector<std::string> names;
  for (const auto& c : doc_["contexts"]) {
    if (c.is_object() && c.contains("name") && c["name"].is_string()) {
      names.push_back(c["name"].get<std::string>());
    }
  }
  return names;
}

bool KubeconfigFile::hasContext(const std::string& name) const { return findNamed(doc_["contexts"], name) != nullptr; }

std::string KubeconfigFile::currentContext() const {
  return doc_.contains("current-context") && doc_["current-context"].is_string()
             ? doc_["current-context"].get<std::string>()
             : "";
}

void KubeconfigFile::setCurrentContext(const std::string& name) { doc_["current-context"] = name; }

Json KubeconfigFile::kflexExtension() const {
  return doc_.contains("preferences") ? namedExtension(doc_["preferences"]) : Json(nullptr);
}

void KubeconfigFile::setKflexExtension(const Json& value) {
  if (!doc_.contains("preferences") || !doc_["preferences"].is_object()) {
    doc_["preferences"] = Json::object();
  }
  setNamedExtension(doc_["preferences"], value);
}

std::string KubeconfigFile::hubContext() const {
  Json ext = kflexExtension();
  if (!ext.is_object()) {
    return "";
  }
  for (const char* key : {"hubContext", "initialContext"}) {
    if (ext.contains(key) && ext[key].is_string() && hasContext(ext[key].get<std::string>())) {
      return ext[key].get<std::string>();
    }
  }
  return "";
}

bool KubeconfigFile::hasHubExtension() const {
  Json ext = kflexExtension();
  return ext.is_object() && (ext.contains("hubContext") || ext.contains("initialContext"));
}

void KubeconfigFile::rememberHub(const std::string& ctx) {
  Json ext = kflexExtension();
  if (!ext.is_object()) {
    ext = Json::object();
  }
  ext["hubContext"] = ctx;
  ext["initialContext"] = ctx;
  setKflexExtension(ext);
}

const Json* KubeconfigFile::contextBody(const std::string& ctx) const {
  const Json* c = findNamed(doc_["contexts"], ctx);
  if (c == nullptr || !c->contains("context") || !(*c)["context"].is_object()) {
    return nullptr;
  }
  return &(*c)["context"];
}

std::string KubeconfigFile::controlPlaneOf(const std::string& ctx) const {
  const Json* body = contextBody(ctx);
  if (body == nullptr) {
    return "";
  }
  Json ext = namedExtension(*body);
  return ext.is_object() && ext.contains("controlPlane") && ext["controlPlane"].is_string()
             ? ext["controlPlane"].get<std::string>()
             : "";
}

void KubeconfigFile::markControlPlane(const std::string& ctx, const std::string& cp) {
  Json* c = findNamed(doc_["contexts"], ctx);
  if (c == nullptr || !c->contains("context") || !(*c)["context"].is_object()) {
    return;
  }
  setNamedExtension((*c)["context"], Json{{"controlPlane", cp}});
}

bool KubeconfigFile::managedByKflex(const std::string& ctx) const {
  const Json* body = contextBody(ctx);
  if (body == nullptr) {
    return false;
  }
  if (hubContext() == ctx || !controlPlaneOf(ctx).empty()) {
    return true;
  }
  return body->value("cluster", "") == ctx + "-cluster" && body->value("user", "") == ctx + "-admin";
}

std::vector<std::string> KubeconfigFile::contextsOfControlPlane(const std::string& cp) const {
  std::vector<std::string> out;
  for (const auto& name : contextNames()) {
    if (name == hubContext()) {
      continue;
    }
    std::string marked = controlPlaneOf(name);
    if (marked == cp || (marked.empty() && name == cp && managedByKflex(name))) {
      out.push_back(name);
    }
  }
  return out;
}

bool KubeconfigFile::removeContext(const std::string& ctx) {
  const Json* body = contextBody(ctx);
  if (findNamed(doc_["contexts"], ctx) == nullptr) {
    return false;
  }
  std::string cluster = body != nullptr ? body->value("cluster", "") : "";
  std::string user = body != nullptr ? body->value("user", "") : "";
  eraseNamed(doc_["contexts"], ctx);
  if (!cluster.empty() && uses(doc_, "cluster", cluster) == 0) {
    eraseNamed(doc_["clusters"], cluster);
  }
  if (!user.empty() && uses(doc_, "user", user) == 0) {
    eraseNamed(doc_["users"], user);
  }
  if (currentContext() == ctx) {
    setCurrentContext("");
  }
  return true;
}

Result<void> KubeconfigFile::renameContext(const std::string& from, const std::string& to) {
  Json* c = findNamed(doc_["contexts"], from);
  if (c == nullptr) {
    return fail("there is no context \"" + from + "\" in " + path_.string());
  }
  if (hasContext(to)) {
    return fail("context \"" + to + "\" exists already in " + path_.string() + "; delete or rename it first");
  }
  const bool was_hub = hubContext() == from;
  (*c)["name"] = to;
  if (c->contains("context") && (*c)["context"].is_object()) {
    Json& body = (*c)["context"];
    // kflex's (and upstream's) naming follows the context when nothing else shares the entries.
    auto follow = [&](const char* field, const char* list, const std::string& suffix) {
      std::string old_name = body.value(field, "");
      std::string new_name = to + suffix;
      if (old_name != from + suffix || uses(doc_, field, old_name) != 1 || findNamed(doc_[list], new_name) != nullptr) {
        return;
      }
      if (Json* e = findNamed(doc_[list], old_name)) {
        (*e)["name"] = new_name;
        body[field] = new_name;
      }
    };
    follow("cluster", "clusters", "-cluster");
    follow("user", "users", "-admin");
  }
  if (currentContext() == from) {
    setCurrentContext(to);
  }
  if (was_hub) {
    rememberHub(to);
  }
  return {};
}

bool isHubAdminKubeconfig(const fs::path& path, const fs::path& hub_kubeconfig) {
  std::error_code ec;
  if (!hub_kubeconfig.empty() && fs::exists(path, ec) && fs::equivalent(path, hub_kubeconfig, ec)) {
    return true;
  }
  fs::path canonical = fs::weakly_canonical(path, ec);
  if (ec) {
    canonical = fs::absolute(path, ec);
  }
  if (canonical.filename() != "admin.kubeconfig") {
    return false;
  }
  fs::path dir = canonical.parent_path();
  return fs::exists(dir / "hub.db", ec) || fs::exists(dir / "pki" / "ca.crt", ec);
}

}  // namespace kflex::cli
