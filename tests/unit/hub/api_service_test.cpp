// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "hub/api/api_service.hpp"
#include "tests/unit/hub/api_call.hpp"

namespace kflex::hub {
namespace {

constexpr const char* kBase = "/apis/tenancy.kflex.kubestellar.org/v1alpha1/controlplanes";

class ApiServiceTest : public ApiFixture {
 protected:
  Json create(const std::string& name, const std::string& type = "k3s") {
    auto r = call(http::verb::post, kBase,
                  Json{{"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"}, {"kind", "ControlPlane"},
                       {"metadata", {{"name", name}}}, {"spec", {{"type", type}}}}.dump());
    EXPECT_EQ(r.status, 201u) << r.body;
    return Json::parse(r.body);
  }
};

TEST_F(ApiServiceTest, CreateSetsServerFieldsAndConflictsOnSecondCreate) {
  Json obj = create("cp1");
  EXPECT_EQ(obj["metadata"]["generation"], 1);
  EXPECT_EQ(obj["metadata"]["creationTimestamp"], "2026-01-01T00:00:00Z");
  EXPECT_EQ(obj["metadata"]["resourceVersion"], "1");
  EXPECT_EQ(obj["metadata"]["uid"].get<std::string>().size(), 36u);
  obj["metadata"].erase("resourceVersion");
  auto again = call(http::verb::post, kBase, obj.dump());
  EXPECT_EQ(again.status, 409u);
  EXPECT_EQ(Json::parse(again.body)["reason"], "AlreadyExists");
}

TEST_F(ApiServiceTest, UpdateNeedsCurrentResourceVersion) {
  Json obj = create("cp1");
  obj["spec"]["type"] = "k8s";
  auto ok = call(http::verb::put, std::string(kBase) + "/cp1", obj.dump());
  ASSERT_EQ(ok.status, 200u) << ok.body;
  EXPECT_EQ(Json::parse(ok.body)["metadata"]["generation"], 2);
  auto stale = call(http::verb::put, std::string(kBase) + "/cp1", obj.dump());
  EXPECT_EQ(stale.status, 409u);
  EXPECT_EQ(Json::parse(stale.body)["reason"], "Conflict");
  obj["metadata"].erase("resourceVersion");
  EXPECT_EQ(call(http::verb::put, std::string(kBase) + "/cp1", obj.dump()).status, 422u);
}

TEST_F(ApiServiceTest, StatusAndSpecAreSeparated) {
  create("cp1");
  std::string status = R"({"status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"True","reason":"Available","message":"","lastTransitionTime":"2026-01-01T00:00:00Z","lastUpdateTime":"2026-01-01T00:00:00Z"}]}})";
  // On the main resource a status change is ignored.
  auto main = call(http::verb::patch, std::string(kBase) + "/cp1", status, "application/merge-patch+json");
  ASSERT_EQ(main.status, 200u);
  EXPECT_FALSE(Json::parse(main.body).contains("status"));
  // On /status a spec change is ignored and generation stays.
  std::string both = R"({"spec":{"type":"k8s"},"status":{"observedGeneration":1,"conditions":[]}})";
  auto sub = call(http::verb::patch, std::string(kBase) + "/cp1/status", both, "application/merge-patch+json");
  ASSERT_EQ(sub.status, 200u) << sub.body;
  Json after = Json::parse(sub.body);
  EXPECT_EQ(after["spec"]["type"], "k3s");
  EXPECT_EQ(after["status"]["observedGeneration"], 1);
  EXPECT_EQ(after["metadata"]["generation"], 1);
  // A status write is still checked against the status schema, naming the field.
  auto bad = call(http::verb::patch, std::string(kBase) + "/cp1/status", R"({"status":{"observedGeneration":"x","bogus":1}})",
                  "application/merge-patch+json");
  ASSERT_EQ(bad.status, 422u) << bad.body;
  EXPECT_NE(bad.body.find("status.observedGeneration"), std::string::npos) << bad.body;
  EXPECT_NE(bad.body.find("status.bogus"), std::string::npos) << bad.body;
}

TEST_F(ApiServiceTest, FinalizersHoldDeletion) {
  create("cp1");
  call(http::verb::patch, std::string(kBase) + "/cp1", R"({"metadata":{"finalizers":["kflex.kubestellar.org/finalizer"]}})",
       "application/merge-patch+json");
  auto del = call(http::verb::delete_, std::string(kBase) + "/cp1");
  ASSERT_EQ(del.status, 200u);
  EXPECT_TRUE(Json::parse(del.body)["metadata"].contains("deletionTimestamp"));
  EXPECT_EQ(call(http::verb::get, std::string(kBase) + "/cp1").status, 200u);
  auto add = call(http::verb::patch, std::string(kBase) + "/cp1", R"({"metadata":{"finalizers":["a/b","kflex.kubestellar.org/finalizer"]}})",
                  "application/merge-patch+json");
  EXPECT_EQ(add.status, 422u);
  auto clear = call(http::verb::patch, std::string(kBase) + "/cp1", R"([{"op":"remove","path":"/metadata/finalizers"}])",
                    "application/json-patch+json");
  EXPECT_EQ(clear.status, 200u) << clear.body;
  EXPECT_EQ(call(http::verb::get, std::string(kBase) + "/cp1").status, 404u);
}

// kubectl hands an object's managedFields over to server-side apply with a JSON patch that tests
// the resourceVersion first.
TEST_F(ApiServiceTest, JsonPatchTestsTheResourceVersionAndAChangedOneIsAPrecondition) {
  std::string rv = create("cp1")["metadata"]["resourceVersion"];
  std::string url = std::string(kBase) + "/cp1";
  auto ok = call(http::verb::patch, url,
                 R"([{"op":"test","path":"/metadata/resourceVersion","value":")" + rv +
                     R"("},{"op":"add","path":"/metadata/labels","value":{"a":"b"}}])",
                 "application/json-patch+json");
  ASSERT_EQ(ok.status, 200u) << ok.body;
  Json patched = Json::parse(ok.body);
  EXPECT_EQ(patched["metadata"]["labels"]["a"], "b");
  EXPECT_NE(patched["metadata"]["resourceVersion"], rv);
  // The same test again: the version moved on.
  auto stale = call(http::verb::patch, url,
                    R"([{"op":"test","path":"/metadata/resourceVersion","value":")" + rv + R"("}])",
                    "application/json-patch+json");
  EXPECT_EQ(stale.status, 422u) << stale.body;
  // A patch that sets an old resourceVersion states it as a precondition: 409.
  auto conflict = call(http::verb::patch, url,
                       R"([{"op":"replace","path":"/metadata/resourceVersion","value":")" + rv +
                           R"("},{"op":"add","path":"/metadata/labels/c","value":"d"}])",
                       "application/json-patch+json");
  EXPECT_EQ(conflict.status, 409u) << conflict.body;
  EXPECT_FALSE(Json::parse(call(http::verb::get, url).body)["metadata"]["labels"].contains("c"));
}

// As kube-apiserver: managedFields a write states itself replace the stored ones; an empty list
// keeps them.
TEST_F(ApiServiceTest, ManagedFieldsAWriteSetsItselfAreKept) {
  create("cp1");
  std::string url = std::string(kBase) + "/cp1";
  Json handed = Json::array({{{"manager", "kubectl"},
                              {"operation", "Apply"},
                              {"apiVersion", "tenancy.kflex.kubestellar.org/v1alpha1"},
                              {"fieldsType", "FieldsV1"},
                              {"fieldsV1", {{"f:spec", {{"f:type", Json::object()}}}}}}});
  auto r = call(http::verb::patch, url,
                Json::array({{{"op", "replace"}, {"path", "/metadata/managedFields"}, {"value", handed}}}).dump(),
                "application/json-patch+json");
  ASSERT_EQ(r.status, 200u) << r.body;
  Json mf = Json::parse(call(http::verb::get, url).body)["metadata"]["managedFields"];
  ASSERT_EQ(mf.size(), 1u) << mf.dump();
  EXPECT_EQ(mf[0]["manager"], "kubectl");
  EXPECT_EQ(mf[0]["operation"], "Apply");
  EXPECT_EQ(mf[0]["fieldsV1"], handed[0]["fieldsV1"]);
  auto emptied = call(http::verb::patch, url, R"({"metadata":{"managedFields":[]}})", "application/merge-patch+json");
  ASSERT_EQ(emptied.status, 200u) << emptied.body;
  EXPECT_EQ(Json::parse(call(http::verb::get, url).body)["metadata"]["managedFields"], mf);
  // Entries that do not decode are ignored the same way, not a server error.
  for (const char* bad : {R"([{"manager":5}])", R"([{"manager":"x","operation":"Delete"}])"}) {
    auto r2 = call(http::verb::patch, url,
                   std::string(R"([{"op":"replace","path":"/metadata/managedFields","value":)") + bad + "}]",
                   "application/json-patch+json");
    EXPECT_EQ(r2.status, 200u) << bad << ": " << r2.body;
    EXPECT_EQ(Json::parse(call(http::verb::get, url).body)["metadata"]["managedFields"], mf) << bad;
  }
  // An entry that is not an object at all is refused by the schema, naming it.
  auto typed = call(http::verb::patch, url, R"([{"op":"replace","path":"/metadata/managedFields","value":[7]}])",
                    "application/json-patch+json");
  EXPECT_EQ(typed.status, 422u) << typed.body;
}

// Collects what a watch stream writes, one element per chunk.
struct CollectChunks : ChunkWriter {
  std::string all;
  net::awaitable<bool> write(std::string data) override {
    all += data;
    co_return true;
  }
};

TEST_F(ApiServiceTest, WatchSendsBookmarksWhenAskedAndEndsAtItsTimeout) {
  using namespace std::chrono_literals;
  ApiOptions options;
  options.bookmark_interval = 1s;
  ApiService api(*store_, registry_, clock_, options);
  for (bool bookmarks : {true, false}) {
    SCOPED_TRACE(bookmarks ? "allowWatchBookmarks=true" : "no bookmarks");
    std::string name = bookmarks ? "watched-a" : "watched-b";
    auto r = callApi(api, http::verb::get,
                     std::string(kBase) + "?watch=1&timeoutSeconds=2" + (bookmarks ? "&allowWatchBookmarks=true" : ""));
    ASSERT_EQ(r.status, 200u) << r.body;
    ASSERT_TRUE(r.stream);
    net::io_context ioc;
    CollectChunks out;
    bool done = false;
    std::exception_ptr failure;
    auto started = std::chrono::steady_clock::now();
    net::co_spawn(ioc, r.stream(out), [&](std::exception_ptr e) {
      failure = e;
      done = true;
    });
    bool created = false;
    while (!done && std::chrono::steady_clock::now() < started + 10s) {
      ioc.run_for(10ms);
      ioc.restart();
      if (!created && std::chrono::steady_clock::now() > started + 200ms) {
        create(name);  // arrives on the running watch
        created = true;
      }
    }
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    ASSERT_TRUE(done) << "the watch did not end at its timeoutSeconds; it wrote: " << out.all;
    EXPECT_FALSE(failure);
    EXPECT_GE(took, 1.9);
    EXPECT_LT(took, 5.0);
    EXPECT_NE(out.all.find(R"({"type":"ADDED","object":{"apiVersion")"), std::string::npos) << out.all;
    EXPECT_NE(out.all.find("\"name\":\"" + name + "\""), std::string::npos) << out.all;
    size_t marks = 0;
    for (size_t at = out.all.find("\"BOOKMARK\""); at != std::string::npos; at = out.all.find("\"BOOKMARK\"", at + 1)) {
      ++marks;
    }
    if (bookmarks) {
      EXPECT_GE(marks, 1u) << out.all;
    } else {
      EXPECT_EQ(marks, 0u) << out.all;
    }
  }
}

TEST_F(ApiServiceTest, DryRunStoresNothing) {
  auto r = call(http::verb::post, std::string(kBase) + "?dryRun=All",
                R"({"apiVersion":"tenancy.kflex.kubestellar.org/v1alpha1","kind":"ControlPlane","metadata":{"name":"dry"},"spec":{"type":"k3s"}})");
  EXPECT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(call(http::verb::get, std::string(kBase) + "/dry").status, 404u);
  EXPECT_EQ(store_->revision(), 0);
}

// dryRun is All or absent: anything else (true, all, 1, garbage) is refused before anything is
// written, as kube-apiserver refuses it (422 on the write's options), never a real write.
TEST_F(ApiServiceTest, ADryRunOtherThanAllIsRefusedAndWritesNothing) {
  const std::string body =
      R"({"apiVersion":"tenancy.kflex.kubestellar.org/v1alpha1","kind":"ControlPlane","metadata":{"name":"dry"},"spec":{"type":"k3s"}})";
  for (const char* value : {"true", "all", "1", "garbage", ""}) {
    auto r = call(http::verb::post, std::string(kBase) + "?dryRun=" + value, body);
    EXPECT_EQ(r.status, 422u) << value << ": " << r.body;
    Json st = Json::parse(r.body, nullptr, false);
    EXPECT_EQ(st.value("reason", ""), "Invalid");
    EXPECT_NE(st.value("message", "").find("CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value"),
              std::string::npos)
        << st.dump();
  }
  EXPECT_EQ(store_->revision(), 0);
  ASSERT_EQ(call(http::verb::post, kBase, body).status, 201u);
  EXPECT_EQ(call(http::verb::delete_, std::string(kBase) + "/dry?dryRun=true").status, 422u);
  EXPECT_EQ(call(http::verb::patch, std::string(kBase) + "/dry?dryRun=yes", "{}", "application/merge-patch+json").status,
            422u);
  EXPECT_EQ(call(http::verb::get, std::string(kBase) + "/dry").status, 200u) << "still there";
  EXPECT_EQ(store_->revision(), 1);
}

TEST_F(ApiServiceTest, BadInputGetsKubernetesStatus) {
  auto malformed = call(http::verb::post, kBase, "{\"apiVersion\":");
  EXPECT_EQ(malformed.status, 400u);
  EXPECT_EQ(Json::parse(malformed.body)["kind"], "Status");
  auto yaml = call(http::verb::post, kBase, "apiVersion: tenancy.kflex.kubestellar.org/v1alpha1\nkind: [", "application/yaml");
  EXPECT_EQ(yaml.status, 400u);
  auto wrong_kind = call(http::verb::post, kBase, R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}})");
  EXPECT_EQ(wrong_kind.status, 400u);
  auto invalid = call(http::verb::post, kBase,
                      R"({"apiVersion":"tenancy.kflex.kubestellar.org/v1alpha1","kind":"ControlPlane","metadata":{"name":"x"},"spec":{"type":"nope"}})");
  ASSERT_EQ(invalid.status, 422u);
  Json st = Json::parse(invalid.body);
  EXPECT_EQ(st["reason"], "Invalid");
  EXPECT_EQ(st["details"]["causes"][0]["field"], "spec.type");
  EXPECT_EQ(call(http::verb::patch, std::string(kBase) + "/missing", "{}", "application/merge-patch+json").status, 404u);
  EXPECT_EQ(call(http::verb::patch, std::string(kBase) + "/x", "{}", "text/plain").status, 415u);
  EXPECT_EQ(call(http::verb::get, std::string(kBase) + "?labelSelector=a%20in%20b").status, 400u);
  EXPECT_EQ(store_->revision(), 0);
}

TEST_F(ApiServiceTest, ListSelectorsPaginationAndTable) {
  for (const char* n : {"a", "b", "c"}) {
    create(n);
  }
  call(http::verb::patch, std::string(kBase) + "/b", R"({"metadata":{"labels":{"env":"prod"}}})", "application/merge-patch+json");
  Json sel = Json::parse(call(http::verb::get, std::string(kBase) + "?labelSelector=env%3Dprod").body);
  ASSERT_EQ(sel["items"].size(), 1u);
  EXPECT_EQ(sel["items"][0]["metadata"]["name"], "b");
  Json byname = Json::parse(call(http::verb::get, std::string(kBase) + "?fieldSelector=metadata.name%3Dc").body);
  ASSERT_EQ(byname["items"].size(), 1u);
  Json page1 = Json::parse(call(http::verb::get, std::string(kBase) + "?limit=2").body);
  ASSERT_EQ(page1["items"].size(), 2u);
  std::string token = page1["metadata"]["continue"];
  Json page2 = Json::parse(call(http::verb::get, std::string(kBase) + "?limit=2&continue=" + token).body);
  ASSERT_EQ(page2["items"].size(), 1u);
  EXPECT_EQ(page2["items"][0]["metadata"]["name"], "c");
  Json table = Json::parse(call(http::verb::get, kBase, "", "", "application/json;as=Table;v=v1;g=meta.k8s.io").body);
  EXPECT_EQ(table["kind"], "Table");
  ASSERT_EQ(table["columnDefinitions"].size(), 5u);
  EXPECT_EQ(table["columnDefinitions"][4]["name"], "AGE");
  EXPECT_EQ(table["rows"][0]["cells"][3], "k3s");
  EXPECT_EQ(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
}

TEST_F(ApiServiceTest, DiscoveryAndOpenApi) {
  Json agg = Json::parse(call(http::verb::get, "/apis", "", "", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList").body);
  EXPECT_EQ(agg["kind"], "APIGroupDiscoveryList");
  EXPECT_EQ(agg["items"][0]["versions"][0]["resources"][0]["shortNames"][0], "cp");
  Json plain = Json::parse(call(http::verb::get, "/apis/tenancy.kflex.kubestellar.org/v1alpha1").body);
  EXPECT_EQ(plain["resources"][0]["name"], "controlplanes");
  Json root = Json::parse(call(http::verb::get, "/openapi/v3").body);
  std::string url = root["paths"]["apis/tenancy.kflex.kubestellar.org/v1alpha1"]["serverRelativeURL"];
  Json doc = Json::parse(call(http::verb::get, url).body);
  EXPECT_TRUE(doc["components"]["schemas"].contains("org.kubestellar.kflex.tenancy.v1alpha1.ControlPlane"));
  EXPECT_EQ(call(http::verb::get, "/openapi/v2", "", "", "application/json").status, 200u);
}

// /api and /apis are negotiated as kube-apiserver does: kubectl 1.27-1.29 ask for
// apidiscovery.k8s.io/v2beta1 only and read nothing else; newer ones ask for v2 first.
constexpr const char* kV2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
constexpr const char* kV2Beta1 =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

class DiscoveryNegotiationTest : public ApiServiceTest {
 protected:
  // GETs /api and /apis with `accept` and checks that both came back in the form `version` names:
  // "v2" or "v2beta1" (APIGroupDiscoveryList), or "" (APIVersions and APIGroupList).
  testing::AssertionResult servedAs(const std::string& accept, const std::string& version) {
    std::string want_type =
        version.empty()
            ? "application/json"
            : "application/json;g=apidiscovery.k8s.io;v=" + version + ";as=APIGroupDiscoveryList";
    for (const char* path : {"/api", "/apis"}) {
      auto r = call(http::verb::get, path, "", "", accept);
      std::string where = std::string("GET ") + path + " with Accept \"" + accept + "\": ";
      if (r.status != 200u) {
        return testing::AssertionFailure() << where << "status " << r.status << ": " << r.body;
      }
      if (r.content_type != want_type) {
        return testing::AssertionFailure() << where << "Content-Type \"" << r.content_type
                                           << "\", expected \"" << want_type << "\"";
      }
      bool vary = false;
      for (const auto& [name, value] : r.headers) {
        vary = vary || (name == "Vary" && value == "Accept");
      }
      if (!vary) {
        return testing::AssertionFailure() << where << "no Vary: Accept";
      }
      Json body = Json::parse(r.body, nullptr, false);
      if (!body.is_object()) {
        return testing::AssertionFailure() << where << "not a JSON object: " << r.body;
      }
      bool core = std::string(path) == "/api";
      if (version.empty()) {
        std::string want_kind = core ? "APIVersions" : "APIGroupList";
        if (body.value("kind", "") != want_kind) {
          return testing::AssertionFailure()
                 << where << "expected " << want_kind << ", got " << r.body;
        }
        if (!core && r.body.find("tenancy.kflex.kubestellar.org/v1alpha1") == std::string::npos) {
          return testing::AssertionFailure() << where << "the kflex group is missing: " << r.body;
        }
        continue;
      }
      if (body.value("kind", "") != "APIGroupDiscoveryList" ||
          body.value("apiVersion", "") != "apidiscovery.k8s.io/" + version) {
        return testing::AssertionFailure()
               << where << "expected apidiscovery.k8s.io/" << version
               << " APIGroupDiscoveryList, got " << r.body.substr(0, 200);
      }
      std::string want_resource = core ? "\"resource\":\"secrets\"" : "\"shortNames\":[\"cp\",";
      if (r.body.find(want_resource) == std::string::npos) {
        return testing::AssertionFailure()
               << where << want_resource << " is missing: " << r.body.substr(0, 300);
      }
    }
    return testing::AssertionSuccess();
  }
};

TEST_F(DiscoveryNegotiationTest, V2Beta1FirstAsKubectl127To129AskGetsV2Beta1) {
  EXPECT_TRUE(servedAs(std::string(kV2Beta1) + ",application/json", "v2beta1"));
  EXPECT_TRUE(servedAs(kV2Beta1, "v2beta1"));
}

TEST_F(DiscoveryNegotiationTest, V2FirstAsKubectl130AndLaterAskGetsV2) {
  EXPECT_TRUE(servedAs(std::string(kV2) + "," + kV2Beta1 + ",application/json", "v2"));
  EXPECT_TRUE(servedAs(kV2, "v2"));
}

TEST_F(DiscoveryNegotiationTest, BothTheFirstListedWins) {
  EXPECT_TRUE(servedAs(std::string(kV2Beta1) + "," + kV2, "v2beta1"));
  EXPECT_TRUE(servedAs(std::string(kV2) + "," + kV2Beta1, "v2"));
  // Spaces after the commas and around parameters are allowed.
  EXPECT_TRUE(
      servedAs("application/json; g=apidiscovery.k8s.io; v=v2beta1; as=APIGroupDiscoveryList, " +
                   std::string(kV2),
               "v2beta1"));
}

TEST_F(DiscoveryNegotiationTest, NeitherGetsTheUnaggregatedLists) {
  EXPECT_TRUE(servedAs("", ""));
  EXPECT_TRUE(servedAs("*/*", ""));
  // Versions and kinds discovery does not have, and a media type the hub does not serve it in.
  EXPECT_TRUE(servedAs("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList", ""));
  EXPECT_TRUE(servedAs("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupList", ""));
  EXPECT_TRUE(servedAs(
      "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
      "application/json",
      ""));
}

TEST_F(DiscoveryNegotiationTest, PlainJsonGetsTheUnaggregatedLists) {
  EXPECT_TRUE(servedAs("application/json", ""));
  EXPECT_TRUE(servedAs("application/json, */*", ""));
  EXPECT_TRUE(servedAs("application/json;q=0.9,application/yaml;q=0.8", ""));
}

TEST_F(DiscoveryNegotiationTest, AnAggregatedClauseAfterPlainJsonStillWins) {
  // As kube-apiserver: a clause without the conversion does not compete with one that has it.
  EXPECT_TRUE(servedAs(std::string("application/json,") + kV2Beta1, "v2beta1"));
  EXPECT_TRUE(servedAs("*/*;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList", "v2beta1"));
}

TEST_F(DiscoveryNegotiationTest, QValuesRankTheClauses) {
  EXPECT_TRUE(
      servedAs(std::string(kV2) + ";q=0.5," + kV2Beta1 + ";q=0.9,application/json", "v2beta1"));
  EXPECT_TRUE(servedAs(std::string(kV2Beta1) + ";q=0.8," + kV2, "v2"));
  EXPECT_TRUE(servedAs(std::string(kV2Beta1) + ";q=1.0," + kV2 + ";q=1", "v2beta1"));
  // A q that is not a number ranks as 0.
  EXPECT_TRUE(servedAs(std::string(kV2) + ";q=high," + kV2Beta1 + ";q=0.1", "v2beta1"));
}

TEST_F(DiscoveryNegotiationTest, V2Beta1AndV2DocumentsDifferOnlyInApiVersion) {
  for (const char* path : {"/api", "/apis"}) {
    Json v2 = Json::parse(call(http::verb::get, path, "", "", kV2).body);
    Json v2beta1 = Json::parse(call(http::verb::get, path, "", "", kV2Beta1).body);
    EXPECT_EQ(v2.at("apiVersion"), "apidiscovery.k8s.io/v2") << path;
    EXPECT_EQ(v2beta1.at("apiVersion"), "apidiscovery.k8s.io/v2beta1") << path;
    v2.erase("apiVersion");
    v2beta1.erase("apiVersion");
    EXPECT_EQ(v2, v2beta1) << path;
  }
}

TEST_F(ApiServiceTest, AnonymousIsRefusedButHealthIsPublic) {
  ApiRequest req;
  req.path = kBase;
  net::io_context ioc;
  ApiResponse out;
  net::co_spawn(ioc, api_->handle(req), [&](std::exception_ptr, ApiResponse r) { out = std::move(r); });
  ioc.run();
  EXPECT_EQ(out.status, 401u);
  EXPECT_EQ(Json::parse(out.body)["kind"], "Status");
  req.path = "/readyz";
  net::io_context ioc2;
  net::co_spawn(ioc2, api_->handle(req), [&](std::exception_ptr, ApiResponse r) { out = std::move(r); });
  ioc2.run();
  EXPECT_EQ(out.body, "ok");
}

}  // namespace
}  // namespace kflex::hub
