// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "shared/common/result.hpp"
#include "shared/net/asio.hpp"
#include "shared/net/https_client.hpp"

namespace kflex::agent::runtime {

/// The answer of one health probe.
struct ProbeResult {
  bool ready = false;      ///< /readyz answered 200.
  bool reachable = false;  ///< Something answered at all.
  std::string message;     ///< For the Ready condition: stable text (no times), so unchanged health is not re-reported.
};

/**
 * Probes one control plane's /readyz again and again with one TLS client, made again only when
 * its kubeconfig file or the server changes (parsing keys and building a TLS context for every
 * probe costs more than the probe).
 */
class ReadyzProbe {
 public:
  net::awaitable<ProbeResult> run(std::filesystem::path kubeconfig, std::string server,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(3));

 private:
  std::unique_ptr<net_client::HttpsClient> client_;
  std::filesystem::file_time_type made_from_{};
  std::string server_;
  std::string problem_;  // why there is no client
};

/// GET /readyz at `server` with the credentials of `kubeconfig` (its CA, client certificate or
/// token), verifying the server's certificate for that address. Deadline: `timeout`.
net::awaitable<ProbeResult> probeReadyz(std::filesystem::path kubeconfig, std::string server,
                                        std::chrono::milliseconds timeout = std::chrono::seconds(3));
}  // namespace kflex::agent::runtime
