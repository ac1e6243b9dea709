// SPDX-License-Identifier: Apache-2.0
// PostCreateHook templates: the part of Go's text/template that KubeFlex's hooks use, rendered
// strictly (an undefined variable is an error, as text/template's missingkey=error).
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "shared/common/result.hpp"

namespace kflex::kube {

/**
 * Renders `text` with `vars`, as Go's text/template renders a template executed on a
 * map[string]string:
 * - `{{.Name}}` and `{{ .Name }}` insert a variable; `{{"literal"}}` a string literal;
 * - `{{- ` and ` -}}` trim the white space before or after the action;
 * - a comment, `{{` slash-star ... star-slash `}}`, prints nothing.
 * Anything else inside `{{ }}` (pipelines, functions, if/range) is refused with a message
 * saying so. Errors name the template (`name`), the line and the column, as Go does:
 * `template: NAME:LINE:COL: ...`.
 */
Result<std::string> renderTemplate(std::string_view text, const std::map<std::string, std::string>& vars,
                                   const std::string& name);

}  // namespace kflex::kube
