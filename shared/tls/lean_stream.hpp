// SPDX-License-Identifier: Apache-2.0
// A TLS stream for long-lived, mostly idle connections (agent links): OpenSSL reads and writes
// the socket itself (a socket BIO), so an idle connection holds no buffers of its own. Asio's
// ssl::stream keeps two 17 KiB buffers plus a 17 KiB BIO pair per connection, about 100 KiB;
// with thousands of agents that is most of the hub's memory.
#pragma once

#include <openssl/ssl.h>

#include <cstring>
#include <iterator>
#include <memory>

#include "shared/common/result.hpp"
#include "shared/net/asio.hpp"

namespace kflex::tls {

/**
 * An established TLS connection driven by readiness waits on its socket. Satisfies Beast's
 * AsyncStream (async_read_some / async_write_some with any completion token), so it can carry a
 * websocket::stream. One read and one write may be in flight at once, on the socket's executor
 * (a strand), as with any Asio stream. Thread safety: as for the socket.
 */
class LeanStream {
 public:
  using executor_type = net::ip::tcp::socket::executor_type;

  /// Takes over the connection of an Asio/Beast TLS stream after its handshake (and after any
  /// HTTP exchange on it), then destroys that stream and its buffers. Fails when the old stream
  /// holds TLS data not yet read (the peer sent more than the request).
  static Result<LeanStream> adopt(std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> from);

  LeanStream(LeanStream&& other) noexcept;
  LeanStream& operator=(LeanStream&&) = delete;
  LeanStream(const LeanStream&) = delete;
  LeanStream& operator=(const LeanStream&) = delete;
  ~LeanStream();

  executor_type get_executor() { return socket_.get_executor(); }
  net::ip::tcp::socket& socket() { return socket_; }
  /// Moves the connection onto another event loop (no operation may be in flight).
  Result<void> rebind(const executor_type& ex);
  SSL* native_handle() { return ssl_; }
  /// Closes the socket; operations in flight finish with an error.
  void close();

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return net::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        Op<false, MutableBuffers>{*this, buffers}, token, socket_);
  }
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return net::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        Op<true, ConstBuffers>{*this, buffers}, token, socket_);
  }

  /// Beast's close_socket customization (websocket timeouts).
  friend void beast_close_socket(LeanStream& s) { s.close(); }

 private:
  LeanStream(net::ip::tcp::socket socket, SSL* ssl) : socket_(std::move(socket)), ssl_(ssl) {}

  /// One SSL_read_ex or SSL_write_ex on the first non-empty buffer; true when it finished
  /// (n bytes, or an error in ec), false when it must wait for the socket (want_read says which way).
  bool attempt(bool write, void* data, std::size_t size, std::size_t& n, boost::system::error_code& ec,
               bool& want_read);

  template <bool Write, class Buffers>
  struct Op {
    LeanStream& s;
    Buffers buffers;
    int state = 0;  // 0 start, 1 waiting for the socket, 2 finished (posted)
    boost::system::error_code result_ec{};
    std::size_t result_n = 0;

    template <class Self>
    void operator()(Self& self, boost::system::error_code ec = {}) {
      if (state == 2) {
        self.complete(result_ec, result_n);
        return;
      }
      if (state == 1 && ec) {
        self.complete(ec, 0);
        return;
      }
      bool first = state == 0;
      auto it = net::buffer_sequence_begin(buffers);
      auto end = net::buffer_sequence_end(buffers);
      while (it != end && net::buffer(*it).size() == 0) {
        ++it;
      }
      std::size_t n = 0;
      bool want_read = false;
      if (it == end) {
        finish(self, first, {}, 0);
        return;
      }
      auto b = net::buffer(*it);
      void* data = const_cast<void*>(static_cast<const void*>(b.data()));
      std::size_t size = b.size();
      if constexpr (Write) {
        // A small buffer and what follows it (a WebSocket frame's header, then its payload) go
        // out as one TLS record, not a record of a few bytes each. (A retry gathers the same
        // bytes again: OpenSSL accepts a write buffer that moved.)
        if (size < kGather && std::next(it) != end) {
          size = gather(it, end);
          data = gatherBuffer();
        }
      }
      if (!s.attempt(Write, data, size, n, ec, want_read)) {
        state = 1;
        s.socket_.async_wait(want_read ? net::socket_base::wait_read : net::socket_base::wait_write, std::move(self));
        return;
      }
      finish(self, first, ec, n);
    }

    template <class Self>
    void finish(Self& self, bool first, boost::system::error_code ec, std::size_t n) {
      if (!first) {
        self.complete(ec, n);
        return;
      }
      // Never complete inside the initiating call.
      state = 2;
      result_ec = ec;
      result_n = n;
      net::post(s.socket_.get_executor(), std::move(self));
    }
  };

  // What one record carries at most; buffers up to this are gathered into one write.
  static constexpr std::size_t kGather = 16 * 1024;
  /// This thread's buffer for gathering a write.
  static char* gatherBuffer();
  /// Copies the buffers from `it` on into gatherBuffer(), up to kGather bytes; their size.
  template <class It>
  static std::size_t gather(It it, It end) {
    char* out = gatherBuffer();
    std::size_t size = 0;
    for (; it != end && size < kGather; ++it) {
      auto b = net::buffer(*it);
      std::size_t k = std::min(b.size(), kGather - size);
      std::memcpy(out + size, b.data(), k);
      size += k;
    }
    return size;
  }

  net::ip::tcp::socket socket_;
  SSL* ssl_ = nullptr;
};

// For a tunnel stream over a LeanStream (shared/net/tunnel_stream.hpp), found by
// argument-dependent lookup.
/// A half-close at the TCP level, without close_notify (which would want a read of the peer's
/// answer): Go's crypto/tls (kubectl) reads an end of input at a record boundary as the end.
/// By then the far end has ended its own TLS session inside the tunnel.
inline void shutdownSend(LeanStream& s) {
  boost::system::error_code ignored;
  s.socket().shutdown(net::socket_base::shutdown_send, ignored);
}
inline void closeSocket(LeanStream& s) { s.close(); }
/// Readable: decrypted bytes wait in OpenSSL, or the socket has more.
template <class Token>
auto asyncWaitReadable(LeanStream& s, Token&& token) {
  if (SSL_pending(s.native_handle()) > 0) {
    return net::async_initiate<Token, void(boost::system::error_code)>(
        [ex = s.get_executor()](auto handler) {
          net::post(ex, [h = std::move(handler)]() mutable { std::move(h)(boost::system::error_code{}); });
        },
        token);
  }
  return s.socket().async_wait(net::socket_base::wait_read, std::forward<Token>(token));
}

/// WebSocket teardown (Beast customization points): close_notify, then close the socket.
void teardown(beast::role_type role, LeanStream& s, boost::system::error_code& ec);

template <class Handler>
void async_teardown(beast::role_type role, LeanStream& s, Handler&& handler) {
  boost::system::error_code ec;
  teardown(role, s, ec);
  net::post(s.get_executor(), beast::bind_front_handler(std::forward<Handler>(handler), ec));
}

}  // namespace kflex::tls
