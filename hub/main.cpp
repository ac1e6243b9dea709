// SPDX-License-Identifier: Apache-2.0
#include <iostream>

#include <CLI/CLI.hpp>

#include "hub/app/hub_app.hpp"
#include "hub/app/migrate.hpp"
#include "shared/common/time.hpp"
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
  std::string datastore;
  std::string datastore_password_file;
  serve->add_option("--datastore", datastore,
                    "PostgreSQL URI to store objects in, postgres://USER@HOST:PORT/DB?sslmode=... (no password in "
                    "it) [SQLite in DATA_DIR/hub.db]")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  serve->add_option("--datastore-password-file", datastore_password_file,
                    "File holding the datastore's password (its first line)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::string secrets_key_file;
  serve->add_option("--secrets-key-file", secrets_key_file,
                    "With --datastore: keep the hub's CA and keys in the database, sealed with this key (base64 of 32 "
                    "bytes, `openssl rand -base64 32`); give every replica the same file")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  serve->add_option("--listen", listen, "Address to serve HTTPS on, HOST:PORT; port 0 picks a free one [127.0.0.1:6443]")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  serve->add_option("--tls-san", sans, "Extra DNS name or IP for the serving certificate (repeatable)");
  std::string peer_url;
  serve->add_option("--peer-url", peer_url,
                    "With replicas: https://HOST:PORT at which the other replicas reach this one (e.g. the pod's "
                    "IP), for tunnel streams to agents linked here [the listen address, or this host's name when "
                    "listening on all addresses]")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::string hosting_kubeconfig;
  std::string hosting_context;
  serve->add_option("--hosting-kubeconfig", hosting_kubeconfig,
                    "Kubeconfig of the cluster the hub runs on; control planes of type host are that cluster")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  serve->add_option("--hosting-context", hosting_context, "Context of --hosting-kubeconfig [its current context]")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  serve->add_flag("--check-config", check_only, "Validate the configuration, print problems, and exit");
  serve->footer(
      "On first start the hub creates DATA_DIR/hub.db, DATA_DIR/pki/ and DATA_DIR/admin.kubeconfig;\n"
      "use the kubeconfig with kubectl or 'kflex init --hub-kubeconfig'. SIGTERM stops gracefully.\n"
      "Exit codes: 0 clean stop, 1 runtime failure, 2 configuration error.");
  auto* ca = app.add_subcommand("ca", "Manage the hub's certificate authority");
  ca->require_subcommand(1);
  auto* rotate = ca->add_subcommand(
      "rotate", "Replace the hub CA with a new one; the previous one stays trusted for an overlap period");
  std::string overlap_text;
  rotate->add_option("--config", config_path, "Configuration file (YAML); a missing default file is ignored")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->capture_default_str();
  rotate->add_option("--data-dir", data_dir, "State directory of the hub [/var/lib/kflex-hub]")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  rotate->add_option("--datastore", datastore, "The hub's PostgreSQL URI, when its CA is kept there")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  rotate->add_option("--datastore-password-file", datastore_password_file, "File holding the datastore's password")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  rotate->add_option("--secrets-key-file", secrets_key_file, "The key that seals the CA in the datastore")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  rotate->add_option("--overlap", overlap_text,
                     "How long the previous CA stays trusted (a duration such as 888h); default: the agent "
                     "certificate validity plus the expired-certificate grace window, so that every agent, even "
                     "one offline for a while, renews from the new CA before the old one is retired");
  rotate->footer(
      "Run it on the hub's host, then restart the hub. During the overlap the hub trusts both CAs, serves a\n"
      "certificate chain that clients knowing only the previous CA can verify, and sends every connecting\n"
      "agent the new CA bundle and a certificate from the new CA. No agent has to be re-enrolled.");
  auto* migrate = app.add_subcommand(
      "migrate", "Move a stopped SQLite hub's objects, events and PKI into an empty PostgreSQL database");
  std::string migrate_from;
  std::string migrate_to;
  migrate->add_option("--from-sqlite", migrate_from, "Data dir of the hub to move (its hub.db and pki/)")->required();
  migrate->add_option("--to", migrate_to, "PostgreSQL URI of an empty database, postgres://USER@HOST:PORT/DB?sslmode=...")
      ->required();
  migrate->add_option("--datastore-password-file", datastore_password_file, "File holding the database's password");
  migrate->add_option("--secrets-key-file", secrets_key_file,
                      "Also move the CA and keys into the database, sealed with this key (as serve --secrets-key-file)");
  migrate->footer(
      "Stop the hub first. Every object keeps its resourceVersion and the retained events move too, so\n"
      "watches resume across the move; kubeconfigs and agent certificates stay valid (same CA). Then\n"
      "serve with --datastore (and --secrets-key-file). The SQLite file is left as it was: keep it as a backup.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : hub::kExitConfig;
  }
  if (*migrate) {
    hub::HubConfig to;
    to.datastore = migrate_to;
    to.datastore_password_file = datastore_password_file;
    to.secrets_key_file = secrets_key_file;
    to.data_dir = migrate_from;
    hub::makePathsAbsolute(to);
    if (auto r = hub::validateHubConfig(to); !r) {
      std::cerr << "kflex-hub migrate: " << r.error().message << "\n";
      return hub::kExitConfig;
    }
    auto r = hub::migrateFromSqlite(to.data_dir, to);
    if (!r) {
      std::cerr << "kflex-hub migrate: " << r.error().message << "\n";
      return r.error().code == Errc::Invalid ? hub::kExitConfig : hub::kExitRuntime;
    }
    std::cout << r.value() << "\n";
    return hub::kExitOk;
  }
  hub::HubConfig cfg;
  std::error_code ec;
  bool explicit_config = serve->count("--config") > 0 || rotate->count("--config") > 0;
  if (explicit_config || std::filesystem::exists(config_path, ec)) {
    if (auto r = hub::loadHubConfig(config_path, cfg); !r) {
      std::cerr << "kflex-hub: configuration errors:\n" << r.error().message << "\n";
      return hub::kExitConfig;
    }
  }
  if (!data_dir.empty()) {
    cfg.data_dir = data_dir;
  }
  if (!peer_url.empty()) {
    cfg.peer_url = peer_url;
  }
  if (!listen.empty()) {
    cfg.listen = listen;
  }
  if (!datastore.empty()) {
    cfg.datastore = datastore;
  }
  if (!datastore_password_file.empty()) {
    cfg.datastore_password_file = datastore_password_file;
  }
  if (!secrets_key_file.empty()) {
    cfg.secrets_key_file = secrets_key_file;
  }
  if (!hosting_kubeconfig.empty()) {
    cfg.hosting_kubeconfig = hosting_kubeconfig;
  }
  if (!hosting_context.empty()) {
    cfg.hosting_context = hosting_context;
  }
  for (const auto& s : sans) {
    cfg.tls_sans.push_back(s);
  }
  hub::makePathsAbsolute(cfg);
  if (auto r = hub::validateHubConfig(cfg); !r) {
    std::cerr << "kflex-hub: configuration errors:\n" << r.error().message << "\n";
    return hub::kExitConfig;
  }
  if (*rotate) {
    std::chrono::seconds overlap = cfg.agent_cert_validity + cfg.agent_expired_grace;
    if (!overlap_text.empty()) {
      auto d = parseDuration(overlap_text);
      if (!d || d->count() <= 0) {
        std::cerr << "kflex-hub ca rotate: --overlap \"" << overlap_text
                  << "\" is not a positive duration (examples: 888h, 30m, 90s)\n";
        return hub::kExitConfig;
      }
      overlap = std::chrono::duration_cast<std::chrono::seconds>(*d);
    }
    SystemClock clock;
    auto r = hub::rotateCa(cfg, overlap, clock);
    if (!r) {
      std::cerr << "kflex-hub ca rotate: " << r.error().message << "\n";
      return hub::kExitRuntime;
    }
    std::cout << r.value() << "\n";
    return hub::kExitOk;
  }
  if (check_only) {
    std::cout << "configuration OK\n";
    return hub::kExitOk;
  }
  return hub::runHub(cfg);
}
