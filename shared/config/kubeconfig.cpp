// SPDX-License-Identifier: Apache-2.0
#include "shared/config/kubeconfig.hpp"

#include <cstdlib>

#include "shared/common/util.hpp"
#include "shared/config/yaml_json.hpp"

namespace kflex::config {

using Json = nlohmann::json;

Json* findNamed(Json& list, const std::string& name) {
  if (!list.is_array()) {
    return nullptr;
  }
  for (auto& e : list) {
    if (e.is_object() && e.contains("name") && e["name"].is_string() && e["name"].get<std::string>() == name) {
      return &e;
    }
  }
  return nullptr;
}

const Json* findNamed(const Json& list, const std::string& name) { return findNamed(const_cast<Json&>(list), name); }

namespace {

// What kubectl's typed decoding would refuse in the parts kflex reads: "" when the shape is right.
std::string shapeProblem(const Json& doc) {
  auto notString = [](const Json& obj, const char* key) { return obj.contains(key) && !obj[key].is_string(); };
  if (notString(doc, "current-context")) {
    return "current-context must be a string";
  }
  if (doc.contains("preferences") && !doc["preferences"].is_null() && !doc["preferences"].is_object()) {
    return "preferences must be a mapping";
  }
  struct List {
    const char* name;
    const char* entry;
    std::vector<const char*> strings;
  };
  const List lists[] = {
      {"clusters", "cluster", {"server", "certificate-authority-data", "certificate-authority", "tls-server-name"}},
      {"users", "user", {"token", "client-certificate-data", "client-certificate", "client-key-data", "client-key"}},
      {"contexts", "context", {"cluster", "user", "namespace"}},
  };
  for (const auto& list : lists) {
    const Json& items = doc[list.name];
    if (!items.is_array()) {
      return std::string(list.name) + " must be a list";
    }
    for (size_t i = 0; i < items.size(); ++i) {
      std::string at = std::string(list.name) + "[" + std::to_string(i) + "]";
      const Json& item = items[i];
      if (!item.is_object() || notString(item, "name")) {
        return at + " must be a mapping with a string name";
      }
      if (!item.contains(list.entry) || item[list.entry].is_null()) {
        continue;
      }
      const Json& body = item[list.entry];
      if (!body.is_object()) {
        return at + "." + list.entry + " must be a mapping";
      }
      for (const char* key : list.strings) {
        if (notString(body, key)) {
          return at + "." + list.entry + "." + key + " must be a string";
        }
      }
      if (body.contains("insecure-skip-tls-verify") && !body["insecure-skip-tls-verify"].is_boolean()) {
        return at + "." + list.entry + ".insecure-skip-tls-verify must be true or false";
      }
    }
  }
  return "";
}

void upsertNamed(Json& list, const std::string& name, const std::string& field, const Json& value) {
  if (!list.is_array()) {
    list = Json::array();
  }
  Json entry = {{"name", name}, {field, value}};
  if (Json* e = findNamed(list, name)) {
    *e = entry;
  } else {
    list.push_back(entry);
  }
}

}  // namespace

Kubeconfig::Kubeconfig()
    : doc_({{"apiVersion", "v1"}, {"kind", "Config"}, {"clusters", Json::array()}, {"users", Json::array()},
            {"contexts", Json::array()}, {"current-context", ""}, {"preferences", Json::object()}}) {}

Result<Kubeconfig> Kubeconfig::load(const std::filesystem::path& path, bool allow_missing) {
  Kubeconfig kc;
  kc.dir_ = path.parent_path();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    if (allow_missing) {
      return kc;
    }
    return fail("kubeconfig " + path.string() + " does not exist");
  }
  auto text = readFile(path);
  if (!text) {
    return text.error();
  }
  auto parsed = parse(text.value(), "kubeconfig " + path.string());
  if (!parsed) {
    return parsed.error();
  }
  parsed->dir_ = kc.dir_;
  return parsed;
}

Result<Kubeconfig> Kubeconfig::parse(const std::string& text, const std::string& what) {
  Kubeconfig kc;
  if (trim(text).empty()) {
    return kc;
  }
  auto doc = yamlToJson(text);
  if (!doc) {
    return fail(what + ": " + doc.error().message);
  }
  if (!doc->is_object()) {
    return fail(what + " is not a YAML mapping");
  }
  for (const char* list : {"clusters", "users", "contexts"}) {
    if (!doc->contains(list) || (*doc)[list].is_null()) {
      (*doc)[list] = Json::array();
    }
  }
  if (auto bad = shapeProblem(*doc); !bad.empty()) {
    return fail(what + ": " + bad);
  }
  kc.doc_ = std::move(doc.value());
  return kc;
}

Result<void> Kubeconfig::save(const std::filesystem::path& path) const {
  std::error_code ec;
  if (!path.parent_path().empty()) {
    std::filesystem::create_directories(path.parent_path(), ec);
  }
  return writeFileAtomic(path, toYaml(), 0600);
}

std::string Kubeconfig::toYaml() const { return jsonToYaml(doc_); }

void Kubeconfig::setContext(const std::string& context, const std::string& cluster, const std::string& user,
                            const Json& cluster_entry, const Json& user_entry) {
  upsertNamed(doc_["clusters"], cluster, "cluster", cluster_entry);
  upsertNamed(doc_["users"], user, "user", user_entry);
  upsertNamed(doc_["contexts"], context, "context", Json{{"cluster", cluster}, {"user", user}});
}

Result<void> Kubeconfig::mergeContext(const Kubeconfig& other, const std::string& from_context,
                                      const std::string& as_context) {
  const Json* ctx = findNamed(other.doc_["contexts"], from_context);
  if (ctx == nullptr || !ctx->contains("context") || !(*ctx)["context"].is_object()) {
    return fail("context " + from_context + " not found");
  }
  std::string cluster = (*ctx)["context"].value("cluster", "");
  std::string user = (*ctx)["context"].value("user", "");
  const Json* c = findNamed(other.doc_["clusters"], cluster);
  const Json* u = findNamed(other.doc_["users"], user);
  if (c == nullptr || u == nullptr) {
    return fail("context " + from_context + " refers to a missing cluster or user");
  }
  // Inline file references so the merged entry does not depend on the other file's location.
  auto cluster_entry = other.access(from_context);
  if (!cluster_entry) {
    return cluster_entry.error();
  }
  setAccess(as_context, cluster_entry.value());
  return {};
}

void Kubeconfig::setAccess(const std::string& context, const ClusterAccess& a) {
  Json ce = {{"server", a.server}};
  if (!a.ca_pem.empty()) {
    ce["certificate-authority-data"] = base64Encode(a.ca_pem);
  }
  if (a.insecure_skip_verify) {
    ce["insecure-skip-tls-verify"] = true;
  }
  if (!a.proxy_url.empty()) {
    ce["proxy-url"] = a.proxy_url;
  }
  if (!a.tls_server_name.empty()) {
    ce["tls-server-name"] = a.tls_server_name;
  }
  Json ue = Json::object();
  if (!a.client_cert_pem.empty()) {
    ue["client-certificate-data"] = base64Encode(a.client_cert_pem);
    ue["client-key-data"] = base64Encode(a.client_key_pem);
  }
  if (!a.token.empty()) {
    ue["token"] = a.token;
  }
  setContext(context, context + "-cluster", context + "-admin", ce, ue);
}

Result<void> Kubeconfig::routeThroughProxy(const std::string& context, const std::string& server,
                                           const std::string& proxy_url, const std::string& proxy_ca_pem) {
  auto a = access(context);
  if (!a) {
    return a.error();
  }
  if (a->ca_pem.empty()) {
    return fail("context \"" + context + "\" names no certificate authority; the tunnel needs one to verify the "
                "control plane end to end");
  }
  Json* ctx = findNamed(doc_["contexts"], a->context);
  Json* c = findNamed(doc_["clusters"], (*ctx)["context"].value("cluster", ""));
  Json& cl = (*c)["cluster"];
  cl["server"] = server;
  cl["proxy-url"] = proxy_url;
  std::string bundle = a->ca_pem;
  if (!bundle.ends_with("\n")) {
    bundle += "\n";
  }
  cl.erase("certificate-authority");
  cl["certificate-authority-data"] = base64Encode(bundle + proxy_ca_pem);
  return {};
}

Result<void> Kubeconfig::routeThroughHub(const std::string& context, const std::string& tunnel_host,
                                         const std::string& hub_url, const std::string& token,
                                         const std::string& hub_ca_pem) {
  auto a = access(context);
  if (!a) {
    return a.error();
  }
  std::string server_host;
  std::string server_port;
  if (auto r = splitHttpsUrl(a->server, server_host, server_port); !r) {
    return r.error();
  }
  std::string hub_host;
  std::string hub_port;
  if (auto r = splitHttpsUrl(hub_url, hub_host, hub_port); !r) {
    return r.error();
  }
  const std::string authority = joinHostPort(hub_host, hub_port);
  return routeThroughProxy(a->context, tunnel_host.empty() ? a->server : "https://" + tunnel_host + ":" + server_port,
                           "https://tunnel:" + token + "@" + authority, hub_ca_pem);
}

std::string Kubeconfig::proxyUrl(const std::string& context) const {
  const Json* ctx = findNamed(doc_["contexts"], context);
  if (ctx == nullptr || !ctx->contains("context") || !(*ctx)["context"].is_object()) {
    return "";
  }
  const Json* c = findNamed(doc_["clusters"], (*ctx)["context"].value("cluster", ""));
  if (c == nullptr || !c->contains("cluster") || !(*c)["cluster"].is_object()) {
    return "";
  }
  return (*c)["cluster"].value("proxy-url", "");
}

bool Kubeconfig::hasContext(const std::string& name) const { return findNamed(doc_["contexts"], name) != nullptr; }

std::string Kubeconfig::currentContext() const {
  return doc_.contains("current-context") && doc_["current-context"].is_string() ? doc_["current-context"].get<std::string>() : "";
}

void Kubeconfig::setCurrentContext(const std::string& name) { doc_["current-context"] = name; }

Json Kubeconfig::extension(const std::string& name) const {
  const Json* ext = doc_.contains("preferences") && doc_["preferences"].is_object() &&
                            doc_["preferences"].contains("extensions")
                        ? &doc_["preferences"]["extensions"]
                        : nullptr;
  if (ext == nullptr) {
    return nullptr;
  }
  const Json* e = findNamed(*ext, name);
  return e != nullptr && e->contains("extension") ? (*e)["extension"] : Json(nullptr);
}

void Kubeconfig::setExtension(const std::string& name, const Json& value) {
  if (!doc_.contains("preferences") || !doc_["preferences"].is_object()) {
    doc_["preferences"] = Json::object();
  }
  upsertNamed(doc_["preferences"]["extensions"], name, "extension", value);
}

Result<ClusterAccess> Kubeconfig::access(const std::string& context) const {
  ClusterAccess a;
  a.context = context.empty() ? currentContext() : context;
  if (a.context.empty()) {
    return fail("the kubeconfig has no current context; pass --context or run 'kflex init'");
  }
  const Json* ctx = findNamed(doc_["contexts"], a.context);
  if (ctx == nullptr || !ctx->contains("context") || !(*ctx)["context"].is_object()) {
    return fail("context \"" + a.context + "\" not found in the kubeconfig");
  }
  const Json* c = findNamed(doc_["clusters"], (*ctx)["context"].value("cluster", ""));
  const Json* u = findNamed(doc_["users"], (*ctx)["context"].value("user", ""));
  if (c == nullptr || !c->contains("cluster") || !(*c)["cluster"].is_object()) {
    return fail("context \"" + a.context + "\" refers to a cluster that is not in the kubeconfig");
  }
  auto readRef = [&](const Json& entry, const char* data_key, const char* file_key, std::string& out) -> Result<void> {
    if (entry.contains(data_key) && entry[data_key].is_string()) {
      auto d = base64Decode(entry[data_key].get<std::string>());
      if (!d) {
        return fail(std::string(data_key) + " is not valid base64");
      }
      out = d.value();
    } else if (entry.contains(file_key) && entry[file_key].is_string()) {
      std::filesystem::path p = entry[file_key].get<std::string>();
      if (p.is_relative()) {
        p = dir_ / p;
      }
      auto d = readFile(p);
      if (!d) {
        return d.error();
      }
      out = d.value();
    }
    return {};
  };
  const Json& cl = (*c)["cluster"];
  a.server = cl.value("server", "");
  a.insecure_skip_verify = cl.value("insecure-skip-tls-verify", false);
  a.proxy_url = cl.value("proxy-url", "");
  a.tls_server_name = cl.value("tls-server-name", "");
  if (auto r = readRef(cl, "certificate-authority-data", "certificate-authority", a.ca_pem); !r) {
    return r.error();
  }
  if (u != nullptr && u->contains("user") && (*u)["user"].is_object()) {
    const Json& us = (*u)["user"];
    if (auto r = readRef(us, "client-certificate-data", "client-certificate", a.client_cert_pem); !r) {
      return r.error();
    }
    if (auto r = readRef(us, "client-key-data", "client-key", a.client_key_pem); !r) {
      return r.error();
    }
    a.token = us.value("token", "");
  }
  return a;
}

std::filesystem::path defaultKubeconfigPath(const std::string& explicit_path) {
  if (!explicit_path.empty()) {
    return explicit_path;
  }
  if (const char* env = std::getenv("KUBECONFIG"); env != nullptr && *env != '\0') {
    std::string s = env;
    return s.substr(0, s.find(':'));
  }
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home != nullptr ? home : ".") / ".kube" / "config";
}

}  // namespace kflex::config
