// SPDX-License-Identifier: Apache-2.0
// tls::LeanStream over loopback against Asio's own TLS stream, with a throw-away CA.
#include <gtest/gtest.h>

#include "shared/tls/context.hpp"
#include "shared/tls/lean_stream.hpp"
#include "shared/tls/pki.hpp"

namespace kflex::tls {
namespace {

using AsioTls = beast::ssl_stream<beast::tcp_stream>;

// A LeanStream (the server's end, as the hub holds an agent link) and an Asio TLS client.
struct Pair {
  net::io_context ioc;
  std::shared_ptr<ssl::context> server_ctx;
  std::shared_ptr<ssl::context> client_ctx;
  std::unique_ptr<AsioTls> client;
  std::unique_ptr<LeanStream> lean;

  Pair() {
    FakeClock clock(std::chrono::system_clock::now());
    auto ca = createCa({.common_name = "lean-test-ca"}, clock).value();
    CertRequest serving{.common_name = "lean-test", .ip_addresses = {"127.0.0.1"}};
    serving.server_auth = true;
    auto cert = issueCertificate(ca, serving, clock).value();
    server_ctx = makeServerContext({ca.cert_pem, cert.cert_pem, cert.key_pem}).value();
    client_ctx = makeClientContext({ca.cert_pem, "", ""}).value();

    net::ip::tcp::acceptor acceptor(ioc, {net::ip::make_address("127.0.0.1"), 0});
    client = std::make_unique<AsioTls>(ioc, *client_ctx);
    auto server = std::make_unique<AsioTls>(ioc, *server_ctx);
    beast::get_lowest_layer(*client).socket().connect(acceptor.local_endpoint());
    acceptor.accept(beast::get_lowest_layer(*server).socket());
    bool client_ok = false;
    bool server_ok = false;
    client->async_handshake(ssl::stream_base::client, [&](boost::system::error_code ec) { client_ok = !ec; });
    server->async_handshake(ssl::stream_base::server, [&](boost::system::error_code ec) { server_ok = !ec; });
    ioc.run_for(std::chrono::seconds(10));
    ioc.restart();
    EXPECT_TRUE(client_ok && server_ok);
    auto adopted = LeanStream::adopt(std::move(server));
    EXPECT_TRUE(adopted) << (adopted ? "" : adopted.error().message);
    if (adopted) {
      lean = std::make_unique<LeanStream>(std::move(adopted.value()));
    }
  }

  // The sizes of the client's reads until `total` bytes came: one per TLS record at most.
  std::vector<size_t> readRecords(size_t total, std::string& got) {
    std::vector<size_t> sizes;
    net::co_spawn(ioc, [&]() -> net::awaitable<void> {
      std::string buf(64 * 1024, '\0');
      while (got.size() < total) {
        auto [ec, n] = co_await client->async_read_some(net::buffer(buf), net::as_tuple(net::use_awaitable));
        if (ec) {
          co_return;
        }
        sizes.push_back(n);
        got.append(buf.data(), n);
      }
    }, net::detached);
    ioc.run_for(std::chrono::seconds(10));
    ioc.restart();
    return sizes;
  }
};

// A WebSocket frame's header and its payload, written as two buffers, go out as one record (the
// hub's writes to an agent), not a record of a few bytes and then the rest.
TEST(LeanStream, AHeaderAndItsPayloadGoOutAsOneRecord) {
  Pair p;
  ASSERT_TRUE(p.lean);
  std::string header = "hdr";
  std::string payload(16000, 'p');
  size_t written = 0;
  std::array<net::const_buffer, 3> buffers{net::buffer(header), net::const_buffer(), net::buffer(payload)};
  p.lean->async_write_some(buffers, [&](boost::system::error_code ec, size_t n) { written = ec ? 0 : n; });
  std::string got;
  auto sizes = p.readRecords(header.size() + payload.size(), got);
  EXPECT_EQ(written, header.size() + payload.size());
  EXPECT_EQ(sizes, std::vector<size_t>{header.size() + payload.size()});
  EXPECT_EQ(got, header + payload);
}

// Past one record's worth the gathering stops at 16 KiB; a whole write still arrives intact and
// in order, and one large buffer is written from where it is.
TEST(LeanStream, ALargeWriteOfSeveralBuffersArrivesWhole) {
  Pair p;
  ASSERT_TRUE(p.lean);
  std::string a(10, 'a');
  std::string b(40000, '\0');
  for (size_t i = 0; i < b.size(); ++i) {
    b[i] = char('A' + i % 26);
  }
  std::string c(70000, 'c');
  std::array<net::const_buffer, 3> buffers{net::buffer(a), net::buffer(b), net::buffer(c)};
  size_t written = 0;
  net::async_write(*p.lean, buffers, [&](boost::system::error_code ec, size_t n) { written = ec ? 0 : n; });
  std::string got;
  auto sizes = p.readRecords(a.size() + b.size() + c.size(), got);
  EXPECT_EQ(written, a.size() + b.size() + c.size());
  EXPECT_TRUE(got == a + b + c);
  ASSERT_FALSE(sizes.empty());
  EXPECT_EQ(sizes.front(), 16u * 1024);  // (the first record gathered `a` and the start of `b`)
  for (size_t s : sizes) {
    EXPECT_LE(s, 16u * 1024);
  }
}

}  // namespace
}  // namespace kflex::tls
