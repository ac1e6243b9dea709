// SPDX-License-Identifier: Apache-2.0
#include "agent/runtime/probe.hpp"

#include "shared/config/kubeconfig.hpp"
#include "shared/net/https_client.hpp"

namespace kflex::agent::runtime {

net::awaitable<ProbeResult> ReadyzProbe::run(std::filesystem::path kubeconfig, std::string server,
                                             std::chrono::milliseconds timeout) {
  ProbeResult out;
  std::error_code ec;
  auto mtime = std::filesystem::last_write_time(kubeconfig, ec);
  if (ec) {
    client_.reset();
    out.message = "waiting for the control plane to write its kubeconfig (" + kubeconfig.filename().string() + ")";
    co_return out;
  }
  if (!client_ || mtime != made_from_ || server != server_) {
    client_.reset();
    made_from_ = mtime;
    server_ = server;
    auto kc = config::Kubeconfig::load(kubeconfig);
    auto access = kc ? kc->access() : Result<config::ClusterAccess>(kc.error());
    if (!access) {
      problem_ = "the control plane's kubeconfig is unusable: " + access.error().message;
    } else {
      access->server = server;
      auto client = net_client::HttpsClient::create(access.value());
      if (!client) {
        problem_ = "the control plane's credentials are unusable: " + client.error().message;
      } else {
        client_ = std::move(client.value());
        problem_.clear();
      }
    }
  }
  if (!client_) {
    out.message = problem_;
    co_return out;
  }
  auto res = co_await client_->asyncRequest(http::verb::get, "/readyz", "", "", timeout);
  if (!res) {
    out.message = "the API server does not answer yet: " + res.error().message;
    co_return out;
  }
  out.reachable = true;
  out.ready = res->status == 200;
  if (!out.ready) {
    // The first failing check ("[-]etcd failed: ...") says most; else the first line.
    std::string first = res->body.substr(0, res->body.find('\n'));
    if (auto bad = res->body.find("[-]"); bad != std::string::npos) {
      first = res->body.substr(bad, res->body.find('\n', bad) - bad);
    }
    first = first.substr(0, 200);
    out.message = "the API server is not ready: /readyz answered " + std::to_string(res->status) +
                  (first.empty() ? "" : " (" + first + ")");
  }
  co_return out;
}

net::awaitable<ProbeResult> probeReadyz(std::filesystem::path kubeconfig, std::string server,
                                        std::chrono::milliseconds timeout) {
  ReadyzProbe probe;
  co_return co_await probe.run(std::move(kubeconfig), std::move(server), timeout);
}

}  // namespace kflex::agent::runtime
