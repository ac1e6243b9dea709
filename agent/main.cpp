// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <iostream>
#include <string_view>

#include <CLI/CLI.hpp>

#include "agent/agent_app.hpp"
#include "agent/host/host_check.hpp"
#include "shared/common/util.hpp"
#include "shared/common/version.hpp"

int main(int argc, char** argv) {
  using namespace kflex;
  CLI::App app{"kflex-agent: the kflex edge agent. It enrolls with a kflex hub once, holds a mutual-TLS\n"
               "link to it, and runs the control planes the hub places on this host."};
  app.set_version_flag("--version", std::string("kflex-agent ") + kVersion);
  app.require_subcommand(1);
  app.fallthrough();  // --config and --data-dir also after the subcommand
  std::string config_path = "/etc/kflex/agent.yaml";
  std::vector<std::string> hubs;
  std::string token;
  std::string token_file;
  std::string ca_hash;
  std::string data_dir;
  std::string name;
  std::string labels;
  app.add_option("--config", config_path, "Configuration file (YAML); a missing default file is ignored")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->capture_default_str();
  app.add_option("--data-dir", data_dir, "State directory: agent.db, pki/, cp/ [/var/lib/kflex-agent]");

  // The enrollment flags, which `run` (on its first start) and `enroll` share.
  auto enrollment_options = [&](CLI::App* sub) {
    sub->add_option("--hub", hubs, "Hub URL https://HOST:PORT (repeatable: tried in order)");
    sub->add_option("--token", token,
                    "Bootstrap token from `kflex token create` (visible to local users in /proc while the command "
                    "that started this one runs: prefer --token-file)");
    sub->add_option("--token-file", token_file, "Read the bootstrap token from this file (- for standard input)");
    sub->add_option("--ca-cert-hash", ca_hash, "sha256:HEX pin of the hub's CA public key");
    sub->add_option("--name", name, "Agent name [this host's name]");
    sub->add_option("--labels", labels, "Labels set at enrollment: k=v,k2=v2");
  };
  auto* run = app.add_subcommand("run", "Enroll if needed, then hold the link to the hub until stopped");
  enrollment_options(run);
  // What control planes need, which `run` uses and `check` looks at.
  std::string bin_dir;
  std::string advertise;
  std::string postgres_dsn;
  std::string postgres_password_file;
  std::string cluster_kubeconfig;
  auto runtime_options = [&](CLI::App* sub) {
    sub->add_option("--bin-dir", bin_dir,
                    "Where k3s, kine, kube-apiserver, kube-controller-manager and vcluster are [/usr/local/bin]");
    sub->add_option("--advertise-address", advertise,
                    "IP address control planes are reached at [the address this host reaches the hub from]");
    sub->add_option("--postgres-dsn", postgres_dsn,
                    "The shared PostgreSQL of k8s control planes: postgres://USER@HOST:PORT/postgres?sslmode=... "
                    "(no password in it)");
    sub->add_option("--postgres-password-file", postgres_password_file, "A file holding that user's password");
    sub->add_option("--cluster-kubeconfig", cluster_kubeconfig,
                    "Kubeconfig of a cluster near this host: vcluster control planes run in it");
  };
  runtime_options(run);
  run->footer(
      "First start (--token and --ca-cert-hash needed): makes a key in DATA_DIR/pki (never sent anywhere),\n"
      "checks the hub's CA against --ca-cert-hash, and trades the token for a client certificate. Later\n"
      "starts need only the hub URL (remembered from enrollment). SIGTERM closes the link and exits.\n"
      "Exit codes: 0 clean stop, 1 runtime failure or enrollment refused, 2 configuration error.");

  auto* enroll = app.add_subcommand("enroll", "Enroll this host with a hub once and write agent.yaml for the service");
  enrollment_options(enroll);  // (from flags or --config: checked once both are read)
  enroll->footer(
      "The hub URL, the token and the CA pin come from flags or from --config (as `kflex token create\n"
      "--agent-config FILE` writes it). Makes a key in DATA_DIR/pki (never sent anywhere), checks the hub's CA against --ca-cert-hash,\n"
      "trades the token for a client certificate, and writes the hub URLs, name and labels (never\n"
      "the token) to --config, keeping a previous file as FILE.bak. Then:\n"
      "  systemctl enable --now kflex-agent\n"
      "Already enrolled: says so and changes nothing. Exit codes: 0 enrolled (or already), 1 refused\n"
      "or failed, 2 bad flags.");

  auto* logs = app.add_subcommand("logs", "Show a control plane's program logs (DATA_DIR/cp/NAME/logs)");
  std::string logs_cp;
  std::string logs_component;
  size_t logs_bytes = 64 * 1024;
  logs->add_option("NAME", logs_cp, "Control plane")->required();
  logs->add_option("COMPONENT", logs_component, "Program (k3s, kine, kube-apiserver, ...); all when omitted");
  logs->add_option("--bytes", logs_bytes, "Show at most the last N bytes of each log")->capture_default_str();

  auto* status = app.add_subcommand("status", "Show the agent's local state (works without the hub)");
  bool json = false;
  status->add_flag("--json", json, "Print JSON");

  auto* check = app.add_subcommand("check", "Check whether this host can run the control planes its configuration asks for");
  runtime_options(check);
  check->add_flag("--json", json, "Print JSON");
  check->footer(
      "Looks at root and the namespaces and cgroups the agent uses; each program it launches (k3s, kine,\n"
      "kube-apiserver, kube-controller-manager), its release (`PROGRAM --version`) against the releases\n"
      "kflex supports (docs/launch-contract.md); the shared PostgreSQL (postgres_dsn); the cluster for\n"
      "vClusters (cluster_kubeconfig); the advertise address; the ports k3s cannot move on the host's\n"
      "network. Needs no hub. Exit codes: 0 nothing failed (warnings are things this host will not do),\n"
      "1 something failed, 2 bad flags or configuration.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : agent::kExitConfig;
  }
  if (!token.empty()) {
    // The token stays in the argv of whatever started this process (sudo, a shell) for as long
    // as it runs; this process's own copy is overwritten at once.
    for (int i = 1; i < argc; ++i) {
      std::string_view arg(argv[i]);
      if (arg == token || arg == "--token=" + token) {
        std::fill(argv[i] + (arg.size() - token.size()), argv[i] + arg.size(), '*');
      }
    }
    std::cerr << "kflex-agent: warning: --token puts the token on a command line that every local user can read "
                 "in /proc; use --token-file FILE (or - with the token on standard input)\n";
  }
  if (!token_file.empty()) {
    // Read now, so that a token from a file is checked like one given on the command line.
    std::string text;
    if (token_file == "-") {
      std::getline(std::cin, text);
    } else if (auto t = readFile(token_file); t) {
      text = t.value();
    } else {
      std::cerr << "kflex-agent: --token-file: " << t.error().message << "\n";
      return agent::kExitConfig;
    }
    token = std::string(trim(text));
    if (token.empty()) {
      std::cerr << "kflex-agent: --token-file " << token_file << ": no token in it\n";
      return agent::kExitConfig;
    }
    token_file.clear();
  }
  agent::AgentConfig cfg;
  std::error_code ec;
  // (enroll writes the file: it may not exist yet.)
  if ((app.count("--config") > 0 && !enroll->parsed()) || std::filesystem::exists(config_path, ec)) {
    if (auto r = agent::loadAgentConfig(config_path, cfg); !r) {
      std::cerr << "kflex-agent: configuration errors:\n" << r.error().message << "\n";
      return agent::kExitConfig;
    }
  }
  if (!data_dir.empty()) {
    cfg.data_dir = data_dir;
  }
  if (!hubs.empty()) {
    cfg.hub_urls = hubs;
  }
  if (!token.empty()) {
    cfg.token = token;
  }
  if (!token_file.empty()) {
    cfg.token_file = token_file;
  }
  if (!ca_hash.empty()) {
    cfg.ca_cert_hash = ca_hash;
  }
  if (!name.empty()) {
    cfg.name = name;
  }
  if (!bin_dir.empty()) {
    cfg.bin_dir = bin_dir;
  }
  if (!advertise.empty()) {
    cfg.advertise_address = advertise;
  }
  if (!postgres_dsn.empty()) {
    cfg.postgres_dsn = postgres_dsn;
  }
  if (!postgres_password_file.empty()) {
    cfg.postgres_password_file = postgres_password_file;
  }
  if (!cluster_kubeconfig.empty()) {
    cfg.cluster_kubeconfig = cluster_kubeconfig;
  }
  if (!labels.empty()) {
    if (auto r = agent::parseLabels(labels, cfg.labels); !r) {
      std::cerr << "kflex-agent: --labels: " << r.error().message << "\n";
      return agent::kExitConfig;
    }
  }
  agent::makePathsAbsolute(cfg);  // once: k3s and the others run in other directories
  if (auto r = agent::validateAgentConfig(cfg); !r) {
    std::cerr << "kflex-agent: configuration errors:\n" << r.error().message << "\n";
    return agent::kExitConfig;
  }
  if (status->parsed()) {
    return agent::printStatus(cfg, json, std::cout, std::cerr);
  }
  if (check->parsed()) {
    return agent::printHostCheck(cfg, json, std::cout);
  }
  if (logs->parsed()) {
    return agent::printLogs(cfg, logs_cp, logs_component, logs_bytes, std::cout, std::cerr);
  }
  if (enroll->parsed()) {
    return agent::enrollAgent(cfg, config_path, std::cout, std::cerr);
  }
  return agent::runAgent(cfg);
}
