// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
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
/// From now on, debug and info lines are collected and written together at most `interval`
/// after the first of them (or once 64 KiB are waiting), as servers write access logs: one
/// write(2) for many requests. Warnings and errors are written at once, with what waits before
/// them. Waiting lines are written at exit() and by flush(); a crash loses at most `interval`.
/// A forked child starts unbuffered, with nothing waiting.
void setBuffered(std::chrono::milliseconds interval);
/// Writes every waiting line now.
void flush();

inline void info(std::string_view msg, std::initializer_list<Field> f = {}) { write(Level::Info, msg, f); }
inline void warn(std::string_view msg, std::initializer_list<Field> f = {}) { write(Level::Warn, msg, f); }
inline void error(std::string_view msg, std::initializer_list<Field> f = {}) { write(Level::Error, msg, f); }
inline void debug(std::string_view msg, std::initializer_list<Field> f = {}) { write(Level::Debug, msg, f); }

}  // namespace kflex::log
