// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <map>
#include <string>
#include <vector>

#include "shared/common/result.hpp"

namespace kflex::model {

/// A parsed label selector (the syntax of kubectl -l): k=v, k==v, k!=v, k in (a,b), k notin (a),
/// k, !k, joined by commas.
class LabelSelector {
 public:
  static Result<LabelSelector> parse(const std::string& text);
  bool matches(const std::map<std::string, std::string>& labels) const;
  bool empty() const { return reqs_.empty(); }

 private:
  enum class Op { In, NotIn, Exists, NotExists };
  struct Requirement {
    std::string key;
    Op op;
    std::vector<std::string> values;
  };
  std::vector<Requirement> reqs_;
};

/// A field selector over the fields kflex indexes: metadata.name (= == !=).
class FieldSelector {
 public:
  static Result<FieldSelector> parse(const std::string& text);
  bool matches(const std::string& name) const;

 private:
  struct Requirement {
    bool equal;
    std::string value;
  };
  std::vector<Requirement> reqs_;
};

}  // namespace kflex::model
