// SPDX-License-Identifier: Apache-2.0
#include "cli/hub_client.hpp"

#include "shared/config/kubeconfig.hpp"
#include "shared/model/resource.hpp"
#include "shared/tls/pki.hpp"

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

Errc errcOfStatus(unsigned status) {
  switch (status) {
    case 400:
    case 422:
      return Errc::Invalid;
    case 401:
    case 403:
      return Errc::Refused;
    case 404:
      return Errc::NotFound;
    case 409:
      return Errc::Conflict;
    case 504:
      return Errc::Timeout;
    default:
      return status == 429 || status >= 500 ? Errc::Unavailable : Errc::Internal;
  }
}

Result<Json> decodeAnswer(const net_client::HttpResult& answer) {
  Json body = Json::parse(answer.body, nullptr, false);
  if (answer.status >= 200 && answer.status < 300) {
    if (body.is_discarded()) {
      return fail("the hub answered with something that is not JSON");
    }
    return body;
  }
  Errc code = errcOfStatus(answer.status);
  if (body.is_object() && body.value("kind", "") == "Status") {
    return fail(code, body.value("message", "request failed with HTTP " + std::to_string(answer.status)));
  }
  return fail(code, "the hub answered HTTP " + std::to_string(answer.status));
}

Result<Json> HubClient::decode(const Result<net_client::HttpResult>& r) {
  if (!r) {
    return r.error();
  }
  return decodeAnswer(r.value());
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
      timeout);
  if (!r && r.error().code == Errc::Timeout) {
    return fail(Errc::Timeout, "timed out waiting");
  }
  if (!r) {
    return r.error();
  }
  if (r->status != 200) {
    Json body = Json::parse(r->body, nullptr, false);
    return fail(errcOfStatus(r->status), body.is_object() ? body.value("message", "watch failed")
                                                          : "watch failed with HTTP " + std::to_string(r->status));
  }
  if (stopped) {
    return {};
  }
  return fail(Errc::Unavailable, "the hub ended the watch");
}

Result<std::string> createBootstrapToken(HubClient& hub, Json spec) {
  std::string id = tls::randomAlnum(6);
  std::string secret = tls::randomAlnum(16);
  spec["secret"] = secret;
  Json obj = {{"apiVersion", std::string(model::kTenancyGroup) + "/" + model::kTenancyVersion},
              {"kind", "BootstrapToken"},
              {"metadata", {{"name", id}}},
              {"spec", std::move(spec)}};
  if (auto created = hub.post(kTokensPath, obj); !created) {
    return created.error();
  }
  return id + "." + secret;
}

}  // namespace kflex::cli
