// SPDX-License-Identifier: Apache-2.0
#include "cli/hub_client.hpp"

#include "shared/config/kubeconfig.hpp"

namespace kflex::cli {

Result<std::unique_ptr<HubClient>> HubClient::connect(const std::string& kubeconfig_path, const std::string& context) {
  auto path = config::defaultKubeconfigPath(kubeconfig_path);
  auto kc = config::Kubeconfig::load(path);
  if (!kc) {
    return fail(kc.error().message + "; run 'kflex init --hub-kubeconfig FILE' or pass --kubeconfig");
  }
  std::string ctx = context;
  if (ctx.empty()) {
    Json ext = kc->extension("kflex");
    if (ext.is_object() && ext.contains("hubContext") && kc->hasContext(ext["hubContext"].get<std::string>())) {
      ctx = ext["hubContext"].get<std::string>();
    }
  }
  auto access = kc->access(ctx);
  if (!access) {
    return access.error();
  }
  auto http = net_client::HttpsClient::create(access.value());
  if (!http) {
    return http.error();
  }
  return std::unique_ptr<HubClient>(new HubClient(std::move(http.value()), access->context));
}

Result<Json> HubClient::decode(const Result<net_client::HttpResult>& r) {
  if (!r) {
    last_status_ = 0;
    return r.error();
  }
  last_status_ = r->status;
  Json body = Json::parse(r->body, nullptr, false);
  if (r->status >= 200 && r->status < 300) {
    if (body.is_discarded()) {
      return fail("the hub answered with something that is not JSON");
    }
    return body;
  }
  if (body.is_object() && body.value("kind", "") == "Status") {
    return fail(body.value("message", "request failed with HTTP " + std::to_string(r->status)));
  }
  return fail("the hub answered HTTP " + std::to_string(r->status));
}

Result<Json> HubClient::get(const std::string& path) { return decode(http_->request(http::verb::get, path)); }

Result<Json> HubClient::post(const std::string& path, const Json& body) {
  return decode(http_->request(http::verb::post, path, body.dump()));
}

Result<Json> HubClient::mergePatch(const std::string& path, const Json& patch) {
  return decode(http_->request(http::verb::patch, path, patch.dump(), "application/merge-patch+json"));
}

Result<Json> HubClient::remove(const std::string& path) { return decode(http_->request(http::verb::delete_, path)); }

Result<void> HubClient::watch(const std::string& path, const std::function<bool(const Json&)>& on_event,
                              std::chrono::milliseconds timeout) {
  bool timed_out = false;
  bool stopped = false;
  std::string error;
  auto r = http_->stream(
      path,
      [&](std::string_view line) {
        Json ev = Json::parse(line, nullptr, false);
        if (ev.is_discarded()) {
          return true;
        }
        if (!on_event(ev)) {
          stopped = true;
          return false;
        }
        return true;
      },
      timeout, timed_out);
  if (!r) {
    return r.error();
  }
  last_status_ = r->status;
  if (r->status != 200) {
    Json body = Json::parse(r->body, nullptr, false);
    return fail(body.is_object() ? body.value("message", "watch failed") : "watch failed with HTTP " + std::to_string(r->status));
  }
  if (stopped) {
    return {};
  }
  return fail(timed_out ? "timed out waiting" : "the hub ended the watch");
}

}  // namespace kflex::cli
