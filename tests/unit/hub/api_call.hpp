// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "hub/api/api_service.hpp"
#include "tests/support/test_support.hpp"

namespace kflex::hub {

/// Serves one request as an admin (user "admin" in system:masters) and waits for its answer
/// (at most 30 s): writes complete on the store's thread and post back to a private io_context.
inline ApiResponse callApi(ApiService& api, http::verb method, const std::string& target, const std::string& body = "",
                           const std::string& content_type = "application/json", const std::string& accept = "") {
  ApiRequest req;
  req.method = method;
  parseTarget(target, req.path, req.query);
  req.body = body;
  req.content_type = content_type;
  req.accept = accept;
  req.user.name = "admin";
  req.user.groups = {"system:masters"};
  net::io_context ioc;
  ApiResponse out;
  bool done = false;
  net::co_spawn(ioc, api.handle(req), [&](std::exception_ptr e, ApiResponse r) {
    if (e) {
      std::rethrow_exception(e);
    }
    out = std::move(r);
    done = true;
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done && std::chrono::steady_clock::now() < deadline) {
    ioc.run_for(std::chrono::milliseconds(10));
    ioc.restart();
  }
  return out;
}

/// Runs one coroutine to its end on a private io_context (at most 30 s) and returns its value.
template <class T>
T runToEnd(net::awaitable<T> op) {
  net::io_context ioc;
  std::optional<T> out;
  net::co_spawn(ioc, std::move(op), [&](std::exception_ptr e, T r) {
    if (e) {
      std::rethrow_exception(e);
    }
    out.emplace(std::move(r));
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!out && std::chrono::steady_clock::now() < deadline) {
    ioc.run_for(std::chrono::milliseconds(10));
    ioc.restart();
  }
  EXPECT_TRUE(out) << "the call did not finish";
  return std::move(*out);
}

/// A store in a temp dir and the API over it, with a fake clock, for tests of the hub's API and
/// of what runs beside it.
class ApiFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = ObjectStore::open(dir_.path() / "hub.db", {});
    ASSERT_TRUE(s);
    store_ = std::move(s.value());
    api_ = std::make_unique<ApiService>(*store_, registry_, clock_, ApiOptions{});
  }

  ApiResponse call(http::verb method, const std::string& target, const std::string& body = "",
                   const std::string& content_type = "application/json", const std::string& accept = "") {
    return callApi(*api_, method, target, body, content_type, accept);
  }

  test::TempDir dir_;
  model::Registry registry_ = model::kflexRegistry();
  FakeClock clock_{*parseTime("2026-01-01T00:00:00Z")};
  std::unique_ptr<ObjectStore> store_;
  std::unique_ptr<ApiService> api_;
};

}  // namespace kflex::hub
