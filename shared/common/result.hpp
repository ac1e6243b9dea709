// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <utility>

#include <boost/system/result.hpp>

namespace kflex {

/// An error that a caller can show to a person: a code-free message.
struct Error {
  std::string message;  ///< What went wrong and, where known, what to do next.
};

/// The one result type of kflex: a value or an Error.
template <class T>
using Result = boost::system::result<T, Error>;

/// Shorthand for returning an error from a function that returns Result<T>.
inline Error fail(std::string message) { return Error{std::move(message)}; }

}  // namespace kflex

namespace boost::system {
/// Lets result<T, kflex::Error>::value() throw something printable.
[[noreturn]] inline void throw_exception_from_error(const kflex::Error& e,
                                                     const boost::source_location&) {
  throw std::runtime_error(e.message);
}
}  // namespace boost::system
