// SPDX-License-Identifier: Apache-2.0
#pragma once

// Reading a request: its target and query, its body (JSON or YAML; protobuf and CBOR are refused
// as kube-apiserver refuses them for kinds without those encodings), the object it carries
// checked against the endpoint's kind, and the query parameters every handler shares
// (dryRun, fieldManager, fieldValidation, resourceVersion, label and field selectors).

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "hub/api/api_types.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/result.hpp"
#include "shared/model/resource.hpp"
#include "shared/model/selector.hpp"

namespace kflex::hub {

/// True for dryRun=All.
bool isDryRun(const ApiRequest& req);
/// The field manager of a write: fieldManager, else what kubectl and client-go use (the user
/// agent up to its first slash).
std::string managerOf(const ApiRequest& req);
/// Decodes a request's JSON or YAML body. `duplicates`, when given, receives the paths of keys a
/// JSON body sets twice (YAML refuses them in any case).
Result<Json> parseBody(const ApiRequest& req, std::vector<std::string>* duplicates = nullptr);
/// Checks apiVersion/kind (and a namespaced kind's namespace) of a body against the endpoint;
/// fills them in when absent. A Fail decision when they do not match.
std::optional<Decision> checkKind(Json& obj, const model::ResourceType& t, const std::string& ns);
/// What fieldValidation makes of unknown fields.
model::UnknownFields unknownPolicy(const ApiRequest& req);
/// With fieldValidation=Warn the dropped unknown fields come back as warnings.
std::vector<std::string> unknownFieldWarnings(const ApiRequest& req, const std::vector<std::string>& dropped);
/// A Fail decision when fieldValidation is not Ignore, Warn or Strict.
std::optional<Decision> checkFieldValidationParam(const ApiRequest& req);
/// Checks the query, decodes the body and checks its apiVersion/kind: the steps create and update
/// share. Returns the error response, or nothing with the object in `out`.
std::optional<ApiResponse> decodeObject(const ApiRequest& req, const model::ResourceType& t, Json& out,
                                        std::vector<std::string>& warnings);
/// A resourceVersion as kube-apiserver reads one: a decimal revision (no sign, nothing after it,
/// at most 18 digits); nullopt for anything else, "" included.
std::optional<int64_t> parseRevision(std::string_view rv);
/// The resourceVersion of a list or watch in `out`; the error response when it is malformed or
/// newer than `current`.
std::optional<ApiResponse> checkQueryResourceVersion(const ApiRequest& req, int64_t current, int64_t& out);
/// A request body in an encoding the API does not decode (protobuf, CBOR): the 415 response.
std::optional<ApiResponse> refuseEncoding(const ApiRequest& req);

/// A list's or watch's selectors.
struct Selectors {
  model::LabelSelector labels;
  model::FieldSelector fields;
};
/// Parses labelSelector and fieldSelector; the error response when either is malformed.
std::variant<Selectors, ApiResponse> parseSelectors(const ApiRequest& req);

}  // namespace kflex::hub
