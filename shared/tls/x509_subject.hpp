// SPDX-License-Identifier: Apache-2.0
// Internal to shared/tls: the one place that reads a certificate's subject.
#pragma once

#include <string>
#include <vector>

#include <openssl/x509.h>

namespace kflex::tls {

/// Reads the subject's CN and every O value (UTF-8) of a certificate.
void readSubject(X509* cert, std::string& common_name, std::vector<std::string>& organizations);

}  // namespace kflex::tls
