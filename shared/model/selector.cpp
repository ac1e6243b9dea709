// SPDX-License-Identifier: Apache-2.0
#include "shared/model/selector.hpp"

#include <algorithm>

#include "shared/common/util.hpp"

namespace kflex::model {
namespace {

// Splits on commas that are not inside parentheses.
std::vector<std::string> splitTopLevel(const std::string& s) {
  std::vector<std::string> out;
  int depth = 0;
  std::string cur;
  for (char c : s) {
    if (c == '(') {
      ++depth;
    } else if (c == ')') {
      --depth;
    }
    if (c == ',' && depth == 0) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

bool validKey(std::string_view k) {
  if (k.empty() || k.size() > 316) {
    return false;
  }
  for (char c : k) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/')) {
      return false;
    }
  }
  return true;
}

}  // namespace

Result<LabelSelector> LabelSelector::parse(const std::string& text) {
  LabelSelector sel;
  if (trim(text).empty()) {
    return sel;
  }
  for (const auto& raw : splitTopLevel(text)) {
    std::string part(trim(raw));
    if (part.empty()) {
      return fail("unable to parse requirement: found ',', expected: identifier");
    }
    Requirement req;
    size_t pos;
    if (part[0] == '!') {
      req.key = std::string(trim(part.substr(1)));
      req.op = Op::NotExists;
    } else if ((pos = part.find("!=")) != std::string::npos) {
      req.key = std::string(trim(part.substr(0, pos)));
      req.op = Op::NotIn;
      req.values.emplace_back(trim(part.substr(pos + 2)));
    } else if ((pos = part.find("==")) != std::string::npos) {
      req.key = std::string(trim(part.substr(0, pos)));
      req.op = Op::In;
      req.values.emplace_back(trim(part.substr(pos + 2)));
    } else if ((pos = part.find('=')) != std::string::npos) {
      req.key = std::string(trim(part.substr(0, pos)));
      req.op = Op::In;
      req.values.emplace_back(trim(part.substr(pos + 1)));
    } else if ((pos = part.find(" notin ")) != std::string::npos || (pos = part.find(" in ")) != std::string::npos) {
      bool notin = part.compare(pos, 7, " notin ") == 0;
      req.key = std::string(trim(part.substr(0, pos)));
      req.op = notin ? Op::NotIn : Op::In;
      std::string rest(trim(part.substr(pos + (notin ? 7 : 4))));
      if (rest.size() < 2 || rest.front() != '(' || rest.back() != ')') {
        return fail("unable to parse requirement: expected a parenthesised value list in " + ("\"" + part + "\""));
      }
      for (const auto& v : split(rest.substr(1, rest.size() - 2), ',')) {
        req.values.emplace_back(trim(v));
      }
    } else {
      req.key = part;
      req.op = Op::Exists;
    }
    if (!validKey(req.key)) {
      return fail("invalid label key " + ("\"" + req.key + "\""));
    }
    sel.reqs_.push_back(std::move(req));
  }
  return sel;
}

bool LabelSelector::matches(const std::map<std::string, std::string>& labels) const {
  for (const auto& r : reqs_) {
    auto it = labels.find(r.key);
    switch (r.op) {
      case Op::Exists:
        if (it == labels.end()) {
          return false;
        }
        break;
      case Op::NotExists:
        if (it != labels.end()) {
          return false;
        }
        break;
      case Op::In:
        if (it == labels.end() || std::find(r.values.begin(), r.values.end(), it->second) == r.values.end()) {
          return false;
        }
        break;
      case Op::NotIn:
        if (it != labels.end() && std::find(r.values.begin(), r.values.end(), it->second) != r.values.end()) {
          return false;
        }
        break;
    }
  }
  return true;
}

Result<FieldSelector> FieldSelector::parse(const std::string& text) {
  FieldSelector sel;
  if (trim(text).empty()) {
    return sel;
  }
  for (const auto& raw : split(text, ',')) {
    std::string part(trim(raw));
    size_t pos;
    Requirement req;
    std::string field;
    if ((pos = part.find("!=")) != std::string::npos) {
      field = part.substr(0, pos);
      req = {false, part.substr(pos + 2)};
    } else if ((pos = part.find("==")) != std::string::npos) {
      field = part.substr(0, pos);
      req = {true, part.substr(pos + 2)};
    } else if ((pos = part.find('=')) != std::string::npos) {
      field = part.substr(0, pos);
      req = {true, part.substr(pos + 1)};
    } else {
      return fail("invalid selector: '" + part + "'; can't understand '" + part + "'");
    }
    field = std::string(trim(field));
    if (field != "metadata.name") {
      return fail("field label not supported: " + field);
    }
    sel.reqs_.push_back(std::move(req));
  }
  return sel;
}

bool FieldSelector::matches(const std::string& name) const {
  for (const auto& r : reqs_) {
    if ((name == r.value) != r.equal) {
      return false;
    }
  }
  return true;
}

}  // namespace kflex::model
