// SPDX-License-Identifier: Apache-2.0
#include "hub/api/control_plane_secrets.hpp"

#include <gtest/gtest.h>

#include "hub/api/api_service.hpp"
#include "shared/common/util.hpp"
#include "tests/support/test_support.hpp"
#include "tests/unit/hub/api_call.hpp"

namespace kflex::hub {
namespace {

constexpr const char* kBase = "/apis/tenancy.kflex.kubestellar.org/v1alpha1/controlplanes";

net::awaitable<bool> removeSecret(ControlPlaneSecrets* s, std::string cp) {
  co_await s->remove(std::move(cp));
  co_return true;
}

TEST(SecretBox, SealsOpensAndRefusesTamperingOrAnotherKey) {
  test::TempDir dir;
  auto box = tls::SecretBox::openOrCreate(dir.path() / "encryption.key");
  ASSERT_TRUE(box);
  EXPECT_EQ(std::filesystem::status(dir.path() / "encryption.key").permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto sealed = box->seal("client-key-data: secret");
  ASSERT_TRUE(sealed);
  EXPECT_EQ(sealed->find("secret"), std::string::npos);
  EXPECT_NE(*sealed, *box->seal("client-key-data: secret")) << "a fresh nonce each time";
  EXPECT_EQ(box->open(*sealed).value(), "client-key-data: secret");
  // The same file gives the same key.
  auto again = tls::SecretBox::openOrCreate(dir.path() / "encryption.key");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->open(*sealed).value(), "client-key-data: secret");
  // One flipped bit, or another key: refused.
  std::string tampered = *sealed;
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(box->open(tampered));
  auto other = tls::SecretBox::withKey(std::string(32, 'k'));
  ASSERT_TRUE(other);
  auto opened = other->open(*sealed);
  ASSERT_FALSE(opened);
  EXPECT_NE(opened.error().message.find("another hub's key"), std::string::npos);
  EXPECT_FALSE(box->open("plain text"));
  // A damaged key file is an error that says what to do, not a new key.
  ASSERT_TRUE(writeFileAtomic(dir.path() / "bad.key", "not base64 of 32 bytes\n", 0600));
  auto bad = tls::SecretBox::openOrCreate(dir.path() / "bad.key");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("restore it from a backup"), std::string::npos);
}

class ControlPlaneSecretsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(ObjectStore::open(dir_.path() / "hub.db", {}).value());
    api_ = std::make_unique<ApiService>(*store_, registry_, clock_, ApiOptions{});
    secrets_ = std::make_unique<ControlPlaneSecrets>(*store_, tls::SecretBox::withKey(std::string(32, 's')).value(), clock_);
  }
  template <class T>
  T run(net::awaitable<T> op) {
    return runToEnd(std::move(op));
  }
  ApiResponse get(const std::string& path, bool admin = true, bool authenticated = true,
                  http::verb method = http::verb::get, const std::string& accept = "") {
    ApiRequest req;
    req.method = method;
    req.path = path;
    req.accept = accept;
    if (authenticated) {
      req.user.name = admin ? "admin" : "alice";
      req.user.groups = admin ? std::vector<std::string>{"system:masters"} : std::vector<std::string>{"dev"};
    }
    return run(secrets_->handle(req));
  }
  std::string createCp(const std::string& name) {
    ApiRequest req;
    req.method = http::verb::post;
    req.path = kBase;
    req.body = Json{{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "ControlPlane"},
                    {"metadata", {{"name", name}}}, {"spec", {{"type", "external"}}}}.dump();
    req.content_type = "application/json";
    req.user.name = "admin";
    req.user.groups = {"system:masters"};
    auto r = run(api_->handle(req));
    EXPECT_EQ(r.status, 201u) << r.body;
    return Json::parse(r.body)["metadata"]["uid"].get<std::string>();
  }

  test::TempDir dir_;
  model::Registry registry_ = model::kflexRegistry();
  FakeClock clock_{*parseTime("2026-01-01T00:00:00Z")};
  std::unique_ptr<ObjectStore> store_;
  std::unique_ptr<ApiService> api_;
  std::unique_ptr<ControlPlaneSecrets> secrets_;
};

TEST_F(ControlPlaneSecretsTest, ServesSealedKubeconfigsReadOnlyToAdminsOnly) {
  std::string uid = createCp("cp1");
  std::map<std::string, std::string> data = {{"config", "apiVersion: v1\nkind: Config\n"},
                                             {"config-incluster", "apiVersion: v1\nkind: Config\n# in\n"}};
  ASSERT_TRUE(run(secrets_->put("cp1", uid, "k3s-config", data)));
  auto stored = store_->get(kCredentialsResource, "cp1");
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->bytes.find("kind: Config"), std::string::npos) << "sealed at rest";
  int64_t rev = stored->revision;
  ASSERT_TRUE(run(secrets_->put("cp1", uid, "k3s-config", data)));
  EXPECT_EQ(store_->get(kCredentialsResource, "cp1")->revision, rev) << "unchanged data is not rewritten";

  auto r = get("/api/v1/namespaces/cp1-system/secrets/k3s-config");
  ASSERT_EQ(r.status, 200u) << r.body;
  Json s = Json::parse(r.body);
  EXPECT_EQ(s["kind"], "Secret");
  EXPECT_EQ(s["metadata"]["namespace"], "cp1-system");
  EXPECT_EQ(base64Decode(s["data"]["config"].get<std::string>()).value(), data["config"]);
  EXPECT_EQ(base64Decode(s["data"]["config-incluster"].get<std::string>()).value(), data["config-incluster"]);
  EXPECT_EQ(Json::parse(get("/api/v1/namespaces/cp1-system/secrets").body)["items"].size(), 1u);
  EXPECT_EQ(Json::parse(get("/api/v1/secrets").body)["items"].size(), 1u);
  EXPECT_EQ(Json::parse(get("/api/v1/namespaces/cp1-system").body)["status"]["phase"], "Active");
  Json table = Json::parse(get("/api/v1/namespaces/cp1-system/secrets", true, true, http::verb::get,
                               "application/json;as=Table;v=v1;g=meta.k8s.io").body);
  EXPECT_EQ(table["kind"], "Table");
  EXPECT_EQ(table["rows"][0]["cells"][0], "k3s-config");

  EXPECT_EQ(get("/api/v1/namespaces/cp1-system/secrets/k3s-config", false).status, 403u);
  EXPECT_EQ(get("/api/v1/namespaces/cp1-system/secrets/k3s-config", false, false).status, 401u);
  EXPECT_EQ(get("/api/v1/namespaces/cp1-system/secrets/k3s-config", true, true, http::verb::delete_).status, 405u);
  EXPECT_EQ(get("/api/v1/namespaces/cp1-system/secrets/other").status, 404u);
  EXPECT_EQ(get("/api/v1/namespaces/nope-system/secrets/k3s-config").status, 404u);
  EXPECT_EQ(get("/api/v1/namespaces/default").status, 404u);
  EXPECT_EQ(get("/api/v1/pods").status, 404u);

  // A new control plane of the same name never sees the old one's kubeconfig.
  ApiRequest del;
  del.method = http::verb::delete_;
  del.path = std::string(kBase) + "/cp1";
  del.user.name = "admin";
  del.user.groups = {"system:masters"};
  ASSERT_EQ(run(api_->handle(del)).status, 200u);
  createCp("cp1");
  EXPECT_EQ(get("/api/v1/namespaces/cp1-system/secrets/k3s-config").status, 404u);
  EXPECT_TRUE(run(removeSecret(secrets_.get(), "cp1")));
  EXPECT_FALSE(store_->get(kCredentialsResource, "cp1"));
}

TEST_F(ControlPlaneSecretsTest, BootstrapSecretsInKubeflexSystemAreWritableSealedAndDeletable) {
  const std::string base = "/api/v1/namespaces/kubeflex-system/secrets";
  auto post = [&](const std::string& body, const std::string& content_type = "application/json") {
    ApiRequest req;
    req.method = http::verb::post;
    req.path = base;
    req.body = body;
    req.content_type = content_type;
    req.user.name = "admin";
    req.user.groups = {"system:masters"};
    return run(secrets_->handle(req));
  };
  std::string kubeconfig = "apiVersion: v1\nkind: Config\n# the adopted cluster's admin\n";
  Json secret = {{"apiVersion", "v1"}, {"kind", "Secret"},
                 {"metadata", {{"name", "ext1-bootstrap"}, {"namespace", "kubeflex-system"}}},
                 {"data", {{"kubeconfig-incluster", base64Encode(kubeconfig)}}}};
  auto r = post(secret.dump());
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(post(secret.dump()).status, 409u);
  auto stored = store_->get(kBootstrapResource, "ext1-bootstrap");
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->bytes.find("the adopted cluster"), std::string::npos) << "sealed at rest";
  EXPECT_EQ(secrets_->bootstrap("ext1-bootstrap")->at("kubeconfig-incluster"), kubeconfig);
  r = get(base + "/ext1-bootstrap");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(base64Decode(Json::parse(r.body)["data"]["kubeconfig-incluster"].get<std::string>()).value(), kubeconfig);
  EXPECT_EQ(Json::parse(get(base).body)["items"].size(), 1u);
  EXPECT_EQ(Json::parse(get("/api/v1/namespaces/kubeflex-system").body)["metadata"]["name"], "kubeflex-system");

  // stringData (YAML), bad names and keys, another namespace, updates, non-admins.
  EXPECT_EQ(post("apiVersion: v1\nkind: Secret\nmetadata: {name: b2}\nstringData: {k: v}\n", "application/yaml").status,
            201u);
  EXPECT_EQ(secrets_->bootstrap("b2")->at("k"), "v");
  r = post(R"({"apiVersion":"v1","kind":"Secret","metadata":{"name":"Bad_Name"},"data":{"k":"dg=="}})");
  EXPECT_EQ(r.status, 422u);
  EXPECT_NE(r.body.find("metadata.name"), std::string::npos) << r.body;
  r = post(R"({"apiVersion":"v1","kind":"Secret","metadata":{"name":"b3"},"data":{"bad key":"dg=="}})");
  EXPECT_EQ(r.status, 422u);
  EXPECT_EQ(post(R"({"apiVersion":"v1","kind":"Secret","metadata":{"name":"b4"},"data":{"k":"***"}})").status, 422u);
  EXPECT_EQ(post(R"({"apiVersion":"v1","kind":"Secret","metadata":{"name":"b5","namespace":"other"}})").status, 400u);
  EXPECT_EQ(post("{not json").status, 400u);
  EXPECT_EQ(get(base + "/ext1-bootstrap", true, true, http::verb::put).status, 405u);
  EXPECT_EQ(get(base + "/ext1-bootstrap", false).status, 403u);
  EXPECT_EQ(get(base + "/ext1-bootstrap", false, true, http::verb::delete_).status, 403u);

  EXPECT_EQ(get(base + "/ext1-bootstrap", true, true, http::verb::delete_).status, 200u);
  EXPECT_EQ(get(base + "/ext1-bootstrap").status, 404u);
  EXPECT_EQ(get(base + "/ext1-bootstrap", true, true, http::verb::delete_).status, 404u);
  EXPECT_FALSE(secrets_->bootstrap("ext1-bootstrap"));
}

TEST_F(ControlPlaneSecretsTest, OnlyKubeFlexSecretNamesAndKeys) {
  EXPECT_TRUE(ControlPlaneSecrets::validSecret("admin-kubeconfig", {{"kubeconfig", "x"}, {"kubeconfig-incluster", "y"}}));
  EXPECT_TRUE(ControlPlaneSecrets::validSecret("admin-kubeconfig", {{"kubeconfig-incluster", "y"}})) << "external";
  EXPECT_TRUE(ControlPlaneSecrets::validSecret("vc-vcluster", {{"config", "x"}, {"config-incluster", "y"}}));
  EXPECT_FALSE(ControlPlaneSecrets::validSecret("k3s-config", {{"kubeconfig", "x"}, {"config-incluster", "y"}}));
  EXPECT_FALSE(ControlPlaneSecrets::validSecret("my-secret", {{"config", "x"}, {"config-incluster", "y"}}));
  EXPECT_FALSE(ControlPlaneSecrets::validSecret("k3s-config", {{"config", "x"}}));
  EXPECT_FALSE(ControlPlaneSecrets::validSecret("k3s-config", {{"config-incluster", std::string(65 * 1024, 'x')}}));
}

}  // namespace
}  // namespace kflex::hub
