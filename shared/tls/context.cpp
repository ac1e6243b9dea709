// SPDX-License-Identifier: Apache-2.0
#include "shared/tls/context.hpp"

#include "shared/tls/x509_subject.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace kflex::tls {
namespace {

// TLS 1.2 suites: forward-secret AEAD only, ECDSA first (kflex issues ECDSA keys).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384";

Result<void> common(ssl::context& ctx, const TlsConfig& cfg) {
  boost::system::error_code ec;
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                      ssl::context::single_dh_use,
                  ec);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
  SSL_CTX_set_cipher_list(ctx.native_handle(), kTls12Ciphers);
  // Idle connections keep no read/write buffers (thousands of agents, few busy at a time).
  SSL_CTX_set_mode(ctx.native_handle(), SSL_MODE_RELEASE_BUFFERS);
  if (!cfg.ca_pem.empty()) {
    ctx.add_certificate_authority(net::buffer(cfg.ca_pem), ec);
    if (ec) {
      return fail("cannot load CA certificate: " + ec.message());
    }
  }
  if (!cfg.cert_pem.empty()) {
    ctx.use_certificate_chain(net::buffer(cfg.cert_pem), ec);
    if (ec) {
      return fail("cannot load certificate: " + ec.message());
    }
    ctx.use_private_key(net::buffer(cfg.key_pem), ssl::context::pem, ec);
    if (ec) {
      return fail("cannot load private key: " + ec.message());
    }
    if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
      ERR_clear_error();
      return fail("the private key does not belong to the certificate");
    }
  }
  return {};
}

}  // namespace

Result<std::shared_ptr<ssl::context>> makeServerContext(const TlsConfig& cfg) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  if (auto r = common(*ctx, cfg); !r) {
    return r.error();
  }
  // Ask for a client certificate; accept the handshake whatever comes so that the HTTP layer can
  // answer 401 with a Status body (as kube-apiserver does). peerIdentity() reads the verdict.
  ctx->set_verify_mode(ssl::verify_peer);
  ctx->set_verify_callback([](bool, ssl::verify_context&) { return true; });
  // Name the CAs we accept so clients pick the right certificate.
  if (!cfg.ca_pem.empty()) {
    STACK_OF(X509_NAME)* names = sk_X509_NAME_new_null();
    BIO* bio = BIO_new_mem_buf(cfg.ca_pem.data(), int(cfg.ca_pem.size()));
    while (X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
      sk_X509_NAME_push(names, X509_NAME_dup(X509_get_subject_name(x)));
      X509_free(x);
    }
    ERR_clear_error();
    BIO_free(bio);
    SSL_CTX_set_client_CA_list(ctx->native_handle(), names);
  }
  SSL_CTX_set_session_id_context(ctx->native_handle(), reinterpret_cast<const unsigned char*>("kflex"), 5);
  return ctx;
}

Result<std::shared_ptr<ssl::context>> makeClientContext(const TlsConfig& cfg) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  if (auto r = common(*ctx, cfg); !r) {
    return r.error();
  }
  ctx->set_verify_mode(ssl::verify_peer);
  return ctx;
}

PeerIdentity peerIdentity(SSL* ssl) {
  PeerIdentity id;
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) {
    return id;
  }
  id.presented = true;
  long rc = SSL_get_verify_result(ssl);
  id.verified = rc == X509_V_OK;
  auto rootPin = [](STACK_OF(X509) * chain) {
    int n = chain != nullptr ? sk_X509_num(chain) : 0;
    return n > 0 ? publicKeyPin(X509_get0_pubkey(sk_X509_value(chain, n - 1))) : std::string();
  };
  if (id.verified) {
    id.ca_pin = rootPin(SSL_get0_verified_chain(ssl));
  } else {
    id.verify_error = X509_verify_cert_error_string(rc);
    // OpenSSL reports the first error; with an expired certificate, check that the chain is
    // otherwise sound (signed by one of our CAs) before calling it "expired only".
    if (rc == X509_V_ERR_CERT_HAS_EXPIRED) {
      X509_STORE* store = SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl));
      X509_STORE_CTX* vctx = X509_STORE_CTX_new();
      if (vctx != nullptr && X509_STORE_CTX_init(vctx, store, cert, nullptr) == 1) {
        X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(vctx), X509_V_FLAG_NO_CHECK_TIME);
        id.expired_only = X509_verify_cert(vctx) == 1;
        if (id.expired_only) {
          id.ca_pin = rootPin(X509_STORE_CTX_get0_chain(vctx));
        }
      }
      X509_STORE_CTX_free(vctx);
      ERR_clear_error();
    }
  }
  readSubject(cert, id.common_name, id.organizations);
  id.public_key_pin = publicKeyPin(X509_get0_pubkey(cert));
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1) {
    id.not_after = std::chrono::system_clock::from_time_t(timegm(&tm));
  }
  X509_free(cert);
  return id;
}

}  // namespace kflex::tls
