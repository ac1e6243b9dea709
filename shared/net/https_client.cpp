// SPDX-License-Identifier: Apache-2.0
#include "shared/net/https_client.hpp"

#include <openssl/x509.h>

#include "shared/common/time.hpp"
#include "shared/common/util.hpp"

#include "shared/common/version.hpp"
#include "shared/tls/context.hpp"

namespace kflex::net_client {
namespace {

using Stream = TlsStream;

std::string describe(const boost::system::error_code& ec, const std::string& server) {
  if (ec == net::error::connection_refused) {
    return "cannot reach " + server + ": connection refused (is kflex-hub running and listening there?)";
  }
  if (ec == beast::error::timeout) {
    return "cannot reach " + server + ": timed out";
  }
  return "cannot talk to " + server + ": " + ec.message();
}

template <class Request>
void setCommonHeaders(Request& req, const std::string& host, const std::string& token) {
  req.set(http::field::host, host);
  req.set(http::field::user_agent, std::string("kflex/") + kVersion);
  req.set(http::field::accept, "application/json");
  if (!token.empty()) {
    req.set(http::field::authorization, "Bearer " + token);
  }
}

}  // namespace

net::awaitable<std::string> openTls(TlsStream& stream, const std::string& host, const std::string& port,
                                    const std::string& server) {
  net::ip::tcp::resolver resolver(stream.get_executor());
  auto [rec, endpoints] = co_await resolver.async_resolve(host, port, net::as_tuple(net::use_awaitable));
  if (rec) {
    co_return "cannot resolve " + host + ": " + rec.message();
  }
  auto [cec, ep] = co_await beast::get_lowest_layer(stream).async_connect(endpoints, net::as_tuple(net::use_awaitable));
  if (cec) {
    co_return describe(cec, server);
  }
  SSL_set_tlsext_host_name(stream.native_handle(), host.c_str());
  stream.set_verify_callback(ssl::host_name_verification(host));
  auto [hec] = co_await stream.async_handshake(ssl::stream_base::client, net::as_tuple(net::use_awaitable));
  if (hec) {
    long verdict = SSL_get_verify_result(stream.native_handle());
    if (verdict == X509_V_ERR_CERT_NOT_YET_VALID || verdict == X509_V_ERR_CERT_HAS_EXPIRED) {
      // Mostly a clock that is far off on one side: say so, with this host's time.
      co_return "TLS handshake with " + server + " failed: its certificate is " +
          (verdict == X509_V_ERR_CERT_NOT_YET_VALID ? "not valid yet" : "expired") + " by this host's clock (" +
          formatTime(std::chrono::system_clock::now()) + "); if that time is wrong, fix the clock (timedatectl, "
          "chrony or NTP) on this host or on the server";
    }
    co_return "TLS handshake with " + server + " failed: " + hec.message() +
        " (check the CA and server address in the kubeconfig)";
  }
  co_return std::string();
}

Result<std::unique_ptr<HttpsClient>> HttpsClient::create(const config::ClusterAccess& access) {
  std::string host;
  std::string port;
  if (auto r = splitHttpsUrl(access.server, host, port); !r) {
    return r.error();
  }
  tls::TlsConfig cfg{access.ca_pem, access.client_cert_pem, access.client_key_pem};
  auto ctx = tls::makeClientContext(cfg);
  if (!ctx) {
    return ctx.error();
  }
  if (access.ca_pem.empty()) {
    boost::system::error_code ec;
    ctx.value()->set_default_verify_paths(ec);
  }
  if (access.insecure_skip_verify) {
    ctx.value()->set_verify_mode(ssl::verify_none);
  }
  return std::unique_ptr<HttpsClient>(new HttpsClient(access, ctx.value(), host, port));
}

net::awaitable<std::string> HttpsClient::open(TlsStream& stream, std::chrono::milliseconds timeout) {
  beast::get_lowest_layer(stream).expires_after(timeout);
  co_return co_await openTls(stream, host_, port_, access_.server);
}

net::awaitable<Result<HttpResult>> HttpsClient::asyncRequest(http::verb method, std::string target, std::string body,
                                                              std::string content_type,
                                                              std::chrono::milliseconds timeout) {
  HttpResult out;
  Stream stream(co_await net::this_coro::executor, *ctx_);
  auto& tcp = beast::get_lowest_layer(stream);
  if (std::string error = co_await open(stream, timeout); !error.empty()) {
    co_return fail(error);
  }
  http::request<http::string_body> req{method, target, 11};
  setCommonHeaders(req, host_, access_.token);
  if (!body.empty() || method == http::verb::post || method == http::verb::put || method == http::verb::patch) {
    req.set(http::field::content_type, content_type);
    req.body() = body;
  }
  req.prepare_payload();
  auto [wec, wn] = co_await http::async_write(stream, req, net::as_tuple(net::use_awaitable));
  if (wec) {
    co_return fail(describe(wec, access_.server));
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(256 * 1024 * 1024);
  auto [rdec, rn] = co_await http::async_read(stream, buffer, parser, net::as_tuple(net::use_awaitable));
  if (rdec) {
    co_return fail(describe(rdec, access_.server));
  }
  auto& res = parser.get();
  out.status = res.result_int();
  out.content_type = std::string(res[http::field::content_type]);
  out.body = std::move(res.body());
  tcp.expires_after(std::chrono::seconds(1));
  co_await stream.async_shutdown(net::as_tuple(net::use_awaitable));
  co_return out;
}

Result<HttpResult> HttpsClient::request(http::verb method, const std::string& target, const std::string& body,
                                        const std::string& content_type, std::chrono::milliseconds timeout) {
  net::io_context ioc;
  Result<HttpResult> result = fail("no answer");
  net::co_spawn(
      ioc,
      [&]() -> net::awaitable<void> { result = co_await asyncRequest(method, target, body, content_type, timeout); },
      net::detached);
  ioc.run();
  return result;
}

net::awaitable<Result<HttpResult>> HttpsClient::asyncStream(std::string target,
                                                             std::function<bool(std::string_view)> on_line,
                                                             std::chrono::milliseconds timeout) {
  Stream stream(co_await net::this_coro::executor, *ctx_);
  if (std::string error = co_await open(stream, timeout); !error.empty()) {
    co_return fail(error);
  }
  http::request<http::empty_body> req{http::verb::get, target, 11};
  setCommonHeaders(req, host_, access_.token);
  auto [wec, wn] = co_await http::async_write(stream, req, net::as_tuple(net::use_awaitable));
  if (wec) {
    co_return fail(describe(wec, access_.server));
  }
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  auto [hdec, hn] = co_await http::async_read_header(stream, buffer, parser, net::as_tuple(net::use_awaitable));
  if (hdec) {
    co_return fail(describe(hdec, access_.server));
  }
  HttpResult out;
  out.status = parser.get().result_int();
  out.content_type = std::string(parser.get()[http::field::content_type]);
  std::string pending;
  char chunk[16384];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    auto [ec, n] = co_await http::async_read_some(stream, buffer, parser, net::as_tuple(net::use_awaitable));
    if (ec == http::error::need_buffer) {
      ec = {};
    }
    if (ec) {
      if (ec == beast::error::timeout) {
        co_return fail(Errc::Timeout, "no end of the stream from " + access_.server + " within its deadline");
      }
      co_return fail(describe(ec, access_.server));
    }
    pending.append(chunk, sizeof chunk - parser.get().body().size);
    if (out.status != 200) {
      continue;
    }
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (!on_line(line)) {
        co_return out;
      }
    }
  }
  out.body = pending;
  co_return out;
}

Result<HttpResult> HttpsClient::stream(const std::string& target, const std::function<bool(std::string_view)>& on_line,
                                       std::chrono::milliseconds timeout) {
  net::io_context ioc;
  Result<HttpResult> result = fail("no answer");
  net::co_spawn(
      ioc, [&]() -> net::awaitable<void> { result = co_await asyncStream(target, on_line, timeout); },
      net::detached);
  ioc.run();
  return result;
}

}  // namespace kflex::net_client
