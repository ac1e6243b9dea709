// SPDX-License-Identifier: Apache-2.0
#include "cli/fleet.hpp"

#include <filesystem>
#include <iostream>

#include "cli/hub_client.hpp"
#include "shared/common/time.hpp"
#include "shared/common/util.hpp"
#include "shared/model/conditions.hpp"
#include "shared/model/resource.hpp"
#include "shared/protocol/link.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::cli {
namespace {


std::string age(const Json& obj, std::chrono::system_clock::time_point now) {
  auto created = parseTime(obj["metadata"].value("creationTimestamp", ""));
  return created ? humanDuration(std::chrono::duration_cast<std::chrono::seconds>(now - *created)) : "<unknown>";
}

std::string since(const std::string& stamp, std::chrono::system_clock::time_point now) {
  auto t = parseTime(stamp);
  if (!t) {
    return "<never>";
  }
  return humanDuration(std::chrono::duration_cast<std::chrono::seconds>(now - *t)) + " ago";
}

int tokenCreate(HubClient& hub, const std::string& ttl, const std::string& description,
                const std::vector<std::string>& usages, bool single_use, bool quiet, const std::string& agent_config,
                std::ostream& out, std::ostream& err) {
  auto d = parseDuration(ttl);
  if (!d) {
    err << "kflex token create: --ttl \"" << ttl << "\" is not a duration such as 24h, 30m or 0 (never expires)\n";
    return 2;
  }
  for (const auto& u : usages) {
    if (u != "enroll") {
      err << "kflex token create: --usages \"" << u << "\" is not known; the only usage is enroll\n";
      return 2;
    }
  }
  // The CA pin and the URL agents should use come from the hub itself, over this verified link.
  auto info = hub.get(protocol::kEnrollCaPath);
  if (!info) {
    err << "kflex token create: cannot read the hub's CA: " << info.error().message << "\n";
    return 1;
  }
  auto pin = tls::spkiPin(info->value("caBundle", ""));
  if (!pin) {
    err << "kflex token create: the hub's CA bundle is not usable: " << pin.error().message << "\n";
    return 1;
  }
  std::string hub_url = hub.server();
  if (auto urls = info->find("hubURLs"); urls != info->end() && urls->is_array() && !urls->empty()) {
    hub_url = (*urls)[0].get<std::string>();
  }
  Json spec = {{"usages", usages}, {"singleUse", single_use}};
  if (!description.empty()) {
    spec["description"] = description;
  }
  std::string expires;
  if (d->count() > 0) {
    expires = formatTime(std::chrono::system_clock::now() + *d);
    spec["expiration"] = expires;
  }
  auto created = createBootstrapToken(hub, spec);
  if (!created) {
    err << "kflex token create: " << created.error().message << "\n";
    return 1;
  }
  const std::string& token = created.value();
  const std::string id = token.substr(0, 6);
  if (!agent_config.empty()) {
    // What kflex-agent needs to enroll, as its configuration file: the token stays off every
    // command line, and `enroll --config FILE` rewrites the file without it once it is spent.
    std::string text = "# Written by `kflex token create`: the agent's configuration, with a bootstrap token.\n"
                       "# Keep it secret. On the edge host, as /etc/kflex/agent.yaml: sudo kflex-agent enroll.\n";
    text += "hub_urls: " + Json::array({hub_url}).dump() + "\n";
    text += "token: " + Json(token).dump() + "\n";
    text += "ca_cert_hash: " + Json(pin.value()).dump() + "\n";
    if (auto w = writeFileAtomic(agent_config, text, 0600); !w) {
      err << "kflex token create: the token " << id << " was created, but " << agent_config
          << " cannot be written: " << w.error().message << " (delete the token with 'kflex token delete " << id
          << "')\n";
      return 1;
    }
    if (quiet) {
      return 0;
    }
    out << "Bootstrap token " << id << " created ("
        << (expires.empty() ? "never expires" : "expires " + expires) << (single_use ? ", single use" : "")
        << "); the agent's configuration, with the token, is in " << agent_config << " (mode 0600).\n"
        << "Copy it to the edge host, then:\n\n"
        << "  sudo install -D -m 0600 " << std::filesystem::path(agent_config).filename().string()
        << " /etc/kflex/agent.yaml\n"
        << "  sudo kflex-agent enroll      # rewrites /etc/kflex/agent.yaml without the token\n"
        << "  sudo systemctl enable --now kflex-agent\n";
    return 0;
  }
  if (quiet) {
    out << token << "\n";
    return 0;
  }
  out << "Bootstrap token " << token << " created ("
      << (expires.empty() ? "never expires" : "expires " + expires) << (single_use ? ", single use" : "") << ").\n"
      << "Keep it secret: it lets a host enroll as an agent. On the edge host, enroll it and start the\n"
      << "agent (the token goes through a pipe, never onto a command line that other users can read in /proc):\n\n"
      << "  printf '%s\\n' '" << token << "' | sudo kflex-agent enroll --hub " << hub_url
      << " --token-file - --ca-cert-hash " << pin.value() << "\n"
      << "  sudo systemctl enable --now kflex-agent\n";
  return 0;
}

int tokenList(HubClient& hub, std::ostream& out, std::ostream& err) {
  auto list = hub.get(kTokensPath);
  if (!list) {
    err << "kflex token list: " << list.error().message << "\n";
    return 1;
  }
  const Json& items = (*list)["items"];
  if (items.empty()) {
    out << "No bootstrap tokens. Make one with 'kflex token create'.\n";
    return 0;
  }
  auto now = std::chrono::system_clock::now();
  std::vector<std::vector<std::string>> rows = {{"ID", "TTL", "EXPIRES", "USAGES", "USES", "DESCRIPTION"}};
  for (const auto& t : items) {
    const Json spec = t.value("spec", Json::object());
    std::string exp = spec.value("expiration", "");
    std::string ttl = "<forever>";
    if (auto e = parseTime(exp)) {
      ttl = *e <= now ? "<expired>" : humanDuration(std::chrono::duration_cast<std::chrono::seconds>(*e - now));
    }
    std::string usages;
    for (const auto& u : spec.value("usages", Json::array())) {
      usages += (usages.empty() ? "" : ",") + u.get<std::string>();
    }
    int64_t uses = t.value("status", Json::object()).value("uses", int64_t(0));
    std::string used = std::to_string(uses) + (spec.value("singleUse", false) ? "/1" : "");
    rows.push_back({t["metadata"].value("name", ""), ttl, exp.empty() ? "<never>" : exp, usages, used,
                    spec.value("description", "")});
  }
  printTable(rows, out);
  return 0;
}

int tokenDelete(HubClient& hub, const std::string& id_or_token, std::ostream& out, std::ostream& err) {
  std::string id = id_or_token.substr(0, id_or_token.find('.'));
  auto r = hub.remove(std::string(kTokensPath) + "/" + id);
  if (!r) {
    err << "kflex token delete: " << r.error().message << "\n";
    return 1;
  }
  out << "bootstrap token " << id << " deleted\n";
  return 0;
}

int agentList(HubClient& hub, std::ostream& out, std::ostream& err) {
  auto list = hub.get(kAgentsPath);
  if (!list) {
    err << "kflex agent list: " << list.error().message << "\n";
    return 1;
  }
  const Json& items = (*list)["items"];
  if (items.empty()) {
    out << "No agents. Enroll one: 'kflex token create' prints the command to run on the edge host.\n";
    return 0;
  }
  auto now = std::chrono::system_clock::now();
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "READY", "VERSION", "CONTROL-PLANES", "LAST-SEEN", "ADDRESS", "AGE"}};
  for (const auto& a : items) {
    const Json st = a.value("status", Json::object());
    std::string ready = model::conditionStatus(a, "Ready");
    rows.push_back({a["metadata"].value("name", ""), ready.empty() ? "Unknown" : ready, st.value("agentVersion", ""),
                    std::to_string(st.value("controlPlanes", int64_t(0))), since(st.value("lastHeartbeatTime", ""), now),
                    st.value("address", ""), age(a, now)});
  }
  printTable(rows, out);
  return 0;
}

int agentRevoke(HubClient& hub, const std::string& name, std::ostream& out, std::ostream& err) {
  auto r = hub.remove(std::string(kAgentsPath) + "/" + name);
  if (!r) {
    err << "kflex agent revoke: " << r.error().message << "\n";
    return 1;
  }
  out << "agent " << name << " revoked: its link is closed and its certificate is refused from now on.\n"
      << "To bring the host back, enroll it again with a new token ('kflex token create').\n";
  return 0;
}

}  // namespace

FleetCommands::FleetCommands(CLI::App& app) {
  auto* token = app.add_subcommand("token", "Manage bootstrap tokens that let edge hosts enroll as agents");
  token->require_subcommand(1);
  token_create_ = token->add_subcommand("create", "Create a bootstrap token and print the agent's enroll command");
  token_create_->add_option("--ttl", ttl_, "Lifetime (24h, 30m, 7d); 0 never expires")->capture_default_str();
  token_create_->add_option("--description", description_, "What the token is for");
  token_create_->add_option("--usages", usages_, "What it may be used for (enroll)")
      ->delimiter(',')
      ->capture_default_str();
  token_create_->add_flag("--single-use", single_use_, "The token works for one enrollment only");
  token_create_->add_flag("-q,--quiet", quiet_, "Print only the token (with --agent-config: nothing)");
  token_create_->add_option("--agent-config", agent_config_,
                            "Write the agent's configuration (hub URL, token, CA pin) to this file, mode 0600, "
                            "instead of printing the token: kflex-agent enroll --config FILE");
  token_list_ = token->add_subcommand("list", "List bootstrap tokens (their secrets are never shown)");
  token_delete_ = token->add_subcommand("delete", "Delete a bootstrap token (agents enrolled with it stay)");
  token_delete_->add_option("ID", id_, "Token id (the 6 characters before the dot) or the whole token")->required();

  auto* agent = app.add_subcommand("agent", "List and revoke enrolled agents");
  agent->require_subcommand(1);
  agent_list_ = agent->add_subcommand("list", "List agents with their readiness and last heartbeat");
  agent_revoke_ = agent->add_subcommand("revoke", "Revoke an agent: close its link and refuse its certificate");
  agent_revoke_->add_option("NAME", name_, "Agent name")->required();
}

bool FleetCommands::parsed() const {
  for (auto* c : {token_create_, token_list_, token_delete_, agent_list_, agent_revoke_}) {
    if (c->parsed()) {
      return true;
    }
  }
  return false;
}

int FleetCommands::run(const Globals& g, std::ostream& out, std::ostream& err) {
  auto hub = HubClient::connect(g.kubeconfig, g.context);
  if (!hub) {
    err << "kflex: " << hub.error().message << "\n";
    return 1;
  }
  if (token_create_->parsed()) {
    return tokenCreate(*hub.value(), ttl_, description_, usages_, single_use_, quiet_, agent_config_, out, err);
  }
  if (token_list_->parsed()) {
    return tokenList(*hub.value(), out, err);
  }
  if (token_delete_->parsed()) {
    return tokenDelete(*hub.value(), id_, out, err);
  }
  if (agent_list_->parsed()) {
    return agentList(*hub.value(), out, err);
  }
  return agentRevoke(*hub.value(), name_, out, err);
}

}  // namespace kflex::cli
