// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace kflex::log {

enum class Level { Debug, Info, Warn, Error };

/// One key=value pair of a structured log line.
using Field = std::pair<std::string_view, std::string>;

/// Writes one structured line (logfmt) to stderr: time, level, message, fields.
/// Thread safety: safe from any thread; lines never interleave.
void write(Level level, std::string_view msg, std::initializer_list<Field> fields = {});
/// Sets the lowest level written (default Info).
void setLevel(Level level);

inline void info(std::string_view msg, std::initializer_list<Field> f = {}) { write(Level::Info, msg, f); }
inline void warn(std::string_view msg, std::initializer_list<Field> f = {}) { write(Level::Warn, msg, f); }
inline void error(std::string_view msg, std::initializer_list<Field> f = {}) { write(Level::Error, msg, f); }
inline void debug(std::string_view msg, std::initializer_list<Field> f = {}) { write(Level::Debug, msg, f); }

}  // namespace kflex::log
