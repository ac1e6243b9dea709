// SPDX-License-Identifier: Apache-2.0
#include "shared/kube/template.hpp"

#include <cctype>

namespace kflex::kube {
namespace {

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Go identifiers: a letter or '_', then letters, digits or '_'.
bool isIdentifier(std::string_view s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) {
    return false;
  }
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') {
      return false;
    }
  }
  return true;
}

// A Go interpreted string literal ("..." with \n, \t, \", \\) or raw one (`...`).
bool unquote(std::string_view s, std::string& out) {
  if (s.size() >= 2 && s.front() == '`' && s.back() == '`') {
    out = std::string(s.substr(1, s.size() - 2));
    return out.find('`') == std::string::npos;
  }
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') {
    return false;
  }
  out.clear();
  for (size_t i = 1; i + 1 < s.size(); ++i) {
    char c = s[i];
    if (c == '"') {
      return false;
    }
    if (c != '\\') {
      out += c;
      continue;
    }
    if (i + 2 >= s.size()) {
      return false;  // a backslash right before the closing quote
    }
    switch (s[++i]) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      default: return false;
    }
  }
  return true;
}

}  // namespace

Result<std::string> renderTemplate(std::string_view text, const std::map<std::string, std::string>& vars,
                                   const std::string& name) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  // Position of an offset, for messages: line and column from 1, as Go counts them.
  auto where = [&](size_t offset) {
    size_t line = 1;
    size_t col = 1;
    for (size_t i = 0; i < offset && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    return "template: " + name + ":" + std::to_string(line) + ":" + std::to_string(col) + ": ";
  };
  while (pos < text.size()) {
    size_t open = text.find("{{", pos);
    if (open == std::string_view::npos) {
      out.append(text.substr(pos));
      break;
    }
    out.append(text.substr(pos, open - pos));
    size_t inner = open + 2;
    // "{{- " trims white space before the action (the dash must be followed by a space).
    if (inner + 1 < text.size() && text[inner] == '-' && isSpace(text[inner + 1])) {
      while (!out.empty() && isSpace(out.back())) {
        out.pop_back();
      }
      inner += 2;
    }
    // A comment runs to "*/}}" (or "*/ -}}").
    std::string_view rest = text.substr(inner);
    size_t lead = 0;
    while (lead < rest.size() && isSpace(rest[lead])) {
      ++lead;
    }
    size_t close;
    bool trim_after = false;
    std::string_view action;
    if (rest.substr(lead, 2) == "/*") {
      size_t end = text.find("*/", inner + lead + 2);
      if (end == std::string_view::npos) {
        return fail(where(open) + "unclosed comment");
      }
      size_t after = end + 2;
      while (after < text.size() && isSpace(text[after])) {
        ++after;
      }
      if (text.substr(after, 3) == "-}}") {
        trim_after = true;
        close = after + 3;
      } else if (text.substr(after, 2) == "}}") {
        close = after + 2;
      } else {
        return fail(where(open) + "comment ends before the end of the action");
      }
    } else {
      size_t end = text.find("}}", inner);
      if (end == std::string_view::npos) {
        return fail(where(open) + "unclosed action");
      }
      close = end + 2;
      size_t stop = end;
      // " -}}" trims white space after the action.
      if (stop >= inner + 2 && text[stop - 1] == '-' && isSpace(text[stop - 2])) {
        trim_after = true;
        stop -= 1;
      }
      action = text.substr(inner, stop - inner);
      while (!action.empty() && isSpace(action.front())) {
        action.remove_prefix(1);
      }
      while (!action.empty() && isSpace(action.back())) {
        action.remove_suffix(1);
      }
      if (action.empty()) {
        return fail(where(open) + "missing value for command");
      }
      std::string literal;
      if (action.front() == '.' && isIdentifier(action.substr(1))) {
        auto it = vars.find(std::string(action.substr(1)));
        if (it == vars.end()) {
          return fail(where(open) + "executing \"" + name + "\" at <" + std::string(action) +
                      ">: map has no entry for key \"" + std::string(action.substr(1)) +
                      "\" (define it in the hook's defaultVars, the control plane's globalVars or the "
                      "hook's vars)");
        }
        out += it->second;
      } else if (unquote(action, literal)) {
        out += literal;
      } else {
        return fail(where(open) + "unsupported action {{" + std::string(action) +
                    "}}: kflex renders variables ({{.Name}}), string literals and comments, as KubeFlex's "
                    "hooks use them");
      }
    }
    pos = close;
    if (trim_after) {
      while (pos < text.size() && isSpace(text[pos])) {
        ++pos;
      }
    }
  }
  return out;
}

}  // namespace kflex::kube
