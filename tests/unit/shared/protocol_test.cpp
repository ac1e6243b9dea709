// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "shared/common/time.hpp"
#include "shared/model/conditions.hpp"
#include "shared/common/util.hpp"
#include "shared/model/resource.hpp"
#include "shared/protocol/messages.hpp"
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

TEST(Protocol, HelloIsReadFieldByField) {
  auto h = protocol::Hello::fromJson(protocol::Json::parse(R"({
      "name": "edge-1", "acknowledgedRevision": 12, "caBundleHash": "ab", "hostname": "h", "os": "linux",
      "capacity": {"cpu": "4", "memory": "8Gi"}, "controlPlaneTypes": ["k3s", "k8s"], "extra": [1]})"));
  ASSERT_TRUE(h) << h.error().message;
  EXPECT_EQ(h->name, "edge-1");
  EXPECT_EQ(h->acknowledged_revision, 12);
  EXPECT_EQ(h->ca_bundle_hash, "ab");
  EXPECT_EQ(h->facts, (std::map<std::string, std::string>{{"hostname", "h"}, {"os", "linux"}}));
  EXPECT_EQ(h->capacity.at("memory"), "8Gi");
  EXPECT_EQ(h->control_plane_types, (std::vector<std::string>{"k3s", "k8s"}));
  // Nothing said: defaults (and no list of types: an older agent).
  auto empty = protocol::Hello::fromJson(protocol::Json::object());
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->acknowledged_revision, 0);
  EXPECT_FALSE(empty->control_plane_types);
  EXPECT_EQ(empty->tunnel, 0);  // an agent from before the tunnel
  // The tunnel's version, said and read back (only when it speaks one).
  protocol::Hello with_tunnel;
  with_tunnel.tunnel = 1;
  EXPECT_EQ(protocol::Hello::fromJson(with_tunnel.toJson())->tunnel, 1);
  EXPECT_FALSE(protocol::Hello{}.toJson().contains("tunnel"));

  for (const auto& [body, says] : std::vector<std::pair<const char*, const char*>>{
           {R"({"name": 5})", "hello: name must be a string, not a number"},
           {R"({"acknowledgedRevision": "12"})", "acknowledgedRevision must be an integer, not a string"},
           {R"({"acknowledgedRevision": 1.5})", "acknowledgedRevision must be an integer, not a number"},
           {R"({"acknowledgedRevision": 18446744073709551615})", "acknowledgedRevision is out of range"},
           {R"({"caBundleHash": {}})", "caBundleHash must be a string, not an object"},
           {R"({"kernelVersion": ["6"]})", "kernelVersion must be a string, not an array"},
           {R"({"capacity": "lots"})", "capacity must be an object, not a string"},
           {R"({"capacity": {"cpu": 4}})", "capacity.cpu must be a string, not a number"},
           {R"({"controlPlaneTypes": "k3s"})", "controlPlaneTypes must be an array, not a string"},
           {R"({"controlPlaneTypes": ["k3s", true]})", "controlPlaneTypes[1] must be a string"},
           {R"({"tunnel": "1"})", "tunnel must be an integer, not a string"},
       }) {
    auto r = protocol::Hello::fromJson(protocol::Json::parse(body));
    ASSERT_FALSE(r) << body;
    EXPECT_NE(r.error().message.find(says), std::string::npos) << body << ": " << r.error().message;
  }
}

TEST(Protocol, StatusReportIsReadFieldByField) {
  const char* good = R"({"controlPlane": "cp-1", "seq": 7, "observedGeneration": 2,
      "conditions": [{"type": "Ready", "status": "True", "reason": "Available", "message": "ok"}],
      "endpoint": "https://10.0.0.1:6443", "components": [{"name": "k3s", "state": "Running", "restarts": 1}],
      "kubeconfig": {"secretName": "k3s-config", "data": {"config-incluster": "x"}},
      "postCreateHooks": {"h": true}, "postCreateHookCompleted": true, "hookLabels": {"a": "b"}, "removed": true})";
  auto r = protocol::StatusReport::fromJson(protocol::Json::parse(good));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->control_plane, "cp-1");
  EXPECT_EQ(r->seq, 7);
  EXPECT_EQ(r->observed_generation, 2);
  ASSERT_EQ(r->conditions.size(), 1u);
  EXPECT_EQ(r->conditions[0].reason, "Available");
  EXPECT_EQ(r->endpoint, "https://10.0.0.1:6443");
  ASSERT_TRUE(r->kubeconfig);
  EXPECT_EQ(r->kubeconfig->data.at("config-incluster"), "x");
  EXPECT_EQ(r->hook_labels->at("a"), "b");
  EXPECT_TRUE(r->removed);
  EXPECT_EQ(r->components->at(0).restarts, 1);
  EXPECT_FALSE(r->components->at(0).last_exit);
  // The optional parts left out are absent.
  auto bare =
      protocol::StatusReport::fromJson(protocol::Json::parse(R"({"controlPlane": "cp-1", "seq": 0, "conditions": []})"));
  ASSERT_TRUE(bare) << bare.error().message;
  EXPECT_TRUE(!bare->endpoint && !bare->components && !bare->hook_states && !bare->hooks_done && !bare->hook_labels);
  EXPECT_FALSE(bare->kubeconfig);
  EXPECT_FALSE(bare->removed);

  auto with = [&](const char* patch) {
    protocol::Json body = protocol::Json::parse(good);
    body.merge_patch(protocol::Json::parse(patch));
    return protocol::StatusReport::fromJson(body);
  };
  for (const auto& [patch, says] : std::vector<std::pair<const char*, const char*>>{
           {R"({"controlPlane": 5})", "status: controlPlane must be a string, not a number"},
           {R"({"seq": "7"})", "seq must be an integer, not a string"},
           {R"({"observedGeneration": "2"})", "observedGeneration must be an integer, not a string"},
           {R"({"conditions": {"type": "Ready"}})", "conditions must be an array, not an object"},
           {R"({"conditions": ["Ready"]})", "conditions[0] must be an object"},
           {R"({"conditions": [{"type": 5}]})", "conditions[0].type must be a string, not a number"},
           {R"({"conditions": [{"type": "Ready", "status": true}]})",
            "conditions[0].status must be a string, not a boolean"},
           {R"({"conditions": [{"type": "Ready", "status": "True", "reason": 1}]})",
            "conditions[0].reason must be a string"},
           {R"({"conditions": [{"type": "Ready", "status": "True", "message": {}}]})",
            "conditions[0].message must be a string"},
           {R"({"endpoint": 443})", "endpoint must be a string, not a number"},
           {R"({"components": {"name": "k3s"}})", "components must be an array, not an object"},
           {R"({"kubeconfig": "apiVersion: v1"})", "kubeconfig must be an object, not a string"},
           {R"({"kubeconfig": {"secretName": 5}})", "kubeconfig.secretName must be a string, not a number"},
           {R"({"kubeconfig": {"data": ["x"]}})", "kubeconfig.data must be an object, not an array"},
           {R"({"kubeconfig": {"data": {"config": 1}}})", "kubeconfig.data.config must be a string, not a number"},
           {R"({"postCreateHooks": ["h"]})", "postCreateHooks must be an object, not an array"},
           {R"({"postCreateHooks": {"h": "yes"}})", "postCreateHooks.h must be a boolean, not a string"},
           {R"({"postCreateHookCompleted": "true"})", "postCreateHookCompleted must be a boolean, not a string"},
           {R"({"hookLabels": {"a": 1}})", "hookLabels.a must be a string, not a number"},
           {R"({"removed": "yes"})", "removed must be a boolean, not a string"},
           {R"({"removed": 1})", "removed must be a boolean, not a number"},
           // Right types, out of bounds.
           {R"({"controlPlane": "CP_1"})", "a status report needs controlPlane (a name)"},
           {R"({"seq": -1})", "a status report needs controlPlane (a name), seq"},
           {R"({"conditions": [{"type": "Ready", "status": "Maybe"}]})", "(True, False or Unknown)"},
           {R"({"endpoint": "http://x"})", "endpoint must be an https:// URL"},
           {R"({"components": [{"name": "k3s", "state": "Running", "restarts": "1"}]})", "components at most 16"},
       }) {
    auto bad = with(patch);
    ASSERT_FALSE(bad) << patch;
    EXPECT_NE(bad.error().message.find(says), std::string::npos) << patch << ": " << bad.error().message;
  }
}

TEST(Protocol, CsrIsAString) {
  auto csr = protocol::Csr::fromJson(protocol::Json{{"csr", "-----BEGIN CERTIFICATE REQUEST-----"}});
  ASSERT_TRUE(csr);
  EXPECT_EQ(csr->csr_pem, "-----BEGIN CERTIFICATE REQUEST-----");
  auto bad = protocol::Csr::fromJson(protocol::Json{{"csr", 5}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "csr: csr must be a string, not a number");
}

// Every message decodes to what was encoded, through the envelope as it travels.
template <class Message>
Message roundTrip(const Message& m, int64_t revision = 0) {
  auto env = protocol::decode(protocol::encode(m, 42, revision));
  EXPECT_TRUE(env) << env.error().message;
  EXPECT_EQ(env->type, Message::kType);
  EXPECT_EQ(env->id, "42");
  EXPECT_EQ(env->revision, revision);
  auto back = protocol::bodyOf<Message>(env.value());
  EXPECT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->toJson(), m.toJson());
  return back.value();
}

TEST(Protocol, EveryMessageRoundTrips) {
  protocol::Hello hello;
  hello.name = "edge-1";
  hello.acknowledged_revision = 9;
  hello.ca_bundle_hash = "ab";
  hello.facts = {{"hostname", "h"}, {"os", "linux"}};
  hello.capacity = {{"cpu", "4"}};
  hello.control_plane_types = std::vector<std::string>{"k3s"};
  EXPECT_EQ(roundTrip(hello).control_plane_types, hello.control_plane_types);
  EXPECT_EQ(roundTrip(protocol::Welcome{15, 60, "0.1.0", true}).lease_renew_seconds, 15);
  roundTrip(protocol::Lease{});
  EXPECT_EQ(protocol::decode(protocol::encode(protocol::Ack{}, 1, 77))->revision, 77);
  protocol::Snapshot snapshot{{{"a", R"({"metadata":{"name":"a"},"spec":{"type":"k3s"}})"}}};
  EXPECT_EQ(roundTrip(snapshot, 5).control_planes.at(0).json, snapshot.control_planes[0].json);
  protocol::Delta delta{{{"b", R"({"metadata":{"name":"b"}})"}}, {"c"}};
  EXPECT_EQ(roundTrip(delta, 6).deletes, std::vector<std::string>{"c"});
  protocol::StatusReport report;
  report.control_plane = "cp-1";
  report.seq = 3;
  report.conditions = {{"Ready", "True", "Available", "ok"}};
  report.endpoint = "https://10.0.0.1:6443";
  report.components = std::vector<protocol::Component>{{"k3s", "Running", 2, "exit code 1"}};
  report.hook_states = std::map<std::string, bool>{{"h", true}};
  report.hooks_done = true;
  report.hook_labels = std::map<std::string, std::string>{{"a", "b"}};
  report.kubeconfig = {"k3s-config", {{"config", "x"}}};
  report.removed = true;
  EXPECT_EQ(roundTrip(report).components->at(0).last_exit, "exit code 1");
  EXPECT_EQ(roundTrip(protocol::StatusAck{3}).seq, 3);
  roundTrip(protocol::Csr{"-----BEGIN CERTIFICATE REQUEST-----"});
  roundTrip(protocol::Certificate{"cert", "bundle"});
  EXPECT_TRUE(roundTrip(protocol::CaBundle{"bundle", true}).renew_certificate);
  EXPECT_EQ(roundTrip(protocol::ErrorBody{protocol::code::kTooSlow, "slow"}).code, protocol::code::kTooSlow);
}

TEST(Protocol, AMessageIsReadOnlyAsItsOwnType) {
  auto env = protocol::decode(protocol::encode(protocol::Lease{}, 1));
  ASSERT_TRUE(env);
  auto wrong = protocol::bodyOf<protocol::Welcome>(env.value());
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().message, "expected a welcome message, not lease");
  // A welcome's lease interval is read within 1 s to 1 h whatever the hub says.
  EXPECT_EQ(protocol::Welcome::fromJson({{"leaseRenewSeconds", 0}})->lease_renew_seconds, 1);
  EXPECT_EQ(protocol::Welcome::fromJson({{"leaseRenewSeconds", 99999}})->lease_renew_seconds, 3600);
  EXPECT_FALSE(protocol::Welcome::fromJson({{"leaseRenewSeconds", "10"}}));
  EXPECT_FALSE(protocol::StatusAck::fromJson({{"seq", "1"}}));
  EXPECT_FALSE(protocol::CaBundle::fromJson({{"renewCertificate", "yes"}}));
  EXPECT_FALSE(protocol::ErrorBody::fromJson({{"code", 1}}));
  EXPECT_FALSE(protocol::Certificate::fromJson({{"certificate", 1}}));
}

TEST(Protocol, DesiredStateNeedsNamedObjects) {
  for (const char* body : {R"({"upserts": {}})", R"({"upserts": [1]})", R"({"upserts": [{"metadata": {}}]})",
                           R"({"upserts": [{"metadata": {"name": ""}}]})", R"({"deletes": "a"})",
                           R"({"deletes": [1]})"}) {
    EXPECT_FALSE(protocol::Delta::fromJson(protocol::Json::parse(body))) << body;
  }
  EXPECT_FALSE(protocol::Snapshot::fromJson(protocol::Json::parse(R"({"controlPlanes": [{"spec": {}}]})")));
  // An empty delta is a progress mark.
  auto mark = protocol::Delta::fromJson(protocol::Json::object());
  ASSERT_TRUE(mark);
  EXPECT_TRUE(mark->upserts.empty() && mark->deletes.empty());
}

TEST(Protocol, TheHubsFrameAroundStoredBytesDecodesAsSnapshotOrDelta) {
  const std::string a = R"({"metadata":{"name":"a"},"spec":{"type":"k3s"}})";
  const std::string b = R"({"metadata":{"name":"b"}})";
  auto snap = protocol::decode(protocol::encodeDesired(true, 7, 12, {&a, &b}, {}));
  ASSERT_TRUE(snap) << snap.error().message;
  EXPECT_EQ(snap->revision, 12);
  auto s = protocol::bodyOf<protocol::Snapshot>(snap.value());
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_EQ(s->control_planes.size(), 2u);
  EXPECT_EQ(s->control_planes[1].name, "b");
  EXPECT_EQ(s->control_planes[0].json, a);
  auto delta = protocol::decode(protocol::encodeDesired(false, 8, 13, {}, {"a", "x\"y"}));
  ASSERT_TRUE(delta);
  auto d = protocol::bodyOf<protocol::Delta>(delta.value());
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->deletes, (std::vector<std::string>{"a", "x\"y"}));
}

TEST(Protocol, AReportCutToBoundsAlwaysDecodes) {
  protocol::StatusReport r;
  r.control_plane = "cp-1";
  // Overlong, and cut in the middle of a two-byte character.
  std::string message(4095, 'x');
  message += "\xc3\xa9\xc3\xa9";
  for (int i = 0; i < 20; ++i) {
    r.conditions.push_back({"C" + std::to_string(i), "True", std::string(200, 'r'), message});
  }
  r.components = std::vector<protocol::Component>(20, protocol::Component{std::string(80, 'n'), "Running", 0, std::string(300, 'e')});
  r.endpoint = "https://" + std::string(300, 'h');
  std::map<std::string, bool> hooks;
  for (int i = 0; i < 70; ++i) {
    hooks["hook-" + std::to_string(i)] = true;
  }
  hooks[std::string(300, 'k')] = false;
  r.hook_states = hooks;
  EXPECT_FALSE(protocol::StatusReport::fromJson(r.toJson()));
  r.clampToBounds();
  auto back = protocol::StatusReport::fromJson(protocol::Json::parse(r.toJson().dump()));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->conditions.size(), 16u);
  EXPECT_EQ(back->conditions[0].message.size(), 4095u);  // (not 4096: the character would be split)
  EXPECT_EQ(back->components->size(), 16u);
  EXPECT_FALSE(back->endpoint);
  EXPECT_EQ(back->hook_states->size(), 64u);
}

TEST(Util, Utf8PrefixEndsAtACharacterBoundary) {
  EXPECT_EQ(utf8Prefix("abc", 10), 3u);
  EXPECT_EQ(utf8Prefix("abc", 2), 2u);
  EXPECT_EQ(utf8Prefix("a\xc3\xa9", 2), 1u);       // é is two bytes
  EXPECT_EQ(utf8Prefix("a\xe2\x82\xac" "b", 3), 1u);  // € is three
  EXPECT_EQ(utf8Prefix("a\xe2\x82\xac" "b", 4), 4u);
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
