// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "shared/net/asio.hpp"

namespace kflex::hub {

/// Who sent a request, as authentication found it.
struct User {
  std::string name;                 ///< Empty when anonymous.
  std::vector<std::string> groups;  ///< From the certificate's O values (or a token's groups).
  bool authenticated() const { return !name.empty(); }
  bool isAdmin() const;
};

/// One HTTP request, decoded.
struct ApiRequest {
  http::verb method = http::verb::get;
  std::string path;                           ///< Percent-decoded path without the query.
  std::string ns;  ///< The namespace the path names (namespaced kinds), set by routing.
  std::map<std::string, std::string> query;   ///< Decoded query parameters (last wins).
  std::string body;
  std::string content_type;
  std::string accept;
  std::string user_agent;
  std::string authorization;  ///< The Authorization header (never logged).
  std::string peer;           ///< Remote address:port.
  User user;
  std::string auth_error;  ///< Why authentication failed, when it did (for the 401 message).
};

/// Streams a chunked response body (watch). write() returns false once the client is gone.
class ChunkWriter {
 public:
  virtual ~ChunkWriter() = default;
  /// Sends one chunk; false when the connection failed.
  virtual net::awaitable<bool> write(std::string data) = 0;
};

/// One HTTP response; `stream` set means a chunked body written by that function.
struct ApiResponse {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::function<net::awaitable<void>(ChunkWriter&)> stream;
};

/// Serves requests under a path prefix (enrollment) instead of the API.
using RouteHandler = std::function<net::awaitable<ApiResponse>(ApiRequest)>;

/// Splits "path?a=b&c=d" and percent-decodes both parts.
void parseTarget(std::string_view target, std::string& path, std::map<std::string, std::string>& query);

}  // namespace kflex::hub
