// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "hub/api/discovery.hpp"
#include "hub/api/openapi_proto.hpp"
#include "shared/model/resource.hpp"

namespace kflex::hub {
namespace {

using Json = nlohmann::json;

// A protobuf wire-format reader for the test: the fields of one message, by number. Varints and
// 64-bit values are kept as their raw bytes' value, length-delimited ones as bytes.
struct Field {
  int wire_type = 0;
  uint64_t number = 0;  // varint or fixed64 value
  std::string bytes;
};
using Fields = std::multimap<int, Field>;

uint64_t readVarint(const std::string& s, size_t& at) {
  uint64_t v = 0;
  for (int shift = 0; at < s.size(); shift += 7) {
    auto b = uint8_t(s[at++]);
    v |= uint64_t(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      return v;
    }
  }
  ADD_FAILURE() << "truncated varint";
  return v;
}

Fields decode(const std::string& s) {
  Fields out;
  size_t at = 0;
  while (at < s.size()) {
    uint64_t key = readVarint(s, at);
    Field f;
    f.wire_type = int(key & 7);
    int number = int(key >> 3);
    EXPECT_GT(number, 0) << "field number 0 is invalid";
    if (f.wire_type == 0) {
      f.number = readVarint(s, at);
    } else if (f.wire_type == 1) {
      EXPECT_LE(at + 8, s.size());
      std::memcpy(&f.number, s.data() + at, 8);
      at += 8;
    } else if (f.wire_type == 2) {
      uint64_t len = readVarint(s, at);
      EXPECT_LE(at + len, s.size()) << "length beyond the message";
      f.bytes = s.substr(at, len);
      at += len;
    } else {
      ADD_FAILURE() << "unexpected wire type " << f.wire_type;
      return out;
    }
    out.emplace(number, std::move(f));
  }
  return out;
}

std::string only(const Fields& f, int number) {
  EXPECT_EQ(f.count(number), 1u) << "field " << number;
  auto it = f.find(number);
  return it == f.end() ? "" : it->second.bytes;
}

// The value of a repeated Named* entry (name = 1, value = 2) called `name` in field `number`.
std::string named(const Fields& f, int number, const std::string& name) {
  auto [b, e] = f.equal_range(number);
  for (auto it = b; it != e; ++it) {
    Fields entry = decode(it->second.bytes);
    if (only(entry, 1) == name) {
      return only(entry, 2);
    }
  }
  ADD_FAILURE() << "no entry " << name << " in field " << number;
  return "";
}

TEST(OpenApiV2Protobuf, EncodesTheDocumentKubectlValidatesWith) {
  model::Registry registry = model::kflexRegistry();
  DiscoveryDocs docs = buildDiscovery(registry, "v1.32.0+kflex");
  Json swagger = Json::parse(docs.openapi_v2);
  EXPECT_EQ(openApiV2Protobuf(swagger), docs.openapi_v2_protobuf);

  Fields doc = decode(docs.openapi_v2_protobuf);
  EXPECT_EQ(only(doc, 1), "2.0");                      // swagger
  EXPECT_EQ(only(decode(only(doc, 2)), 1), "kflex-hub");  // info.title
  // definitions: NamedSchema entries; ControlPlane with its GVK extension, as YAML (JSON is YAML).
  Fields definitions = decode(only(doc, 9));
  Fields cp = decode(named(definitions, 1, definitionName(*registry.find(model::kTenancyGroup, model::kTenancyVersion,
                                                                         "controlplanes"))));
  Fields gvk = decode(named(cp, 31, "x-kubernetes-group-version-kind"));
  Json gvk_value = Json::parse(only(gvk, 2));
  ASSERT_TRUE(gvk_value.is_array());
  EXPECT_EQ(gvk_value[0].value("kind", ""), "ControlPlane");
  EXPECT_EQ(gvk_value[0].value("group", ""), "tenancy.kflex.kubestellar.org");
  EXPECT_EQ(only(decode(only(cp, 22)), 1), "object");  // type: TypeItem
  // properties.spec.properties.type.enum carries "k3s" among the values, each an Any with YAML.
  Fields props = decode(only(cp, 25));
  Fields spec = decode(named(props, 1, "spec"));
  Fields type = decode(named(decode(only(spec, 25)), 1, "type"));
  bool k3s = false;
  auto [b, e] = type.equal_range(20);
  for (auto it = b; it != e; ++it) {
    k3s |= only(decode(it->second.bytes), 2) == "\"k3s\"";
  }
  EXPECT_TRUE(k3s);
  // paths: an operation with a query parameter (NonBodyParameter, query = 3).
  Fields paths = decode(only(doc, 8));
  Fields item = decode(named(paths, 2, "/apis/tenancy.kflex.kubestellar.org/v1alpha1/controlplanes/{name}"));
  Fields patch = decode(only(item, 8));
  EXPECT_EQ(only(patch, 5), "patchControlPlane");
  bool dry_run = false;
  auto [pb, pe] = patch.equal_range(8);
  for (auto it = pb; it != pe; ++it) {
    Fields parameter = decode(only(decode(it->second.bytes), 1));
    Fields non_body = decode(only(parameter, 2));
    if (non_body.count(3) != 0) {
      dry_run |= only(decode(only(non_body, 3)), 4) == "dryRun";
    }
  }
  EXPECT_TRUE(dry_run);
}

TEST(OpenApiV2Protobuf, ScalarsFollowProto3) {
  Json x_schema = {{"type", "integer"},       {"minimum", 1},
                   {"maxLength", 3},          {"uniqueItems", false},
                   {"additionalProperties", false}, {"items", {{"type", "string"}}}};
  Json s = {{"definitions", {{"x", x_schema}}}};
  Fields x = decode(named(decode(only(decode(openApiV2Protobuf(s)), 9)), 1, "x"));
  ASSERT_EQ(x.count(9), 1u);  // minimum: a double, fixed 64 bits
  EXPECT_EQ(x.find(9)->second.wire_type, 1);
  double minimum = 0;
  std::memcpy(&minimum, &x.find(9)->second.number, 8);
  EXPECT_EQ(minimum, 1.0);
  EXPECT_EQ(x.find(11)->second.number, 3u);  // maxLength: varint
  EXPECT_EQ(x.count(16), 0u);               // false is the default: left out
  // additionalProperties: false is a oneof member, so it is written.
  Fields additional = decode(only(x, 21));
  ASSERT_EQ(additional.count(2), 1u);
  EXPECT_EQ(additional.find(2)->second.number, 0u);
  // items: ItemsItem holding one Schema whose type is "string".
  Fields item_schema = decode(only(decode(only(x, 23)), 1));
  EXPECT_EQ(only(decode(only(item_schema, 22)), 1), "string");
}

}  // namespace
}  // namespace kflex::hub
