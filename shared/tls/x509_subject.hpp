// SPDX-License-Identifier: Apache-2.0
// Internal to shared/tls: the one place that reads a certificate's subject.
#pragma once

#include <string>
#include <vector>

#include <openssl/x509.h>

namespace kflex::tls {

/// Reads the subject's CN and every O value (UTF-8) of a certificate.
void readSubject(X509* cert, std::string& common_name, std::vector<std::string>& organizations);
/// "sha256:<hex>" of a public key's SubjectPublicKeyInfo; empty if it cannot be encoded.
std::string publicKeyPin(EVP_PKEY* pub);

}  // namespace kflex::tls
