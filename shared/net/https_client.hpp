// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "shared/common/result.hpp"
#include "shared/config/kubeconfig.hpp"
#include "shared/net/asio.hpp"

namespace kflex::net_client {

/// A TLS connection over TCP with Beast's timeouts.
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

/// Resolves, connects and does the TLS handshake with SNI and host-name verification, under the
/// stream's current deadline. Returns an error message for a person, or "" on success.
net::awaitable<std::string> openTls(TlsStream& stream, const std::string& host, const std::string& port,
                                    const std::string& server);

/// An HTTP answer.
struct HttpResult {
  unsigned status = 0;
  std::string body;
  std::string content_type;
};

/**
 * A blocking HTTPS client for one Kubernetes-style API server (kubeconfig credentials: client
 * certificate or bearer token, CA verification with the server's host name). One connection per
 * request; every call has a deadline. Thread safety: one thread at a time.
 */
class HttpsClient {
 public:
  static Result<std::unique_ptr<HttpsClient>> create(const config::ClusterAccess& access);
  /// Sends one request and reads the whole answer.
  Result<HttpResult> request(http::verb method, const std::string& target, const std::string& body = "",
                             const std::string& content_type = "application/json",
                             std::chrono::milliseconds timeout = std::chrono::seconds(30));
  /// The same, on the caller's executor (the client must outlive the operation).
  net::awaitable<Result<HttpResult>> asyncRequest(http::verb method, std::string target, std::string body = "",
                                                  std::string content_type = "application/json",
                                                  std::chrono::milliseconds timeout = std::chrono::seconds(30));
  /// GETs a streaming target (watch) and calls on_line per newline-terminated line until it
  /// returns false or the server ends the stream; an error with code Timeout when the deadline
  /// passes first.
  Result<HttpResult> stream(const std::string& target, const std::function<bool(std::string_view)>& on_line,
                            std::chrono::milliseconds timeout);
  /// The same, on the caller's executor.
  net::awaitable<Result<HttpResult>> asyncStream(std::string target, std::function<bool(std::string_view)> on_line,
                                                 std::chrono::milliseconds timeout);
  /// The server URL.
  const std::string& server() const { return access_.server; }

 private:
  /// Connects `stream` to the server under a deadline of `timeout`; "" or why not.
  net::awaitable<std::string> open(TlsStream& stream, std::chrono::milliseconds timeout);
  HttpsClient(config::ClusterAccess access, std::shared_ptr<ssl::context> ctx, std::string host, std::string port)
      : access_(std::move(access)), ctx_(std::move(ctx)), host_(std::move(host)), port_(std::move(port)) {}
  config::ClusterAccess access_;
  std::shared_ptr<ssl::context> ctx_;
  std::string host_;
  std::string port_;
};

}  // namespace kflex::net_client
