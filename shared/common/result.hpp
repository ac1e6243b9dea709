// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include <boost/system/result.hpp>

namespace kflex {

/// An error that a caller can show to a person: a code-free message.
/// Made only by fail(), so that a Result<std::string> never mistakes a value for an error.
struct Error {
  struct Tag {};
  Error() = default;
  Error(Tag, std::string m) : message(std::move(m)) {}
  std::string message;  ///< What went wrong and, where known, what to do next.
};

/// Lets result<T, Error>::value() throw something printable (found by argument-dependent lookup).
[[noreturn]] inline void throw_exception_from_error(const Error& e, const boost::source_location&) {
  throw std::runtime_error(e.message);
}

/// The one result type of kflex: a value or an Error.
template <class T>
using Result = boost::system::result<T, Error>;

/// Shorthand for returning an error from a function that returns Result<T>.
inline Error fail(std::string message) { return Error(Error::Tag{}, std::move(message)); }

}  // namespace kflex

