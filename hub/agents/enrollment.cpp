// SPDX-License-Identifier: Apache-2.0
#include "hub/agents/enrollment.hpp"

#include <random>

#include "hub/agents/bootstrap_tokens.hpp"
#include "hub/api/errors.hpp"
#include "hub/api/router.hpp"
#include "shared/common/json_decode.hpp"
#include "shared/common/log.hpp"
#include "shared/common/util.hpp"
#include "shared/model/conditions.hpp"
#include "shared/protocol/link.hpp"

namespace kflex::hub {
namespace {

ApiResponse problem(unsigned code, const char* reason, const std::string& message) {
  ApiResponse r;
  r.status = code;
  r.body = Json{{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", Json::object()}, {"status", "Failure"},
                {"message", message}, {"reason", reason}, {"code", code}}
               .dump();
  return r;
}

}  // namespace

EnrollmentService::EnrollmentService(ApiClient& api, ObjectStore& store, const model::Registry& registry,
                                     tls::KeyPair ca, std::string ca_bundle, const Clock& clock, EnrollOptions options)
    : api_(api), store_(store), agents_(tenancyType(registry, "agents")), tokens_(tenancyType(registry, "bootstraptokens")),
      ca_(std::move(ca)), ca_bundle_(std::move(ca_bundle)), clock_(clock), options_(std::move(options)) {
  ca_pin_ = tls::pinOrEmpty(ca_.cert_pem);
}

std::string EnrollmentService::caBundle() const {
  if (!options_.previous_ca_pem.empty() && clock_.now() < options_.previous_until) {
    return ca_bundle_ + options_.previous_ca_pem;
  }
  return ca_bundle_;
}

Result<std::string> EnrollmentService::issue(const std::string& name, const std::string& csr_pem) const {
  tls::CertRequest req;
  req.common_name = name;
  req.organizations = {model::kAgentGroup};
  req.client_auth = true;
  req.validity = options_.cert_validity;
  return tls::signCsr(ca_, csr_pem, req, clock_);
}

net::awaitable<ApiResponse> EnrollmentService::handle(ApiRequest req) {
  if (req.path == protocol::kEnrollCaPath) {
    if (req.method != http::verb::get) {
      co_return problem(405, "MethodNotAllowed", "use GET for " + req.path);
    }
    ApiResponse r;
    r.body = Json{{"kind", "EnrollmentInfo"}, {"caBundle", caBundle()}, {"hubURLs", options_.hub_urls}}.dump();
    co_return r;
  }
  if (req.path == protocol::kEnrollPath) {
    if (req.method != http::verb::post) {
      co_return problem(405, "MethodNotAllowed", "use POST for " + req.path);
    }
    co_return co_await enroll(std::move(req));
  }
  co_return problem(404, "NotFound", "the server could not find the requested resource");
}

net::awaitable<ApiResponse> EnrollmentService::enroll(ApiRequest req) {
  const std::string kRetry = "; create a new one with `kflex token create` on the hub";
  std::string token;
  if (req.authorization.rfind("Bearer ", 0) == 0) {
    token = trim(req.authorization.substr(7));
  }
  if (!model::isBootstrapToken(token)) {
    co_return problem(401, "Unauthorized",
                      "enrollment needs a bootstrap token of the form [a-z0-9]{6}.[a-z0-9]{16} in the "
                      "Authorization header" + kRetry);
  }
  std::string token_id = token.substr(0, 6);
  // Every token failure gets the same answer, so a caller cannot probe which ids exist.
  const std::string bad_token = "the bootstrap token " + token_id + " is unknown, expired, used up or not for enrollment" + kRetry;
  ObjectPtr rec = store_.get(resourceKey(tokens_), token_id);
  if (!rec) {
    log::warn("enrollment refused", {{"reason", "unknown token"}, {"token_id", token_id}, {"peer", req.peer}});
    co_return problem(401, "Unauthorized", bad_token);
  }
  // Why this token cannot enroll ("" when it can).
  const std::string secret = token.substr(7);
  auto tokenProblem = [&](const Json& tok) -> std::string {
    if (std::string why = hub::tokenProblem(tok, secret, "enroll", clock_.now()); !why.empty()) {
      return why;
    }
    if (tok.value("spec", Json::object()).value("singleUse", false) &&
        tok.value("status", Json::object()).value("uses", int64_t(0)) > 0) {
      return "single-use token already used";
    }
    return "";
  };
  Json tok = Json::parse(rec->bytes);
  std::string why = tokenProblem(tok);
  // A single-use token is used up by its first enrollment; the same host retrying that
  // enrollment (its answer was lost) is let through below, once its key is known.
  const bool used_up = why == "single-use token already used";
  if (!why.empty() && !used_up) {
    log::warn("enrollment refused", {{"reason", why}, {"token_id", token_id}, {"peer", req.peer}});
    co_return problem(401, "Unauthorized", bad_token);
  }

  if (req.body.size() > protocol::kMaxEnrollBytes) {
    co_return problem(413, "RequestEntityTooLarge", "the enrollment request is larger than 64 KiB");
  }
  auto decoded = decodeJson(req.body);
  Json body = decoded ? std::move(*decoded) : Json();
  auto er = protocol::enrollRequestFromJson(body);
  if (!er) {
    co_return problem(400, "BadRequest", "malformed enrollment request: " + er.error().message);
  }
  const std::string& name = er->name;
  if (!isDns1123Label(name)) {
    co_return problem(400, "BadRequest",
                      "the agent name \"" + name.substr(0, 80) +
                          "\" is not valid: use at most 63 lower-case letters, digits and '-', starting and ending "
                          "with a letter or digit (set it with --name)");
  }
  auto csr = tls::inspectCsr(er->csr_pem);
  if (!csr) {
    co_return problem(400, "BadRequest", "the certificate signing request is not usable: " + csr.error().message);
  }

  // An agent of that name exists: the same key (a retried enrollment) gets its certificate
  // again; another key is a different host claiming a taken name.
  bool retry = false;
  if (ObjectPtr existing = store_.get(resourceKey(agents_), name)) {
    Json a = Json::parse(existing->bytes);
    std::string pin = a.value("status", Json::object()).value("certificate", Json::object()).value("publicKeyPin", "");
    if (pin != csr->public_key_pin && used_up) {
      log::warn("enrollment refused", {{"reason", why}, {"token_id", token_id}, {"peer", req.peer}});
      co_return problem(401, "Unauthorized", bad_token);
    }
    if (pin != csr->public_key_pin) {
      log::warn("enrollment refused", {{"reason", "name taken"}, {"agent", name}, {"peer", req.peer}});
      co_return problem(409, "AlreadyExists",
                        "an agent named \"" + name + "\" is already enrolled with another key; choose another name "
                        "with --name, or revoke the old one first with `kflex agent revoke " + name + "`");
    }
    retry = true;
  }

  if (used_up) {
    std::string last_user = tok.value("status", Json::object()).value("lastUsedBy", "");
    if (!retry || last_user != name) {
      log::warn("enrollment refused", {{"reason", why}, {"token_id", token_id}, {"peer", req.peer}});
      co_return problem(401, "Unauthorized", bad_token);
    }
  }
  // Use up the token first, with the read resourceVersion: two enrollments racing for a
  // single-use token cannot both win, and a busy multi-use token is simply read again.
  std::string now = formatTime(clock_.now());
  // Many hosts enrolling with one token at once all update it: retry with a growing, random
  // pause (so nobody starves) for up to 10 s.
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::minstd_rand jitter(std::random_device{}());
  for (int attempt = 0; !used_up; ++attempt) {
    Json token_status = tok.value("status", Json::object());
    token_status["uses"] = token_status.value("uses", int64_t(0)) + 1;
    token_status["lastUsedTime"] = now;
    token_status["lastUsedBy"] = name;
    tok["status"] = token_status;
    Result<Json> used = co_await api_.updateStatus(tokens_, tok);
    if (used) {
      break;
    }
    bool busy = used.error().code == Errc::Conflict && std::chrono::steady_clock::now() < give_up;
    if (busy) {
      net::steady_timer pause(co_await net::this_coro::executor);
      pause.expires_after(std::chrono::microseconds(jitter() % (500u << std::min(attempt, 5))));
      co_await pause.async_wait(net::as_tuple(net::use_awaitable));
    }
    ObjectPtr again = busy ? store_.get(resourceKey(tokens_), token_id) : nullptr;
    if (again) {
      tok = Json::parse(again->bytes);
      why = tokenProblem(tok);
    }
    if (!again || !why.empty()) {
      log::warn("enrollment refused", {{"reason", why.empty() ? "token changed concurrently" : why},
                                       {"token_id", token_id}, {"peer", req.peer}});
      co_return problem(401, "Unauthorized", bad_token);
    }
  }

  if (!retry) {
    Json agent = {{"apiVersion", agents_.apiVersion()}, {"kind", agents_.kind},
                  {"metadata", {{"name", name}, {"labels", er->labels}}}, {"spec", Json::object()}};
    Result<Json> created = co_await api_.create(agents_, agent);
    if (!created && created.error().code == Errc::Conflict) {
      co_return problem(409, "AlreadyExists", "an agent named \"" + name + "\" was enrolled at the same moment; choose another name");
    }
    if (!created) {
      unsigned status = httpStatus(created.error().code, "");
      co_return problem(status == 422 ? 400 : status, "BadRequest", "the agent cannot be created: " + created.error().message);
    }
  }
  auto cert = issue(name, er->csr_pem);
  if (!cert) {
    co_return problem(500, "InternalError", "cannot issue the certificate: " + cert.error().message);
  }
  auto info = tls::inspectCertificate(cert.value());
  std::string not_after = info ? formatTime(info->not_after) : "";
  std::string pin = csr->public_key_pin;
  Result<void> st = co_await api_.changeStatus(agents_, name, [&](Json& obj) {
    Json& status = obj["status"];
    if (!status.is_object()) {
      status = Json::object();
    }
    status["certificate"] = {{"publicKeyPin", pin}, {"notAfter", not_after}};
    if (model::conditionStatus(obj, "Ready").empty()) {
      model::setCondition(status, "Ready", "Unknown", "Enrolled", "the agent has enrolled and not connected yet", now);
    }
    return true;
  });
  if (!st) {
    co_return problem(500, "InternalError", "cannot record the agent's key: " + st.error().message);
  }
  log::info("agent enrolled", {{"agent", name}, {"token_id", token_id}, {"peer", req.peer}, {"retry", retry ? "true" : "false"}});
  protocol::EnrollResponse out{cert.value(), caBundle(), options_.hub_urls};
  ApiResponse r;
  r.status = 201;
  r.body = protocol::toJson(out).dump();
  co_return r;
}

}  // namespace kflex::hub
