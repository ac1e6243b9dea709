// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "shared/tls/pki.hpp"

namespace kflex::tls {
namespace {

TEST(Pki, IssuesCertificatesWithSubjectAndSans) {
  FakeClock clock(std::chrono::system_clock::now());
  auto ca = createCa({.common_name = "test-ca"}, clock);
  ASSERT_TRUE(ca);
  CertRequest req;
  req.common_name = "alice";
  req.organizations = {"system:masters", "team-a"};
  req.dns_names = {"localhost"};
  req.ip_addresses = {"127.0.0.1", "::1"};
  req.client_auth = true;
  auto cert = issueCertificate(ca.value(), req, clock);
  ASSERT_TRUE(cert);
  auto info = inspectCertificate(cert->cert_pem);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->common_name, "alice");
  EXPECT_EQ(info->organizations, (std::vector<std::string>{"system:masters", "team-a"}));
  EXPECT_EQ(info->dns_names, std::vector<std::string>{"localhost"});
  EXPECT_EQ(info->ip_addresses, (std::vector<std::string>{"127.0.0.1", "::1"}));
  EXPECT_TRUE(signedBy(cert->cert_pem, ca->cert_pem));
  EXPECT_TRUE(checkKeyMatches(cert->cert_pem, cert->key_pem));
  EXPECT_FALSE(checkKeyMatches(cert->cert_pem, ca->key_pem));
  EXPECT_NE(cert->key_pem.find("PRIVATE KEY"), std::string::npos);
}

TEST(Pki, ForeignCaDoesNotVerify) {
  FakeClock clock(std::chrono::system_clock::now());
  auto ca1 = createCa({.common_name = "one"}, clock);
  auto ca2 = createCa({.common_name = "two"}, clock);
  auto cert = issueCertificate(ca1.value(), {.common_name = "x"}, clock);
  EXPECT_FALSE(signedBy(cert->cert_pem, ca2->cert_pem));
}

TEST(Pki, ValidityFollowsTheClock) {
  auto start = std::chrono::system_clock::from_time_t(1'800'000'000);
  FakeClock clock(start);
  auto ca = createCa({.common_name = "ca", .validity = std::chrono::hours(48)}, clock);
  auto info = inspectCertificate(ca->cert_pem);
  EXPECT_EQ(info->not_after - start, std::chrono::hours(48));
}

TEST(Pki, PinIsSha256OfSpki) {
  FakeClock clock(std::chrono::system_clock::now());
  auto ca = createCa({.common_name = "ca"}, clock);
  auto pin = spkiPin(ca->cert_pem);
  ASSERT_TRUE(pin);
  EXPECT_EQ(pin->size(), 7u + 64u);
  EXPECT_EQ(pin->rfind("sha256:", 0), 0u);
  EXPECT_FALSE(inspectCertificate("not a cert"));
}

}  // namespace
}  // namespace kflex::tls
