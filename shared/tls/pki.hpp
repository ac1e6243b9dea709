// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "shared/common/result.hpp"
#include "shared/common/time.hpp"

namespace kflex::tls {

/// A certificate and its private key, both PEM.
struct KeyPair {
  std::string cert_pem;  ///< The certificate (PEM).
  std::string key_pem;   ///< The private key (PEM, PKCS#8). Never log it.
};

/// What to put into a certificate.
struct CertRequest {
  std::string common_name;                ///< Subject CN (the user name for client certificates).
  std::vector<std::string> organizations; ///< Subject O values (groups for client certificates).
  std::vector<std::string> dns_names;     ///< DNS subjectAltNames.
  std::vector<std::string> ip_addresses;  ///< IP subjectAltNames (v4 or v6 text).
  bool is_ca = false;                     ///< A CA certificate (keyCertSign).
  bool server_auth = false;               ///< extendedKeyUsage serverAuth.
  bool client_auth = false;               ///< extendedKeyUsage clientAuth.
  std::chrono::hours validity{24 * 365};  ///< Lifetime from now (minus 5 minutes of clock skew).
};

/// Makes a new ECDSA P-256 key and a self-signed CA certificate.
Result<KeyPair> createCa(const CertRequest& req, const Clock& clock);
/// Makes a new ECDSA P-256 key and a certificate for it signed by the CA.
Result<KeyPair> issueCertificate(const KeyPair& ca, const CertRequest& req, const Clock& clock);

/// What a certificate says about itself.
struct CertInfo {
  std::string common_name;
  std::vector<std::string> organizations;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  TimePoint not_before;
  TimePoint not_after;
};
/// Reads the subject, SANs and validity of a PEM certificate.
Result<CertInfo> inspectCertificate(const std::string& cert_pem);
/// True when cert_pem was signed by ca_pem (signature check only).
bool signedBy(const std::string& cert_pem, const std::string& ca_pem);
/// Checks that a PEM private key matches the certificate's public key.
Result<void> checkKeyMatches(const std::string& cert_pem, const std::string& key_pem);
/// "sha256:<hex>" of the certificate's SubjectPublicKeyInfo (kubeadm's CA pin format).
Result<std::string> spkiPin(const std::string& cert_pem);
/// True when s parses as an IPv4 or IPv6 address.
bool isIpAddress(const std::string& s);

}  // namespace kflex::tls
