// SPDX-License-Identifier: Apache-2.0
#include "shared/common/json_pluck.hpp"

#include <nlohmann/json.hpp>

namespace kflex {
namespace {

using Json = nlohmann::json;

// An event handler for nlohmann's SAX parser that keeps the current key path and records the
// values found at the wanted paths.
class Plucker {
 public:
  explicit Plucker(const std::vector<std::vector<std::string>>& paths) : paths_(paths), found_(paths.size()) {}

  bool null() { return value(nullptr); }
  bool boolean(bool) { return value(nullptr); }
  bool number_integer(Json::number_integer_t) { return value(nullptr); }
  bool number_unsigned(Json::number_unsigned_t) { return value(nullptr); }
  bool number_float(Json::number_float_t, const Json::string_t&) { return value(nullptr); }
  bool string(Json::string_t& s) { return value(&s); }
  bool binary(Json::binary_t&) { return value(nullptr); }
  bool start_object(std::size_t) {
    value(nullptr);  // the object itself is a value at the current path
    path_.emplace_back();
    in_array_.push_back(false);
    return true;
  }
  bool key(Json::string_t& k) {
    path_.back() = k;
    return true;
  }
  bool end_object() {
    path_.pop_back();
    in_array_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    value(nullptr);
    in_array_.push_back(true);
    return true;
  }
  bool end_array() {
    in_array_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) { return false; }

  std::vector<Plucked> take() { return std::move(found_); }

 private:
  bool value(const std::string* s) {
    if (!in_array_.empty() && in_array_.back()) {
      return true;  // array elements are not addressed
    }
    for (size_t i = 0; i < paths_.size(); ++i) {
      if (paths_[i] == path_) {
        found_[i].present = true;
        if (s != nullptr) {
          found_[i].string = *s;
        }
      }
    }
    return true;
  }

  const std::vector<std::vector<std::string>>& paths_;
  std::vector<Plucked> found_;
  std::vector<std::string> path_;
  std::vector<bool> in_array_;
};

}  // namespace

std::optional<std::vector<Plucked>> pluckJson(std::string_view json, const std::vector<std::vector<std::string>>& paths) {
  Plucker p(paths);
  if (!Json::sax_parse(json.begin(), json.end(), &p, Json::input_format_t::json, true, false)) {
    return std::nullopt;
  }
  return p.take();
}

}  // namespace kflex
