// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include <boost/system/result.hpp>

namespace kflex {

/// The kinds of error a caller branches on. Anything no caller tells apart is Internal.
enum class Errc {
  Internal,     ///< Anything else: a bug, an I/O failure, a file that cannot be written.
  NotFound,     ///< What was asked for does not exist (HTTP 404).
  Conflict,     ///< Something else already exists or holds it: a name taken (HTTP 409), a port in use.
  Invalid,      ///< The request or input is malformed or not allowed (HTTP 400, 422).
  Unavailable,  ///< A peer cannot be reached or answered with an error; trying again may help.
  Refused,      ///< A peer refused the credentials (HTTP 401, 403): retrying alone will not help.
  Timeout,      ///< A deadline passed before the operation completed.
  NoSpace,      ///< The disk is full.
};

/// An error that a caller can show to a person: a message, and a code for callers to branch on.
/// Made only by fail(), so that a Result<std::string> never mistakes a value for an error.
struct Error {
  struct Tag {};
  Error() = default;
  Error(Tag, Errc c, std::string m) : code(c), message(std::move(m)) {}
  Errc code = Errc::Internal;  ///< What kind of error it is; callers branch on this, never on the message.
  std::string message;         ///< What went wrong and, where known, what to do next.
};

/// Lets result<T, Error>::value() throw something printable (found by argument-dependent lookup).
[[noreturn]] inline void throw_exception_from_error(const Error& e, const boost::source_location&) {
  throw std::runtime_error(e.message);
}

/// The one result type of kflex: a value or an Error.
template <class T>
using Result = boost::system::result<T, Error>;

/// Shorthand for returning an error of kind `code` from a function that returns Result<T>.
inline Error fail(Errc code, std::string message) { return Error(Error::Tag{}, code, std::move(message)); }

/// Shorthand for returning an Internal error (no caller branches on its kind).
inline Error fail(std::string message) { return fail(Errc::Internal, std::move(message)); }

}  // namespace kflex
