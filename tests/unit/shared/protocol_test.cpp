// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "shared/common/time.hpp"
#include "shared/model/conditions.hpp"
#include "shared/model/resource.hpp"
#include "shared/protocol/link.hpp"
#include "shared/tls/pki.hpp"

namespace kflex {
namespace {

TEST(Protocol, EncodeDecodeRoundTrip) {
  std::string m = protocol::encode(protocol::msg::kHello, "7", 42, {{"name", "edge-1"}});
  auto e = protocol::decode(m);
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->type, "hello");
  EXPECT_EQ(e->id, "7");
  EXPECT_EQ(e->revision, 42);
  EXPECT_EQ(e->body["name"], "edge-1");
}

TEST(Protocol, RejectsWhatItDoesNotKnow) {
  struct Case {
    const char* frame;
    const char* says;
  };
  for (const auto& c : std::vector<Case>{
           {"", "not a JSON object"},
           {"[1,2]", "not a JSON object"},
           {R"({"type":"hello"})", "no protocol version"},
           {R"({"v":"1","type":"hello"})", "no protocol version"},
           {R"({"v":99,"type":"hello"})", "unsupported protocol version 99"},
           {R"({"v":1})", "no type"},
           {R"({"v":1,"type":"dance"})", "unknown message type \"dance\""},
           {R"({"v":1,"type":"lease","id":5})", "id must be a string"},
           {R"({"v":1,"type":"lease","rev":-1})", "revision must be a non-negative"},
           {R"({"v":1,"type":"lease","body":"x"})", "body must be an object"},
       }) {
    auto e = protocol::decode(c.frame);
    ASSERT_FALSE(e) << c.frame;
    EXPECT_NE(e.error().message.find(c.says), std::string::npos) << c.frame << ": " << e.error().message;
  }
  std::string long_id = R"({"v":1,"type":"lease","id":")" + std::string(65, 'a') + R"("})";
  EXPECT_FALSE(protocol::decode(long_id));
}

TEST(Protocol, BackoffIsCappedExponentialWithFullJitter) {
  protocol::Backoff b(std::chrono::milliseconds(100), std::chrono::milliseconds(2000), 1);
  std::vector<int64_t> ceilings = {100, 200, 400, 800, 1600, 2000, 2000, 2000};
  for (int64_t ceiling : ceilings) {
    auto w = b.next().count();
    EXPECT_GE(w, 0);
    EXPECT_LE(w, ceiling);
  }
  // Full jitter: many agents spread over the whole window rather than bunching at its end.
  protocol::Backoff many(std::chrono::milliseconds(1000), std::chrono::milliseconds(1000), 7);
  int low = 0;
  for (int i = 0; i < 1000; ++i) {
    low += many.next().count() < 500 ? 1 : 0;
  }
  EXPECT_GT(low, 400);
  EXPECT_LT(low, 600);
  b.reset();
  EXPECT_LE(b.next().count(), 100);
}

TEST(Protocol, EnrollRequestValidation) {
  EXPECT_FALSE(protocol::enrollRequestFromJson(nlohmann::json::array()));
  EXPECT_FALSE(protocol::enrollRequestFromJson({{"name", "a"}}));
  auto unknown = protocol::enrollRequestFromJson({{"name", "a"}, {"csr", "x"}, {"evil", 1}});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("unknown field \"evil\""), std::string::npos);
  EXPECT_FALSE(protocol::enrollRequestFromJson({{"name", "a"}, {"csr", "x"}, {"labels", {{"k", 1}}}}));
  auto ok = protocol::enrollRequestFromJson({{"name", "a"}, {"csr", "x"}, {"labels", {{"k", "v"}}}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->labels.at("k"), "v");
}

TEST(Pki, CsrIsSignedForItsKeyWithTheSubjectTheHubChooses) {
  SystemClock clock;
  auto ca = tls::createCa({"test-ca"}, clock).value();
  auto key = tls::createPrivateKey().value();
  auto csr = tls::createCsr(key, "i-want-admin").value();
  auto info = tls::inspectCsr(csr);
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->common_name, "i-want-admin");
  tls::CertRequest req;
  req.common_name = "edge-1";
  req.organizations = {"kflex:agents"};
  req.client_auth = true;
  req.validity = std::chrono::hours(24);
  auto cert = tls::signCsr(ca, csr, req, clock);
  ASSERT_TRUE(cert) << cert.error().message;
  EXPECT_TRUE(tls::checkKeyMatches(cert.value(), key));
  EXPECT_TRUE(tls::signedBy(cert.value(), ca.cert_pem));
  auto ci = tls::inspectCertificate(cert.value()).value();
  EXPECT_EQ(ci.common_name, "edge-1");
  EXPECT_EQ(ci.organizations, std::vector<std::string>{"kflex:agents"});
  EXPECT_EQ(tls::spkiPin(cert.value()).value(), info->public_key_pin);
  // A CSR whose signature does not verify (tampered) is refused.
  std::string tampered = csr;
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(tls::inspectCsr(tampered));
  EXPECT_FALSE(tls::signCsr(ca, "not a csr", req, clock));
}

TEST(Pki, RandomTokensAndHashes) {
  std::string a = tls::randomAlnum(16);
  EXPECT_EQ(a.size(), 16u);
  EXPECT_EQ(a.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789"), std::string::npos);
  EXPECT_NE(a, tls::randomAlnum(16));
  EXPECT_EQ(tls::sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(model::isBootstrapToken("abcdef.0123456789abcdef"));
  EXPECT_FALSE(model::isBootstrapToken("abcdef.0123456789abcde"));
  EXPECT_FALSE(model::isBootstrapToken("ABCDEF.0123456789abcdef"));
  EXPECT_FALSE(model::isBootstrapToken("abcdef-0123456789abcdef"));
}

TEST(Conditions, TransitionTimeMovesOnlyWithTheStatus) {
  nlohmann::json status;
  EXPECT_TRUE(model::setCondition(status, "Ready", "True", "A", "m", "t1"));
  EXPECT_FALSE(model::setCondition(status, "Ready", "True", "A", "m", "t2"));
  EXPECT_TRUE(model::setCondition(status, "Ready", "True", "B", "m2", "t3"));
  EXPECT_EQ(status["conditions"][0]["lastTransitionTime"], "t1");
  EXPECT_TRUE(model::setCondition(status, "Ready", "False", "C", "m3", "t4"));
  EXPECT_EQ(status["conditions"][0]["lastTransitionTime"], "t4");
  EXPECT_EQ(model::conditionStatus({{"status", status}}, "Ready"), "False");
  EXPECT_EQ(model::conditionStatus({{"status", status}}, "Synced"), "");
}

}  // namespace
}  // namespace kflex
