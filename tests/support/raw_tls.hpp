// SPDX-License-Identifier: Apache-2.0
// A raw TLS connection to the hub that a test drives byte by byte, for requests no well-behaved
// client would send.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "shared/config/kubeconfig.hpp"
#include "shared/net/asio.hpp"
#include "shared/tls/context.hpp"

namespace kflex::test {

struct RawTls {
  net::io_context ioc;
  std::shared_ptr<ssl::context> ctx;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> stream;

  /// Connects with the kubeconfig's credentials. `receive_buffer`: when set, the socket's receive
  /// buffer in bytes (set before connecting, so that the window the server sees stays that small).
  bool connect(const std::string& url, const std::filesystem::path& kubeconfig, int receive_buffer = 0) {
    auto kc = config::Kubeconfig::load(kubeconfig);
    auto a = kc->access().value();
    ctx = tls::makeClientContext({a.ca_pem, a.client_cert_pem, a.client_key_pem}).value();
    stream = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ioc, *ctx);
    auto hostport = url.substr(8);
    auto colon = hostport.rfind(':');
    boost::system::error_code ec;
    auto& socket = beast::get_lowest_layer(*stream).socket();
    if (receive_buffer > 0) {
      socket.open(net::ip::tcp::v4(), ec);
      socket.set_option(net::socket_base::receive_buffer_size(receive_buffer), ec);
    }
    beast::get_lowest_layer(*stream).expires_after(std::chrono::seconds(10));
    beast::get_lowest_layer(*stream).connect(
        net::ip::tcp::endpoint(net::ip::make_address(hostport.substr(0, colon)),
                               uint16_t(std::stoi(hostport.substr(colon + 1)))),
        ec);
    if (ec) {
      return false;
    }
    stream->handshake(ssl::stream_base::client, ec);
    return !ec;
  }

  bool write(const std::string& s) {
    boost::system::error_code ec;
    net::write(*stream, net::buffer(s), ec);
    return !ec;
  }

  /// Everything the server sends until it closes the connection or `timeout` passes.
  std::string readAll(std::chrono::milliseconds timeout, bool* closed = nullptr) {
    beast::get_lowest_layer(*stream).expires_after(timeout);
    std::string out;
    char buf[4096];
    bool ended = false;
    std::function<void()> read = [&] {
      stream->async_read_some(net::buffer(buf), [&](boost::system::error_code ec, size_t n) {
        out.append(buf, n);
        if (ec) {
          ended = ec != beast::error::timeout;
        } else {
          read();
        }
      });
    };
    read();
    ioc.restart();
    ioc.run();
    if (closed != nullptr) {
      *closed = ended;
    }
    return out;
  }

  /// One HTTP response with a Content-Length, leaving the connection open; "" on a timeout
  /// (which closes it) or an error.
  std::string readResponse(std::chrono::milliseconds timeout) {
    beast::get_lowest_layer(*stream).expires_after(timeout);
    std::string out;
    char buf[4096];
    auto complete = [&out] {
      auto end = out.find("\r\n\r\n");
      if (end == std::string::npos) {
        return false;
      }
      auto at = out.find("Content-Length: ");
      size_t length = at == std::string::npos || at > end ? 0 : std::stoul(out.substr(at + 16));
      return out.size() >= end + 4 + length;
    };
    while (!complete()) {
      boost::system::error_code ec;
      size_t n = 0;
      bool done = false;
      stream->async_read_some(net::buffer(buf), [&](boost::system::error_code e, size_t got) {
        ec = e;
        n = got;
        done = true;
      });
      ioc.restart();
      ioc.run();
      out.append(buf, n);
      if (ec || !done) {
        return "";
      }
    }
    beast::get_lowest_layer(*stream).expires_never();
    return out;
  }

  /// True when the server closed the connection within the timeout.
  bool closedWithin(std::chrono::milliseconds timeout) {
    bool closed = false;
    readAll(timeout, &closed);
    return closed;
  }
};

/// The status code of the first HTTP response in `raw` ("HTTP/1.1 400 Bad Request..."), or 0.
inline unsigned statusOf(const std::string& raw) {
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || raw.size() < 12) {
    return 0;
  }
  return unsigned(std::stoi(raw.substr(9, 3)));
}

}  // namespace kflex::test
