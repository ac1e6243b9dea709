// SPDX-License-Identifier: Apache-2.0
#include "hub/api/errors.hpp"

#include <array>

#include "shared/common/json_decode.hpp"

namespace kflex::hub {
namespace {

struct ReasonRow {
  std::string_view reason;
  unsigned http;
  Errc code;
};

// Every Status reason the API answers with.
constexpr std::array<ReasonRow, 15> kReasons{{
    {"BadRequest", 400, Errc::Invalid},
    {"Unauthorized", 401, Errc::Refused},
    {"Forbidden", 403, Errc::Refused},
    {"NotFound", 404, Errc::NotFound},
    {"MethodNotAllowed", 405, Errc::Invalid},
    {"NotAcceptable", 406, Errc::Invalid},
    {"AlreadyExists", 409, Errc::Conflict},
    {"Conflict", 409, Errc::Conflict},
    {"Expired", 410, Errc::NotFound},
    {"RequestEntityTooLarge", 413, Errc::Invalid},
    {"UnsupportedMediaType", 415, Errc::Invalid},
    {"Invalid", 422, Errc::Invalid},
    {"InternalError", 500, Errc::Internal},
    {"ServiceUnavailable", 503, Errc::Unavailable},
    {"Timeout", 504, Errc::Timeout},
}};

const ReasonRow* rowOf(std::string_view reason) {
  for (const auto& row : kReasons) {
    if (row.reason == reason) {
      return &row;
    }
  }
  return nullptr;
}

}  // namespace

unsigned httpStatus(Errc code, std::string_view reason) {
  if (const ReasonRow* row = rowOf(reason)) {
    return row->http;
  }
  switch (code) {
    case Errc::NotFound:
      return 404;
    case Errc::Conflict:
      return 409;
    case Errc::Invalid:
      return 422;
    case Errc::Refused:
      return 403;
    case Errc::Unavailable:
      return 503;
    case Errc::Timeout:
      return 504;
    case Errc::Internal:
    case Errc::NoSpace:
      break;
  }
  return 500;
}

unsigned httpStatus(const Decision& d) { return httpStatus(d.code, d.reason); }

ApiResponse statusResponse(unsigned code, const std::string& reason, const std::string& message,
                           const Json& details) {
  Json s = {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", Json::object()}, {"status", "Failure"},
            {"message", message}, {"reason", reason}, {"code", code}};
  if (!details.is_null()) {
    s["details"] = details;
  }
  ApiResponse r;
  r.status = code;
  r.body = dumpSafe(s);  // a message may quote bytes a client sent that are not UTF-8
  return r;
}

ApiResponse fromDecision(const Decision& d) { return statusResponse(httpStatus(d), d.reason, d.message, d.details); }

Error toError(const Decision& d) { return fail(d.code, d.message); }

Decision failure(std::string reason, std::string message, Json details) {
  Decision d;
  d.kind = Decision::Kind::Fail;
  const ReasonRow* row = rowOf(reason);
  d.code = row != nullptr ? row->code : Errc::Internal;
  d.reason = std::move(reason);
  d.message = std::move(message);
  d.details = std::move(details);
  return d;
}

std::string qualifiedResource(const model::ResourceType& t) {
  return t.group.empty() ? t.plural : t.plural + "." + t.group;
}

Decision notFound(const model::ResourceType& t, const std::string& name) {
  return failure("NotFound", qualifiedResource(t) + " \"" + name + "\" not found",
                 {{"name", name}, {"group", t.group}, {"kind", t.plural}});
}

Decision conflict(const model::ResourceType& t, const std::string& name) {
  return failure("Conflict",
                 "Operation cannot be fulfilled on " + qualifiedResource(t) + " \"" + name +
                     "\": the object has been modified; please apply your changes to the latest version and try again",
                 {{"name", name}, {"group", t.group}, {"kind", t.plural}});
}

Decision invalid(const model::ResourceType& t, const std::string& name, const std::vector<model::FieldError>& errors) {
  Json causes = Json::array();
  std::string joined;
  for (const auto& e : errors) {
    causes.push_back({{"reason", e.reason}, {"message", e.message}, {"field", e.field}});
    joined += (joined.empty() ? "" : ", ") + e.field + ": " + e.message;
  }
  if (errors.size() > 1) {
    joined = "[" + joined + "]";
  }
  return failure("Invalid", t.qualifiedKind() + " \"" + name + "\" is invalid: " + joined,
                 {{"name", name}, {"group", t.group}, {"kind", t.kind}, {"causes", causes}});
}

void addWarnings(ApiResponse& r, const std::vector<std::string>& warnings) {
  for (const auto& w : warnings) {
    r.headers.emplace_back("Warning", "299 - " + dumpSafe(Json(w)));
  }
}

}  // namespace kflex::hub
