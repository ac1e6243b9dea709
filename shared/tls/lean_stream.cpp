// SPDX-License-Identifier: Apache-2.0
#include "shared/tls/lean_stream.hpp"

#include <openssl/err.h>
#include <unistd.h>

#include <cerrno>

namespace kflex::tls {

Result<LeanStream> LeanStream::adopt(std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> from) {
  SSL* ssl = from->native_handle();
  // Bytes the old stream already took off the socket would be lost with it.
  if (SSL_pending(ssl) != 0 || BIO_ctrl_pending(SSL_get_rbio(ssl)) != 0) {
    return fail("the peer sent TLS data before the upgrade completed");
  }
  SSL_up_ref(ssl);
  net::ip::tcp::socket socket = beast::get_lowest_layer(*from).release_socket();
  BIO* bio = BIO_new_socket(static_cast<int>(socket.native_handle()), BIO_NOCLOSE);
  if (bio == nullptr) {
    SSL_free(ssl);
    return fail("cannot make a socket BIO");
  }
  SSL_set_bio(ssl, bio, bio);  // frees the memory BIO pair's inner end
  from.reset();                // Asio's buffers go; our reference keeps the session
  boost::system::error_code ec;
  socket.native_non_blocking(true, ec);
  if (ec) {
    SSL_free(ssl);
    return fail("cannot make the socket non-blocking: " + ec.message());
  }
  return LeanStream(std::move(socket), ssl);
}

LeanStream::LeanStream(LeanStream&& other) noexcept : socket_(std::move(other.socket_)), ssl_(other.ssl_) {
  other.ssl_ = nullptr;
}

LeanStream::~LeanStream() {
  if (ssl_ != nullptr) {
    SSL_free(ssl_);
  }
}

Result<void> LeanStream::rebind(const executor_type& ex) {
  boost::system::error_code ec;
  auto protocol = socket_.local_endpoint(ec).protocol();
  if (ec) {
    return fail("the connection is gone: " + ec.message());
  }
  int fd = socket_.release(ec);
  if (ec) {
    return fail("cannot move the connection: " + ec.message());
  }
  net::ip::tcp::socket moved(ex);
  moved.assign(protocol, fd, ec);
  if (ec) {
    ::close(fd);
    return fail("cannot move the connection: " + ec.message());
  }
  moved.native_non_blocking(true, ec);
  socket_ = std::move(moved);
  return {};
}

char* LeanStream::gatherBuffer() {
  thread_local std::unique_ptr<char[]> buffer(new char[kGather]);
  return buffer.get();
}

void LeanStream::close() {
  boost::system::error_code ec;
  socket_.close(ec);
}

bool LeanStream::attempt(bool write, void* data, std::size_t size, std::size_t& n, boost::system::error_code& ec,
                         bool& want_read) {
  ERR_clear_error();
  errno = 0;
  int rc = write ? SSL_write_ex(ssl_, data, size, &n) : SSL_read_ex(ssl_, data, size, &n);
  if (rc == 1) {
    ec = {};
    return true;
  }
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    want_read = err == SSL_ERROR_WANT_READ;
    return false;
  }
  unsigned long code = ERR_get_error();
  n = 0;
  if (err == SSL_ERROR_ZERO_RETURN) {
    ec = net::error::eof;  // close_notify
  } else if (err == SSL_ERROR_SYSCALL && code == 0) {
    ec = errno != 0 ? boost::system::error_code(errno, boost::system::system_category())
                    : boost::system::error_code(ssl::error::stream_truncated);
  } else if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    ec = ssl::error::stream_truncated;  // the peer closed without close_notify
  } else {
    ec = boost::system::error_code(static_cast<int>(code), net::error::get_ssl_category());
  }
  ERR_clear_error();
  return true;
}

void teardown(beast::role_type, LeanStream& s, boost::system::error_code& ec) {
  boost::system::error_code ignored;
  if (s.socket().is_open()) {
    ERR_clear_error();
    SSL_shutdown(s.native_handle());  // best effort: one close_notify, no waiting for the answer
    ERR_clear_error();
    s.socket().shutdown(net::socket_base::shutdown_both, ignored);
  }
  s.socket().close(ignored);
  ec = {};
}

}  // namespace kflex::tls
