// SPDX-License-Identifier: Apache-2.0
#include "hub/app/hub_config.hpp"

#include "shared/store/postgres.hpp"

#include <yaml-cpp/yaml.h>

#include "shared/common/time.hpp"
#include "shared/common/util.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::hub {
namespace {

bool splitListen(const std::string& listen, std::string& host, std::string& port) {
  if (!listen.empty() && listen.front() == '[') {
    auto close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':') {
      return false;
    }
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
    return true;
  }
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || listen.find(':') != colon) {
    return false;
  }
  host = listen.substr(0, colon);
  port = listen.substr(colon + 1);
  return true;
}

}  // namespace

std::string HubConfig::host() const {
  std::string h;
  std::string p;
  splitListen(listen, h, p);
  return h;
}

uint16_t HubConfig::port() const {
  std::string h;
  std::string p;
  splitListen(listen, h, p);
  try {
    return uint16_t(std::stoul(p));
  } catch (const std::exception&) {
    return 0;
  }
}

Result<void> loadHubConfig(const std::filesystem::path& path, HubConfig& cfg) {
  auto text = readFile(path);
  if (!text) {
    return text.error();
  }
  YAML::Node root;
  try {
    root = YAML::Load(text.value());
  } catch (const YAML::Exception& e) {
    return fail(path.string() + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (root.IsNull()) {
    return {};
  }
  if (!root.IsMap()) {
    return fail(path.string() + ": the file must be a YAML mapping of settings");
  }
  std::vector<std::string> problems;
  auto where = [&](const YAML::Node& n, const std::string& key) {
    return key + " (" + path.string() + ":" + std::to_string(n.Mark().line + 1) + ")";
  };
  auto seconds = [&](const YAML::Node& n, const std::string& key, std::chrono::seconds& out) {
    try {
      long v = n.as<long>();
      if (v <= 0) {
        problems.push_back(where(n, key) + ": must be a positive number of seconds");
      } else {
        out = std::chrono::seconds(v);
      }
    } catch (const YAML::Exception&) {
      problems.push_back(where(n, key) + ": must be a whole number of seconds");
    }
  };
  auto duration = [&](const YAML::Node& n, const std::string& key, std::chrono::seconds& out) {
    auto d = parseDuration(n.as<std::string>());
    if (!d || d->count() < 1000) {
      problems.push_back(where(n, key) + ": must be a duration of at least 1s, such as 720h, 30m or 90s");
    } else {
      out = std::chrono::duration_cast<std::chrono::seconds>(*d);
    }
  };
  auto count = [&](const YAML::Node& n, const std::string& key, size_t& out) {
    try {
      long v = n.as<long>();
      if (v < 0) {
        problems.push_back(where(n, key) + ": must not be negative");
      } else {
        out = size_t(v);
      }
    } catch (const YAML::Exception&) {
      problems.push_back(where(n, key) + ": must be a whole number");
    }
  };
  for (const auto& kv : root) {
    if (!kv.first.IsScalar()) {
      problems.push_back(path.string() + ":" + std::to_string(kv.first.Mark().line + 1) +
                         ": a setting's name must be a plain word, not a list or mapping");
      continue;
    }
    std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    try {
      if (key == "data_dir") {
        cfg.data_dir = v.as<std::string>();
      } else if (key == "datastore") {
        cfg.datastore = v.as<std::string>();
      } else if (key == "datastore_password_file") {
        cfg.datastore_password_file = v.as<std::string>();
      } else if (key == "secrets_key_file") {
        cfg.secrets_key_file = v.as<std::string>();
      } else if (key == "listen") {
        cfg.listen = v.as<std::string>();
      } else if (key == "tls_sans") {
        if (!v.IsSequence()) {
          problems.push_back(where(v, key) + ": must be a list of DNS names or IP addresses");
        } else {
          cfg.tls_sans = v.as<std::vector<std::string>>();
        }
      } else if (key == "hosting_kubeconfig") {
        cfg.hosting_kubeconfig = v.as<std::string>();
      } else if (key == "hosting_context") {
        cfg.hosting_context = v.as<std::string>();
      } else if (key == "peer_url") {
        cfg.peer_url = v.as<std::string>();
      } else if (key == "hub_urls") {
        if (!v.IsSequence()) {
          problems.push_back(where(v, key) + ": must be a list of https:// URLs");
        } else {
          cfg.hub_urls = v.as<std::vector<std::string>>();
        }
      } else if (key == "agent_lease_renew_seconds") {
        seconds(v, key, cfg.agent_lease_renew);
      } else if (key == "agent_lease_duration_seconds") {
        seconds(v, key, cfg.agent_lease_duration);
      } else if (key == "agent_lost_release_seconds") {
        seconds(v, key, cfg.agent_lost_release);
      } else if (key == "agent_cert_validity") {
        duration(v, key, cfg.agent_cert_validity);
      } else if (key == "agent_expired_grace") {
        duration(v, key, cfg.agent_expired_grace);
      } else if (key == "agent_status_interval_ms") {
        size_t ms = size_t(cfg.agent_status_interval.count());
        count(v, key, ms);
        cfg.agent_status_interval = std::chrono::milliseconds(ms);
      } else if (key == "agent_status_writes_per_second") {
        count(v, key, cfg.agent_status_writes_per_second);
      } else if (key == "agent_status_burst") {
        count(v, key, cfg.agent_status_burst);
      } else if (key == "max_connections") {
        count(v, key, cfg.max_connections);
      } else if (key == "max_handshakes_per_source") {
        count(v, key, cfg.max_handshakes_per_source);
      } else if (key == "event_retention") {
        count(v, key, cfg.event_retention);
      } else if (key == "threads") {
        count(v, key, cfg.threads);
      } else if (key == "log_level") {
        cfg.log_level = v.as<std::string>();
      } else if (key == "shutdown_grace_seconds") {
        seconds(v, key, cfg.shutdown_grace);
      } else if (key == "handshake_timeout_seconds") {
        seconds(v, key, cfg.handshake_timeout);
      } else if (key == "header_timeout_seconds") {
        seconds(v, key, cfg.header_timeout);
      } else if (key == "body_timeout_seconds") {
        seconds(v, key, cfg.body_timeout);
      } else if (key == "stream_write_timeout_seconds") {
        seconds(v, key, cfg.stream_write_timeout);
      } else {
        problems.push_back(where(kv.first, key) + ": unknown setting");
      }
    } catch (const YAML::Exception&) {
      problems.push_back(where(v, key) + ": has the wrong type");
    }
  }
  return reportProblems(problems);
}

void makePathsAbsolute(HubConfig& cfg) {
  for (auto* p : {&cfg.data_dir, &cfg.hosting_kubeconfig, &cfg.datastore_password_file, &cfg.secrets_key_file}) {
    std::error_code ec;
    if (!p->empty()) {
      auto abs = std::filesystem::absolute(*p, ec);
      *p = ec ? *p : abs.lexically_normal();
    }
  }
}

Result<void> validateHubConfig(const HubConfig& cfg) {
  std::vector<std::string> problems;
  if (!cfg.datastore.empty()) {
    if (auto r = store::validateDsn(cfg.datastore); !r) {
      problems.push_back("datastore: " + r.error().message +
                         " (a PostgreSQL URI such as postgres://kflex@db.example:5432/kflex?sslmode=verify-full)");
    }
  } else if (!cfg.datastore_password_file.empty()) {
    problems.push_back("datastore_password_file: set without datastore");
  }
  if (cfg.datastore.empty() && !cfg.secrets_key_file.empty()) {
    problems.push_back("secrets_key_file: set without datastore (with SQLite the CA and keys are files in data_dir)");
  }
  std::string host;
  std::string port;
  if (!splitListen(cfg.listen, host, port)) {
    problems.push_back("listen: \"" + cfg.listen + "\" is not HOST:PORT (e.g. 127.0.0.1:6443 or [::1]:6443)");
  } else {
    if (!tls::isIpAddress(host)) {
      problems.push_back("listen: host \"" + host + "\" must be an IP address (127.0.0.1, ::1, 0.0.0.0, ...)");
    }
    try {
      size_t used = 0;
      unsigned long p = std::stoul(port, &used);
      if (used != port.size() || p > 65535) {
        throw std::out_of_range("port");
      }
    } catch (const std::exception&) {
      problems.push_back("listen: port \"" + port + "\" must be a number from 0 to 65535");
    }
  }
  for (const auto& san : cfg.tls_sans) {
    if (!tls::isIpAddress(san) && !isDns1123Subdomain(san)) {
      problems.push_back("tls_sans: \"" + san + "\" is neither an IP address nor a DNS name");
    }
  }
  if (cfg.max_handshakes_per_source == 0) {
    problems.push_back("max_handshakes_per_source: must be at least 1");
  }
  if (cfg.max_connections == 0) {
    problems.push_back("max_connections: must be at least 1");
  }
  if (cfg.event_retention < 100) {
    problems.push_back("event_retention: must be at least 100");
  }
  if (cfg.log_level != "debug" && cfg.log_level != "info" && cfg.log_level != "warn" && cfg.log_level != "error") {
    problems.push_back("log_level: must be debug, info, warn or error");
  }
  for (const auto& u : cfg.hub_urls) {
    if (u.rfind("https://", 0) != 0) {
      problems.push_back("hub_urls: \"" + u + "\" must be an https:// URL");
    }
  }
  if (!cfg.peer_url.empty() && cfg.peer_url.rfind("https://", 0) != 0) {
    problems.push_back("peer_url: \"" + cfg.peer_url + "\" must be an https:// URL");
  }
  if (cfg.agent_lease_duration <= cfg.agent_lease_renew) {
    problems.push_back("agent_lease_duration_seconds: must be longer than agent_lease_renew_seconds (Kubernetes "
                       "uses 5 times: 50 and 10)");
  }
  if (cfg.agent_status_writes_per_second == 0) {
    problems.push_back("agent_status_writes_per_second: must be at least 1");
  }
  if (cfg.agent_status_burst == 0 || cfg.agent_status_burst > cfg.event_retention / 2) {
    problems.push_back("agent_status_burst: must be from 1 to half of event_retention (" +
                       std::to_string(cfg.event_retention / 2) + "), so that no agent alone can push the events "
                       "watchers resume from out of the window");
  }
  if (cfg.data_dir.empty()) {
    problems.push_back("data_dir: must not be empty");
  }
  return reportProblems(problems);
}

}  // namespace kflex::hub
