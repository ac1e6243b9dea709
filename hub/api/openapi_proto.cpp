// SPDX-License-Identifier: Apache-2.0
#include "hub/api/openapi_proto.hpp"

#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <string_view>

namespace kflex::hub {
namespace {

using Json = nlohmann::json;

// Protobuf wire format: only what the OpenAPI v2 messages need.
class Writer {
 public:
  void varint(uint64_t v) {
    while (v >= 0x80) {
      out_ += char((v & 0x7f) | 0x80);
      v >>= 7;
    }
    out_ += char(v);
  }
  void tag(int field, int wire_type) { varint((uint64_t(field) << 3) | uint64_t(wire_type)); }
  /// A length-delimited field: strings and embedded messages (written even when empty, so that
  /// a present but empty message, or a oneof member, is seen).
  void bytes(int field, std::string_view b) {
    tag(field, 2);
    varint(b.size());
    out_.append(b);
  }
  // proto3 leaves scalars at their default value out.
  void str(int field, std::string_view s) {
    if (!s.empty()) {
      bytes(field, s);
    }
  }
  void boolean(int field, bool b) {
    if (b) {
      tag(field, 0);
      varint(1);
    }
  }
  void int64(int field, int64_t v) {
    if (v != 0) {
      tag(field, 0);
      varint(uint64_t(v));
    }
  }
  void dbl(int field, double v) {
    if (v != 0) {
      tag(field, 1);
      uint64_t bits = 0;
      std::memcpy(&bits, &v, sizeof bits);
      for (int i = 0; i < 8; ++i) {
        out_ += char((bits >> (8 * i)) & 0xff);
      }
    }
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

enum class Kind { Str, Bool, Int, Dbl, StrList, Any, AnyList };
struct Field {
  const char* key;
  int number;
  Kind kind;
};
// Handles the keys a table does not: true when it wrote the key.
using Custom = std::function<bool(const std::string& key, const Json& value, Writer& w)>;

// openapi.v2.Any: the value as YAML (field 2).
std::string anyOf(const Json& v) {
  Writer w;
  w.str(2, v.dump());
  return w.take();
}

// openapi.v2.NamedAny.
std::string namedAny(const std::string& name, const Json& v) {
  Writer w;
  w.str(1, name);
  w.bytes(2, anyOf(v));
  return w.take();
}

// Encodes the keys of `obj` that `fields` lists, vendor extensions (x-...) as NamedAny in field
// `ext`, and hands the rest to `custom`.
std::string message(const Json& obj, std::initializer_list<Field> fields, int ext, const Custom& custom = nullptr) {
  Writer w;
  if (!obj.is_object()) {
    return w.take();
  }
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const std::string& key = it.key();
    const Json& v = it.value();
    if (key.rfind("x-", 0) == 0) {
      if (ext != 0) {
        w.bytes(ext, namedAny(key, v));
      }
      continue;
    }
    const Field* f = nullptr;
    for (const auto& candidate : fields) {
      if (key == candidate.key) {
        f = &candidate;
      }
    }
    if (f == nullptr) {
      if (custom) {
        custom(key, v, w);
      }
      continue;
    }
    if (f->number == 0) {
      continue;  // a key this message variant has no field for
    }
    switch (f->kind) {
      case Kind::Str:
        if (v.is_string()) {
          w.str(f->number, v.get<std::string>());
        }
        break;
      case Kind::Bool:
        if (v.is_boolean()) {
          w.boolean(f->number, v.get<bool>());
        }
        break;
      case Kind::Int:
        if (v.is_number_integer()) {
          w.int64(f->number, v.get<int64_t>());
        }
        break;
      case Kind::Dbl:
        if (v.is_number()) {
          w.dbl(f->number, v.get<double>());
        }
        break;
      case Kind::StrList:
        for (const auto& s : v) {
          if (s.is_string()) {
            w.bytes(f->number, s.get<std::string>());
          }
        }
        break;
      case Kind::Any:
        w.bytes(f->number, anyOf(v));
        break;
      case Kind::AnyList:
        for (const auto& e : v) {
          w.bytes(f->number, anyOf(e));
        }
        break;
    }
  }
  return w.take();
}

std::string schema(const Json& s);

// A map of schemas as repeated NamedSchema (Properties, Definitions).
std::string namedSchemas(const Json& map) {
  Writer w;
  for (auto it = map.begin(); map.is_object() && it != map.end(); ++it) {
    Writer named;
    named.str(1, it.key());
    named.bytes(2, schema(it.value()));
    w.bytes(1, named.take());
  }
  return w.take();
}

std::string schema(const Json& s) {
  return message(
      s,
      {{"$ref", 1, Kind::Str},          {"format", 2, Kind::Str},         {"title", 3, Kind::Str},
       {"description", 4, Kind::Str},   {"default", 5, Kind::Any},        {"multipleOf", 6, Kind::Dbl},
       {"maximum", 7, Kind::Dbl},       {"exclusiveMaximum", 8, Kind::Bool}, {"minimum", 9, Kind::Dbl},
       {"exclusiveMinimum", 10, Kind::Bool}, {"maxLength", 11, Kind::Int}, {"minLength", 12, Kind::Int},
       {"pattern", 13, Kind::Str},      {"maxItems", 14, Kind::Int},      {"minItems", 15, Kind::Int},
       {"uniqueItems", 16, Kind::Bool}, {"maxProperties", 17, Kind::Int}, {"minProperties", 18, Kind::Int},
       {"required", 19, Kind::StrList}, {"enum", 20, Kind::AnyList},      {"discriminator", 26, Kind::Str},
       {"readOnly", 27, Kind::Bool},    {"example", 30, Kind::Any}},
      31, [](const std::string& key, const Json& v, Writer& w) {
        if (key == "additionalProperties") {  // AdditionalPropertiesItem: oneof schema (1) | boolean (2)
          Writer item;
          if (v.is_boolean()) {
            item.tag(2, 0);  // a oneof member is written even when false
            item.varint(v.get<bool>() ? 1 : 0);
          } else {
            item.bytes(1, schema(v));
          }
          w.bytes(21, item.take());
        } else if (key == "type") {  // TypeItem: repeated string
          Writer item;
          for (const auto& t : v.is_array() ? v : Json::array({v})) {
            if (t.is_string()) {
              item.bytes(1, t.get<std::string>());
            }
          }
          w.bytes(22, item.take());
        } else if (key == "items") {  // ItemsItem: repeated Schema
          Writer item;
          for (const auto& e : v.is_array() ? v : Json::array({v})) {
            item.bytes(1, schema(e));
          }
          w.bytes(23, item.take());
        } else if (key == "allOf") {
          for (const auto& e : v) {
            w.bytes(24, schema(e));
          }
        } else if (key == "properties") {
          w.bytes(25, namedSchemas(v));
        } else {
          return false;
        }
        return true;
      });
}

// PrimitivesItems (the items of a non-body parameter).
std::string primitivesItems(const Json& s) {
  return message(s,
                 {{"type", 1, Kind::Str},       {"format", 2, Kind::Str},           {"collectionFormat", 4, Kind::Str},
                  {"default", 5, Kind::Any},    {"maximum", 6, Kind::Dbl},          {"exclusiveMaximum", 7, Kind::Bool},
                  {"minimum", 8, Kind::Dbl},    {"exclusiveMinimum", 9, Kind::Bool}, {"maxLength", 10, Kind::Int},
                  {"minLength", 11, Kind::Int}, {"pattern", 12, Kind::Str},         {"maxItems", 13, Kind::Int},
                  {"minItems", 14, Kind::Int},  {"uniqueItems", 15, Kind::Bool},    {"enum", 16, Kind::AnyList},
                  {"multipleOf", 17, Kind::Dbl}},
                 18, [](const std::string& key, const Json& v, Writer& w) {
                   if (key == "items") {
                     w.bytes(3, primitivesItems(v));
                     return true;
                   }
                   return false;
                 });
}

// The query and formData sub-schemas share one numbering, the path and header ones another
// (no allowEmptyValue): `shift` is 1 for the former.
std::string nonBodySubSchema(const Json& p, int shift) {
  auto n = [shift](int path_number) { return path_number + shift; };
  return message(p,
                 {{"required", 1, Kind::Bool},          {"in", 2, Kind::Str},
                  {"description", 3, Kind::Str},        {"name", 4, Kind::Str},
                  {"allowEmptyValue", shift == 1 ? 5 : 0, Kind::Bool},
                  {"type", n(5), Kind::Str},            {"format", n(6), Kind::Str},
                  {"collectionFormat", n(8), Kind::Str}, {"default", n(9), Kind::Any},
                  {"maximum", n(10), Kind::Dbl},        {"exclusiveMaximum", n(11), Kind::Bool},
                  {"minimum", n(12), Kind::Dbl},        {"exclusiveMinimum", n(13), Kind::Bool},
                  {"maxLength", n(14), Kind::Int},      {"minLength", n(15), Kind::Int},
                  {"pattern", n(16), Kind::Str},        {"maxItems", n(17), Kind::Int},
                  {"minItems", n(18), Kind::Int},       {"uniqueItems", n(19), Kind::Bool},
                  {"enum", n(20), Kind::AnyList},       {"multipleOf", n(21), Kind::Dbl}},
                 n(22), [n](const std::string& key, const Json& v, Writer& w) {
                   if (key == "items") {
                     w.bytes(n(7), primitivesItems(v));
                     return true;
                   }
                   return false;
                 });
}

std::string jsonReference(const Json& r) {
  return message(r, {{"$ref", 1, Kind::Str}, {"description", 2, Kind::Str}}, 0);
}

// ParametersItem: oneof Parameter (1) | JsonReference (2).
std::string parametersItem(const Json& p) {
  Writer item;
  if (p.contains("$ref")) {
    item.bytes(2, jsonReference(p));
    return item.take();
  }
  Writer parameter;
  std::string in = p.value("in", "");
  if (in == "body") {
    parameter.bytes(1, message(p, {{"description", 1, Kind::Str}, {"name", 2, Kind::Str}, {"in", 3, Kind::Str},
                                   {"required", 4, Kind::Bool}},
                               6, [](const std::string& key, const Json& v, Writer& w) {
                                 if (key == "schema") {
                                   w.bytes(5, schema(v));
                                   return true;
                                 }
                                 return false;
                               }));
  } else {
    // NonBodyParameter: oneof header (1) | formData (2) | query (3) | path (4).
    Writer non_body;
    if (in == "header") {
      non_body.bytes(1, nonBodySubSchema(p, 0));
    } else if (in == "formData") {
      non_body.bytes(2, nonBodySubSchema(p, 1));
    } else if (in == "query") {
      non_body.bytes(3, nonBodySubSchema(p, 1));
    } else {
      non_body.bytes(4, nonBodySubSchema(p, 0));
    }
    parameter.bytes(2, non_body.take());
  }
  item.bytes(1, parameter.take());
  return item.take();
}

std::string responses(const Json& r) {
  Writer w;
  for (auto it = r.begin(); r.is_object() && it != r.end(); ++it) {
    if (it.key().rfind("x-", 0) == 0) {
      w.bytes(2, namedAny(it.key(), it.value()));
      continue;
    }
    Writer value;  // ResponseValue: oneof Response (1) | JsonReference (2)
    if (it.value().contains("$ref")) {
      value.bytes(2, jsonReference(it.value()));
    } else {
      value.bytes(1, message(it.value(), {{"description", 1, Kind::Str}}, 5,
                             [](const std::string& key, const Json& v, Writer& rw) {
                               if (key == "schema") {  // SchemaItem: oneof Schema (1) | FileSchema (2)
                                 Writer item;
                                 item.bytes(1, schema(v));
                                 rw.bytes(2, item.take());
                                 return true;
                               }
                               return false;
                             }));
    }
    Writer named;
    named.str(1, it.key());
    named.bytes(2, value.take());
    w.bytes(1, named.take());
  }
  return w.take();
}

std::string operation(const Json& op) {
  return message(op,
                 {{"tags", 1, Kind::StrList},    {"summary", 2, Kind::Str},       {"description", 3, Kind::Str},
                  {"operationId", 5, Kind::Str}, {"produces", 6, Kind::StrList},  {"consumes", 7, Kind::StrList},
                  {"schemes", 10, Kind::StrList}, {"deprecated", 11, Kind::Bool}},
                 13, [](const std::string& key, const Json& v, Writer& w) {
                   if (key == "parameters") {
                     for (const auto& p : v) {
                       w.bytes(8, parametersItem(p));
                     }
                   } else if (key == "responses") {
                     w.bytes(9, responses(v));
                   } else {
                     return false;
                   }
                   return true;
                 });
}

std::string pathItem(const Json& item) {
  return message(item, {{"$ref", 1, Kind::Str}}, 10, [](const std::string& key, const Json& v, Writer& w) {
    static constexpr std::pair<const char*, int> kVerbs[] = {{"get", 2},     {"put", 3},  {"post", 4}, {"delete", 5},
                                                             {"options", 6}, {"head", 7}, {"patch", 8}};
    for (const auto& [verb, number] : kVerbs) {
      if (key == verb) {
        w.bytes(number, operation(v));
        return true;
      }
    }
    if (key == "parameters") {
      for (const auto& p : v) {
        w.bytes(9, parametersItem(p));
      }
      return true;
    }
    return false;
  });
}

}  // namespace

std::string openApiV2Protobuf(const Json& swagger) {
  return message(swagger,
                 {{"swagger", 1, Kind::Str},
                  {"host", 3, Kind::Str},
                  {"basePath", 4, Kind::Str},
                  {"schemes", 5, Kind::StrList},
                  {"consumes", 6, Kind::StrList},
                  {"produces", 7, Kind::StrList}},
                 16, [](const std::string& key, const Json& v, Writer& w) {
                   if (key == "info") {
                     w.bytes(2, message(v, {{"title", 1, Kind::Str}, {"version", 2, Kind::Str},
                                            {"description", 3, Kind::Str}, {"termsOfService", 4, Kind::Str}},
                                        7));
                   } else if (key == "paths") {
                     Writer paths;
                     for (auto it = v.begin(); v.is_object() && it != v.end(); ++it) {
                       if (it.key().rfind("x-", 0) == 0) {
                         paths.bytes(1, namedAny(it.key(), it.value()));
                         continue;
                       }
                       Writer named;
                       named.str(1, it.key());
                       named.bytes(2, pathItem(it.value()));
                       paths.bytes(2, named.take());
                     }
                     w.bytes(8, paths.take());
                   } else if (key == "definitions") {
                     w.bytes(9, namedSchemas(v));
                   } else {
                     return false;
                   }
                   return true;
                 });
}

}  // namespace kflex::hub
