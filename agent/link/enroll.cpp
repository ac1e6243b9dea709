// SPDX-License-Identifier: Apache-2.0
#include "agent/link/enroll.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <random>
#include <thread>

#include "shared/common/log.hpp"
#include "shared/common/time.hpp"
#include "shared/common/util.hpp"
#include "shared/model/resource.hpp"
#include "shared/net/https_client.hpp"
#include "shared/protocol/link.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::agent {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::vector<std::string> pemBlocks(const std::string& bundle) {
  std::vector<std::string> out;
  const std::string begin = "-----BEGIN CERTIFICATE-----";
  const std::string end = "-----END CERTIFICATE-----";
  size_t pos = 0;
  while ((pos = bundle.find(begin, pos)) != std::string::npos) {
    size_t stop = bundle.find(end, pos);
    if (stop == std::string::npos) {
      break;
    }
    out.push_back(bundle.substr(pos, stop + end.size() - pos) + "\n");
    pos = stop + end.size();
  }
  return out;
}

std::string statusMessage(const net_client::HttpResult& r) {
  auto j = Json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) {
    return j["message"].get<std::string>();
  }
  return "HTTP " + std::to_string(r.status);
}

// One attempt against one hub URL.
Result<Identity> enrollAt(const std::string& url, const AgentConfig& cfg, const std::string& token,
                          const std::string& name, const std::string& key_pem, bool& fatal) {
  fatal = false;
  // 1. The CA, fetched without trusting the connection, then checked against the pin.
  config::ClusterAccess insecure;
  insecure.server = url;
  insecure.insecure_skip_verify = true;
  auto probe = net_client::HttpsClient::create(insecure);
  if (!probe) {
    fatal = true;
    return probe.error();
  }
  auto ca = probe.value()->request(http::verb::get, protocol::kEnrollCaPath, "", "application/json", std::chrono::seconds(15));
  if (!ca) {
    return ca.error();
  }
  if (ca->status != 200) {
    return fail("the hub at " + url + " did not hand out its CA: " + statusMessage(ca.value()));
  }
  Json info = Json::parse(ca->body, nullptr, false);
  std::string bundle = info.is_object() ? info.value("caBundle", "") : "";
  bool pinned = false;
  std::string seen;
  std::string pinned_ca;  // only the pinned CA is trusted; the rest of an unverified bundle is not
  for (const auto& cert : pemBlocks(bundle)) {
    auto pin = tls::spkiPin(cert);
    if (pin && pin.value() == cfg.ca_cert_hash) {
      pinned = true;
      pinned_ca = cert;
    } else if (pin) {
      seen += (seen.empty() ? "" : ", ") + pin.value();
    }
  }
  if (!pinned) {
    fatal = true;
    return fail("the hub at " + url + " presented a CA whose public-key hash is " + (seen.empty() ? "unreadable" : seen) +
                ", not the " + cfg.ca_cert_hash + " given with --ca-cert-hash; refusing to enroll. Check the value "
                "printed by `kflex token create` (a mismatch can also mean someone is intercepting the connection)");
  }
  // 2. The CSR and the token, over a connection verified with the pinned CA.
  auto csr = tls::createCsr(key_pem, name);
  if (!csr) {
    fatal = true;
    return csr.error();
  }
  config::ClusterAccess verified;
  verified.server = url;
  verified.ca_pem = pinned_ca;
  verified.token = token;
  auto client = net_client::HttpsClient::create(verified);
  if (!client) {
    fatal = true;
    return client.error();
  }
  protocol::EnrollRequest req{name, csr.value(), cfg.labels};
  auto res = client.value()->request(http::verb::post, protocol::kEnrollPath, protocol::toJson(req).dump(),
                                     "application/json", std::chrono::seconds(30));
  if (!res) {
    return res.error();
  }
  if (res->status != 201) {
    // 4xx: the hub said no (token, name, request); retrying the same thing cannot help.
    fatal = res->status >= 400 && res->status < 500 && res->status != 408 && res->status != 429;
    return fail("the hub at " + url + " refused the enrollment: " + statusMessage(res.value()));
  }
  auto out = protocol::enrollResponseFromJson(Json::parse(res->body, nullptr, false));
  if (!out) {
    return out.error();
  }
  if (auto r = tls::checkKeyMatches(out->certificate_pem, key_pem); !r) {
    fatal = true;
    return fail("the hub returned a certificate for another key: " + r.error().message);
  }
  Identity id;
  id.name = name;
  id.key_pem = key_pem;
  id.cert_pem = out->certificate_pem;
  id.ca_bundle_pem = out->ca_bundle_pem;
  id.hub_urls = cfg.hub_urls;
  for (const auto& u : out->hub_urls) {
    if (std::find(id.hub_urls.begin(), id.hub_urls.end(), u) == id.hub_urls.end()) {
      id.hub_urls.push_back(u);
    }
  }
  return id;
}

}  // namespace

fs::path keyPath(const fs::path& data_dir) { return data_dir / "pki" / "agent.key"; }
fs::path certPath(const fs::path& data_dir) { return data_dir / "pki" / "agent.crt"; }
fs::path caPath(const fs::path& data_dir) { return data_dir / "pki" / "ca.crt"; }

Result<void> saveRenewed(const fs::path& data_dir, const Identity& id) {
  auto next = [](const fs::path& p) { return fs::path(p.string() + ".next"); };
  if (auto r = writeFileAtomic(next(keyPath(data_dir)), id.key_pem, 0600); !r) {
    return r;
  }
  if (auto r = writeFileAtomic(next(certPath(data_dir)), id.cert_pem, 0644); !r) {
    return r;
  }
  if (auto r = writeFileAtomic(next(caPath(data_dir)), id.ca_bundle_pem, 0644); !r) {
    return r;
  }
  for (const auto& p : {keyPath(data_dir), certPath(data_dir), caPath(data_dir)}) {
    std::error_code ec;
    fs::rename(next(p), p, ec);
    if (ec) {
      return fail("cannot replace " + p.string() + ": " + ec.message());
    }
  }
  return {};
}

Result<Identity> loadIdentity(const fs::path& data_dir, AgentState& state) {
  std::error_code ec;
  if (!fs::exists(certPath(data_dir), ec)) {
    return fail("not enrolled yet: " + certPath(data_dir).string() + " does not exist");
  }
  // A renewal interrupted between renaming the key and the certificate: finish it.
  fs::path cert_next = certPath(data_dir).string() + ".next";
  if (fs::exists(cert_next, ec)) {
    auto key = readFile(keyPath(data_dir));
    auto cert = readFile(cert_next);
    if (key && cert && tls::checkKeyMatches(cert.value(), key.value())) {
      fs::rename(cert_next, certPath(data_dir), ec);
      fs::rename(caPath(data_dir).string() + ".next", caPath(data_dir), ec);
      log::warn("finished an interrupted certificate renewal", {{"certificate", certPath(data_dir).string()}});
    }
  }
  Identity id;
  for (auto [path, out] : {std::pair{keyPath(data_dir), &id.key_pem}, std::pair{certPath(data_dir), &id.cert_pem},
                           std::pair{caPath(data_dir), &id.ca_bundle_pem}}) {
    auto text = readFile(path);
    if (!text) {
      return text.error();
    }
    *out = text.value();
  }
  if (auto r = tls::checkKeyMatches(id.cert_pem, id.key_pem); !r) {
    return fail(certPath(data_dir).string() + ": " + r.error().message);
  }
  auto info = tls::inspectCertificate(id.cert_pem);
  if (!info) {
    return info.error();
  }
  id.name = info->common_name;
  if (auto urls = state.get("hub_urls")) {
    Json j = Json::parse(*urls, nullptr, false);
    if (j.is_array()) {
      for (const auto& u : j) {
        if (u.is_string()) {
          id.hub_urls.push_back(u.get<std::string>());
        }
      }
    }
  }
  return id;
}

Result<Identity> enroll(const AgentConfig& cfg, AgentState& state, const std::atomic<bool>& stop) {
  std::string token = cfg.token;
  if (token.empty() && !cfg.token_file.empty()) {
    auto t = readFile(cfg.token_file);
    if (!t) {
      return t.error();
    }
    token = std::string(trim(t.value()));
  }
  if (token.empty() || cfg.ca_cert_hash.empty() || cfg.hub_urls.empty()) {
    return fail("this agent has not enrolled yet: give it --hub URL, --token TOKEN and --ca-cert-hash sha256:HEX "
                "(`kflex token create` on the hub prints the whole command), or set hub_urls, token and "
                "ca_cert_hash in agent.yaml");
  }
  if (!model::isBootstrapToken(token)) {
    return fail("the token is not a bootstrap token; it looks like abcdef.0123456789abcdef");
  }
  std::string name = cfg.name.empty() ? defaultAgentName() : cfg.name;
  if (!isDns1123Label(name)) {
    return fail("this host's name \"" + name + "\" is not a valid agent name; choose one with --name");
  }
  fs::path pki = cfg.data_dir / "pki";
  std::error_code ec;
  fs::create_directories(pki, ec);
  ::chmod(pki.c_str(), 0700);
  // The key is made once and kept, so a retried enrollment asks for the same identity.
  std::string key_pem;
  if (auto existing = readFile(keyPath(cfg.data_dir)); existing) {
    key_pem = existing.value();
  } else {
    auto key = tls::createPrivateKey();
    if (!key) {
      return key.error();
    }
    key_pem = key.value();
    if (auto r = writeFileAtomic(keyPath(cfg.data_dir), key_pem, 0600); !r) {
      return r.error();
    }
  }
  protocol::Backoff backoff(std::chrono::seconds(1), std::chrono::seconds(30), std::random_device{}());
  size_t attempt = 0;
  while (!stop) {
    const std::string& url = cfg.hub_urls[attempt % cfg.hub_urls.size()];
    ++attempt;
    log::info("enrolling", {{"hub", url}, {"agent", name}});
    bool fatal = false;
    auto id = enrollAt(url, cfg, token, name, key_pem, fatal);
    if (id) {
      if (auto r = writeFileAtomic(caPath(cfg.data_dir), id->ca_bundle_pem, 0644); !r) {
        return r.error();
      }
      if (auto r = writeFileAtomic(certPath(cfg.data_dir), id->cert_pem, 0644); !r) {
        return r.error();
      }
      Json urls = id->hub_urls;
      if (auto r = state.set({{"name", name}, {"hub_urls", urls.dump()}, {"enrolled_at", formatTime(std::chrono::system_clock::now())}}); !r) {
        return r.error();
      }
      log::info("enrolled", {{"agent", name}, {"hub", url}, {"certificate", certPath(cfg.data_dir).string()}});
      return id;
    }
    if (fatal) {
      return id.error();
    }
    auto wait = backoff.next();
    log::warn("enrollment failed; retrying", {{"hub", url}, {"error", id.error().message},
                                               {"retry_in", std::to_string(wait.count()) + "ms"}});
    auto until = std::chrono::steady_clock::now() + wait;
    while (!stop && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return fail("stopped before enrollment finished");
}

}  // namespace kflex::agent
