// SPDX-License-Identifier: Apache-2.0
#include "shared/common/json_write.hpp"

#include <charconv>
#include <cstdint>
#include <cstring>

namespace kflex {
namespace {

// True for the bytes dump() escapes or decodes: control characters, '"', '\\' and non-ASCII.
inline bool special(unsigned char c) { return c < 0x20 || c == '"' || c == '\\' || c >= 0x80; }

// Whether any of the 8 bytes of w is special, a word at a time.
inline bool anySpecial(uint64_t w) {
  constexpr uint64_t kOnes = 0x0101010101010101ull;
  constexpr uint64_t kHigh = 0x8080808080808080ull;
  auto has_zero = [](uint64_t v) { return (v - kOnes) & ~v & kHigh; };
  // (Bytes >= 0x80 are caught by the first test; below it every byte is < 0x80.)
  return (w & kHigh) != 0 || ((w - 0x20 * kOnes) & kHigh) != 0 || has_zero(w ^ ('"' * kOnes)) != 0 ||
         has_zero(w ^ ('\\' * kOnes)) != 0;
}

void appendString(std::string& out, const std::string& s) {
  const char* p = s.data();
  const char* end = p + s.size();
  out.push_back('"');
  while (p != end) {
    const char* run = p;
    uint64_t w;
    while (end - p >= 8 && (std::memcpy(&w, p, 8), !anySpecial(w))) {
      p += 8;
    }
    while (p != end && !special(static_cast<unsigned char>(*p))) {
      ++p;
    }
    out.append(run, p);
    if (p == end) {
      break;
    }
    unsigned char c = static_cast<unsigned char>(*p);
    if (c >= 0x80) {
      // UTF-8 is checked and written by nlohmann, from the first non-ASCII byte to the end.
      std::string rest = nlohmann::json(std::string(p, end)).dump();
      out.append(rest, 1, rest.size() - 2);
      break;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: {
        static constexpr char kHex[] = "0123456789abcdef";
        char u[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
        out.append(u, sizeof u);
      }
    }
    ++p;
  }
  out.push_back('"');
}

template <class Int>
void appendInt(std::string& out, Int v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace

void appendJson(std::string& out, const nlohmann::json& v) {
  using T = nlohmann::json::value_t;
  switch (v.type()) {
    case T::object: {
      out.push_back('{');
      bool first = true;
      for (const auto& [key, item] : v.get_ref<const nlohmann::json::object_t&>()) {
        if (!first) {
          out.push_back(',');
        }
        first = false;
        appendString(out, key);
        out.push_back(':');
        appendJson(out, item);
      }
      out.push_back('}');
      return;
    }
    case T::array: {
      out.push_back('[');
      bool first = true;
      for (const auto& item : v.get_ref<const nlohmann::json::array_t&>()) {
        if (!first) {
          out.push_back(',');
        }
        first = false;
        appendJson(out, item);
      }
      out.push_back(']');
      return;
    }
    case T::string:
      appendString(out, v.get_ref<const std::string&>());
      return;
    case T::boolean:
      out += v.get<bool>() ? "true" : "false";
      return;
    case T::number_integer:
      appendInt(out, v.get<int64_t>());
      return;
    case T::number_unsigned:
      appendInt(out, v.get<uint64_t>());
      return;
    case T::null:
      out += "null";
      return;
    default:  // floating point, binary, discarded: nlohmann's own text
      out += v.dump();
      return;
  }
}

std::string dumpJson(const nlohmann::json& value) {
  std::string out;
  out.reserve(1024);
  appendJson(out, value);
  return out;
}

namespace {
void release(nlohmann::json& value, int depth) {
  if (depth > 32) {
    return;  // the destructor frees what is deeper, without recursion
  }
  if (value.is_object()) {
    auto& members = value.get_ref<nlohmann::json::object_t&>();
    for (auto& member : members) {
      if (member.second.is_structured()) {
        release(member.second, depth + 1);
      }
    }
    members.clear();
  } else if (value.is_array()) {
    auto& items = value.get_ref<nlohmann::json::array_t&>();
    for (auto& item : items) {
      if (item.is_structured()) {
        release(item, depth + 1);
      }
    }
    items.clear();
  }
}
}  // namespace

void releaseJson(nlohmann::json& value) { release(value, 0); }

}  // namespace kflex
