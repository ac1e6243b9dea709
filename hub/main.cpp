// SPDX-License-Identifier: Apache-2.0
#include <iostream>

#include <CLI/CLI.hpp>

#include "hub/app/hub_app.hpp"
#include "shared/common/version.hpp"

int main(int argc, char** argv) {
  using namespace kflex;
  CLI::App app{"kflex-hub: the kflex control-plane hub. It stores ControlPlane and PostCreateHook objects\n"
               "and serves them over a Kubernetes-style HTTPS API that kubectl speaks."};
  app.set_version_flag("--version", std::string("kflex-hub ") + kVersion);
  app.require_subcommand(1);
  auto* serve = app.add_subcommand("serve", "Run the hub (state in --data-dir, API on --listen)");
  std::string config_path = "/etc/kflex/hub.yaml";
  std::string data_dir;
  std::string listen;
  std::vector<std::string> sans;
  bool check_only = false;
  serve->add_option("--config", config_path, "Configuration file (YAML); a missing default file is ignored")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->capture_default_str();
  serve->add_option("--data-dir", data_dir, "State directory: hub.db, pki/, admin.kubeconfig [/var/lib/kflex-hub]")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  serve->add_option("--listen", listen, "Address to serve HTTPS on, HOST:PORT; port 0 picks a free one [127.0.0.1:6443]")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  serve->add_option("--tls-san", sans, "Extra DNS name or IP for the serving certificate (repeatable)");
  serve->add_flag("--check-config", check_only, "Validate the configuration, print problems, and exit");
  serve->footer(
      "On first start the hub creates DATA_DIR/hub.db, DATA_DIR/pki/ and DATA_DIR/admin.kubeconfig;\n"
      "use the kubeconfig with kubectl or 'kflex init --hub-kubeconfig'. SIGTERM stops gracefully.\n"
      "Exit codes: 0 clean stop, 1 runtime failure, 2 configuration error.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : hub::kExitConfig;
  }
  hub::HubConfig cfg;
  std::error_code ec;
  bool explicit_config = serve->count("--config") > 0;
  if (explicit_config || std::filesystem::exists(config_path, ec)) {
    if (auto r = hub::loadHubConfig(config_path, cfg); !r) {
      std::cerr << "kflex-hub: configuration errors:\n" << r.error().message << "\n";
      return hub::kExitConfig;
    }
  }
  if (!data_dir.empty()) {
    cfg.data_dir = data_dir;
  }
  if (!listen.empty()) {
    cfg.listen = listen;
  }
  for (const auto& s : sans) {
    cfg.tls_sans.push_back(s);
  }
  if (auto r = hub::validateHubConfig(cfg); !r) {
    std::cerr << "kflex-hub: configuration errors:\n" << r.error().message << "\n";
    return hub::kExitConfig;
  }
  if (check_only) {
    std::cout << "configuration OK\n";
    return hub::kExitOk;
  }
  return hub::runHub(cfg);
}
