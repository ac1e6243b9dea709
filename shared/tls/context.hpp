// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "shared/common/result.hpp"
#include "shared/net/asio.hpp"

namespace kflex::tls {

/// Immutable inputs of a TLS context. All PEM text.
struct TlsConfig {
  std::string ca_pem;    ///< CA bundle used to verify the peer.
  std::string cert_pem;  ///< Our certificate (optional for a client without one).
  std::string key_pem;   ///< Our private key.
};

/// A server context: TLS >= 1.2, our certificate, client certificates requested and verified
/// against ca_pem, but not required at the handshake (the HTTP layer answers 401 instead).
Result<std::shared_ptr<ssl::context>> makeServerContext(const TlsConfig& cfg);
/// A client context: TLS >= 1.2, peer verified against ca_pem, our certificate if given.
Result<std::shared_ptr<ssl::context>> makeClientContext(const TlsConfig& cfg);

/// The verified peer identity of a TLS connection, if any.
struct PeerIdentity {
  bool presented = false;  ///< The peer sent a certificate.
  bool verified = false;   ///< It chains to our CA and is within its validity.
  std::string common_name;
  std::vector<std::string> organizations;
  std::string verify_error;  ///< Why verification failed, for logs.
  bool expired_only = false;  ///< Verification failed only because the certificate has expired.
  std::string public_key_pin; ///< "sha256:<hex>" of the certificate's public key.
  std::string ca_pin;         ///< The same for the CA it chains to (when the chain is sound).
  std::chrono::system_clock::time_point not_after;
};
/// Reads the peer identity after the handshake.
PeerIdentity peerIdentity(SSL* ssl);

}  // namespace kflex::tls
