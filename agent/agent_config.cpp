// SPDX-License-Identifier: Apache-2.0
#include "agent/agent_config.hpp"

#include <unistd.h>

#include <algorithm>
#include <set>

#include <boost/asio/ip/address.hpp>

#include <yaml-cpp/yaml.h>

#include "shared/common/util.hpp"
#include "shared/store/postgres.hpp"
#include "shared/model/resource.hpp"

namespace kflex::agent {

Result<void> loadAgentConfig(const std::filesystem::path& path, AgentConfig& cfg) {
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
  for (const auto& kv : root) {
    if (!kv.first.IsScalar()) {
      problems.push_back(path.string() + ":" + std::to_string(kv.first.Mark().line + 1) +
                         ": a setting's name must be a plain word, not a list or mapping");
      continue;
    }
    std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    try {
      if (key == "hub") {
        cfg.hub_urls = {v.as<std::string>()};
      } else if (key == "hub_urls") {
        if (!v.IsSequence()) {
          problems.push_back(where(v, key) + ": must be a list of https:// URLs");
        } else {
          cfg.hub_urls = v.as<std::vector<std::string>>();
        }
      } else if (key == "token") {
        cfg.token = v.IsNull() ? "" : v.as<std::string>();
      } else if (key == "token_file") {
        cfg.token_file = v.as<std::string>();
      } else if (key == "ca_cert_hash") {
        cfg.ca_cert_hash = v.IsNull() ? "" : v.as<std::string>();
      } else if (key == "data_dir") {
        cfg.data_dir = v.as<std::string>();
      } else if (key == "name") {
        cfg.name = v.IsNull() ? "" : v.as<std::string>();
      } else if (key == "labels") {
        if (!v.IsMap()) {
          problems.push_back(where(v, key) + ": must be a mapping of label keys to values");
        } else {
          for (const auto& l : v) {
            cfg.labels[l.first.as<std::string>()] = l.second.as<std::string>();
          }
        }
      } else if (key == "log_level") {
        cfg.log_level = v.as<std::string>();
      } else if (key == "bin_dir") {
        cfg.bin_dir = v.as<std::string>();
      } else if (key == "programs") {
        if (!v.IsMap()) {
          problems.push_back(where(v, key) + ": must be a mapping of program names (k3s, kine, kube-apiserver, "
                                             "kube-controller-manager, vcluster) to paths");
        } else {
          for (const auto& p : v) {
            cfg.programs[p.first.as<std::string>()] = p.second.as<std::string>();
          }
        }
      } else if (key == "advertise_address") {
        cfg.advertise_address = v.IsNull() ? "" : v.as<std::string>();
      } else if (key == "isolate_control_planes") {
        cfg.isolate = v.as<bool>();
      } else if (key == "k3s_node_agent") {
        cfg.k3s_node_agent = v.as<bool>();
      } else if (key == "control_plane_limits") {
        if (!v.IsMap()) {
          problems.push_back(where(v, key) + ": must be a mapping such as {k3s: {cpu: \"2\", memory: 1Gi}}");
        } else {
          for (const auto& t : v) {
            if (!t.second.IsMap()) {
              problems.push_back(where(t.second, key) + ": " + t.first.as<std::string>() +
                                 " must be a mapping such as {cpu: \"2\", memory: 1Gi}");
              continue;
            }
            for (const auto& c : t.second) {
              cfg.control_plane_limits[t.first.as<std::string>()][c.first.as<std::string>()] = c.second.as<std::string>();
            }
          }
        }
      } else if (key == "capacity") {
        if (!v.IsMap()) {
          problems.push_back(where(v, key) + ": must be a mapping such as {cpu: \"8\", memory: 16Gi}");
        } else {
          for (const auto& c : v) {
            cfg.capacity[c.first.as<std::string>()] = c.second.as<std::string>();
          }
        }
      } else if (key == "postgres_dsn") {
        cfg.postgres_dsn = v.IsNull() ? "" : v.as<std::string>();
      } else if (key == "postgres_password_file") {
        cfg.postgres_password_file = v.IsNull() ? "" : v.as<std::string>();
      } else if (key == "cluster_kubeconfig") {
        cfg.cluster_kubeconfig = v.IsNull() ? "" : v.as<std::string>();
      } else if (key == "cluster_context") {
        cfg.cluster_context = v.IsNull() ? "" : v.as<std::string>();
      } else if (key == "cluster_node_address") {
        cfg.cluster_node_address = v.IsNull() ? "" : v.as<std::string>();
      } else {
        problems.push_back(where(kv.first, key) + ": unknown setting");
      }
    } catch (const YAML::Exception&) {
      problems.push_back(where(v, key) + ": has the wrong type");
    }
  }
  return reportProblems(problems);
}

Result<void> parseLabels(const std::string& text, std::map<std::string, std::string>& labels) {
  for (const auto& part : split(text, ',')) {
    if (trim(part).empty()) {
      continue;
    }
    auto eq = part.find('=');
    if (eq == std::string::npos) {
      return fail("label \"" + part + "\" must be key=value");
    }
    labels[std::string(trim(part.substr(0, eq)))] = std::string(trim(part.substr(eq + 1)));
  }
  return {};
}

namespace {

// A path made absolute (and lexically normal) against the working directory; "" stays "" and "-"
// (standard input) stays "-".
std::string absolutePath(const std::string& p) {
  if (p.empty() || p == "-") {
    return p;
  }
  std::error_code ec;
  auto abs = std::filesystem::absolute(p, ec);
  return ec ? p : abs.lexically_normal().string();
}

}  // namespace

void makePathsAbsolute(AgentConfig& cfg) {
  cfg.data_dir = absolutePath(cfg.data_dir.string());
  cfg.bin_dir = absolutePath(cfg.bin_dir.string());
  for (auto& [program, path] : cfg.programs) {
    path = absolutePath(path);
  }
  cfg.token_file = absolutePath(cfg.token_file);
  cfg.postgres_password_file = absolutePath(cfg.postgres_password_file);
  cfg.cluster_kubeconfig = absolutePath(cfg.cluster_kubeconfig);
}

Result<void> validateAgentConfig(const AgentConfig& cfg) {
  std::vector<std::string> problems;
  for (const auto& u : cfg.hub_urls) {
    if (u.rfind("https://", 0) != 0) {
      problems.push_back("hub: \"" + u + "\" must be an https:// URL such as https://hub.example.com:6443");
    }
  }
  if (!cfg.token.empty() && !model::isBootstrapToken(cfg.token)) {
    problems.push_back("token: not a bootstrap token; it looks like abcdef.0123456789abcdef (from `kflex token create`)");
  }
  if (!cfg.ca_cert_hash.empty()) {
    const std::string& h = cfg.ca_cert_hash;
    bool ok = h.rfind("sha256:", 0) == 0 && h.size() == 7 + 64 &&
              h.find_first_not_of("0123456789abcdef", 7) == std::string::npos;
    if (!ok) {
      problems.push_back("ca_cert_hash: must be sha256: followed by 64 lower-case hex digits (from `kflex token create`)");
    }
  }
  if (!cfg.name.empty() && !isDns1123Label(cfg.name)) {
    problems.push_back("name: \"" + cfg.name +
                       "\" is not a valid agent name: at most 63 lower-case letters, digits and '-', starting and "
                       "ending with a letter or digit");
  }
  if (cfg.log_level != "debug" && cfg.log_level != "info" && cfg.log_level != "warn" && cfg.log_level != "error") {
    problems.push_back("log_level: must be debug, info, warn or error");
  }
  std::set<std::string> programs;  // (in order, for the message)
  for (const auto& t : model::controlPlaneTypes()) {
    programs.insert(t.programs.begin(), t.programs.end());
  }
  for (const auto& [name, path] : cfg.programs) {
    if (!programs.count(name)) {
      problems.push_back("programs: unknown program \"" + name + "\"; the agent runs " +
                         model::joinNames({programs.begin(), programs.end()}, " and "));
    } else if (path.empty() || path[0] != '/') {
      problems.push_back("programs." + name + ": must be an absolute path");
    }
  }
  if (!cfg.advertise_address.empty()) {
    boost::system::error_code ec;
    boost::asio::ip::make_address(cfg.advertise_address, ec);
    if (ec) {
      problems.push_back("advertise_address: \"" + cfg.advertise_address + "\" is not an IP address");
    }
  }
  for (const auto& [type, limits] : cfg.control_plane_limits) {
    if (const model::ControlPlaneType* t = model::findControlPlaneType(type); t == nullptr || !t->processes) {
      problems.push_back("control_plane_limits: unknown type \"" + type + "\"; " +
                         model::joinNames(model::typeNames([](const model::ControlPlaneType& p) { return p.processes; }),
                                          " and ") +
                         " run as processes here");
    }
    for (const auto& [k, v] : limits) {
      if (k != "cpu" && k != "memory") {
        problems.push_back("control_plane_limits." + type + ": unknown key \"" + k + "\"; cpu and memory can be set");
      } else if (!model::parseQuantity(v, k == "cpu")) {
        problems.push_back("control_plane_limits." + type + "." + k + ": \"" + v +
                           "\" is not a quantity such as 2, 500m, 1Gi");
      }
    }
  }
  for (const auto& [k, v] : cfg.capacity) {
    if (k != "cpu" && k != "memory") {
      problems.push_back("capacity: unknown key \"" + k + "\"; cpu and memory can be set");
    } else if (!model::parseQuantity(v, k == "cpu")) {
      problems.push_back("capacity." + k + ": \"" + v + "\" is not a quantity such as 4, 500m, 16Gi");
    }
  }
  if (!cfg.postgres_dsn.empty()) {
    if (auto r = store::validateDsn(cfg.postgres_dsn); !r) {
      problems.push_back("postgres_dsn: " + r.error().message);
    }
  }
  if (cfg.data_dir.empty()) {
    problems.push_back("data_dir: must not be empty");
  }
  return reportProblems(problems);
}

std::string defaultAgentName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) {
    return "";
  }
  std::string name(buf);
  name = name.substr(0, name.find('.'));
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return name;
}

}  // namespace kflex::agent
