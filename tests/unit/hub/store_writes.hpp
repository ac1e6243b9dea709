// SPDX-License-Identifier: Apache-2.0
// Writes the store tests make (SQLite and PostgreSQL alike), on resource "g/things".
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>

#include "hub/store/object_store.hpp"

namespace kflex::hub::test_writes {

/// Puts object `name` with label v=`value` (created or replaced).
inline Mutation putObject(const std::string& name, const std::string& value) {
  return [name, value](const ObjectRecord*, int64_t) {
    Decision d;
    d.kind = Decision::Kind::Put;
    d.object = {{"metadata", {{"name", name}, {"labels", {{"v", value}}}}}};
    return d;
  };
}

/// Deletes the object; NotFound when there is none.
inline Mutation deleteObject() {
  return [](const ObjectRecord* cur, int64_t) {
    Decision d;
    d.kind = cur ? Decision::Kind::Delete : Decision::Kind::Fail;
    d.code = Errc::NotFound;
    return d;
  };
}

/// Submits a mutation and waits (30 s at most) for its result.
inline WriteResult write(ObjectStore& s, const std::string& name, Mutation m) {
  std::promise<WriteResult> promise;
  auto future = promise.get_future();
  s.write("g/things", name, std::move(m), [&](WriteResult r) { promise.set_value(std::move(r)); });
  if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    ADD_FAILURE() << "write did not complete in 30 s";
    return {};
  }
  return future.get();
}

}  // namespace kflex::hub::test_writes
