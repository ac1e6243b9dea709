// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <string>
#include <string_view>
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
  std::chrono::seconds validity{365 * 24 * 3600};  ///< Lifetime from now; notBefore is backdated by a tenth of it, at most 5 minutes, for clock skew.
};

/// Makes a new ECDSA P-256 key and a self-signed CA certificate.
Result<KeyPair> createCa(const CertRequest& req, const Clock& clock);
/// A certificate for `subject_ca`'s key and subject (a CA), signed by `issuer_ca`: served next to
/// certificates of a new CA so that clients that trust only the old one still verify the hub.
Result<std::string> crossSign(const KeyPair& subject_ca, const KeyPair& issuer_ca, std::chrono::seconds validity,
                              const Clock& clock);
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
/// The public key (PEM "PUBLIC KEY") of a PEM private key: a service-account key pair's .pub.
Result<std::string> publicKeyPem(const std::string& key_pem);
/// "sha256:<hex>" of the certificate's SubjectPublicKeyInfo (kubeadm's CA pin format).
Result<std::string> spkiPin(const std::string& cert_pem);
/// spkiPin of the first certificate, or "" when there is none.
inline std::string pinOrEmpty(const std::string& cert_pem) {
  auto pin = spkiPin(cert_pem);
  return pin ? pin.value() : std::string();
}
/// Makes a new ECDSA P-256 private key (PEM, PKCS#8).
Result<std::string> createPrivateKey();
/// Makes a PKCS#10 certificate signing request for the key, with subject CN=common_name.
Result<std::string> createCsr(const std::string& key_pem, const std::string& common_name);
/// What a verified CSR asks for.
struct CsrInfo {
  std::string common_name;
  std::string public_key_pin;  ///< "sha256:<hex>" of its SubjectPublicKeyInfo.
};
/// Parses a CSR and checks its signature (proof that the requester holds the key).
Result<CsrInfo> inspectCsr(const std::string& csr_pem);
/// Issues a certificate for the CSR's public key. Subject, SANs, usages and lifetime come from
/// `req`, never from the CSR.
Result<std::string> signCsr(const KeyPair& ca, const std::string& csr_pem, const CertRequest& req, const Clock& clock);
/// n characters of [a-z0-9] from the system's cryptographic random source (no modulo bias).
std::string randomAlnum(size_t n);
/// Lower-case hex SHA-256 of data.
std::string sha256Hex(std::string_view data);
/// True when s parses as an IPv4 or IPv6 address.
bool isIpAddress(const std::string& s);

}  // namespace kflex::tls
