// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <exception>
#include <string>

#include "hub/api/api_service.hpp"

namespace kflex::test {

/// Serves one request as an admin (user "admin" in system:masters) and waits for its answer
/// (at most 30 s): writes complete on the store's thread and post back to a private io_context.
inline hub::ApiResponse callApi(hub::ApiService& api, http::verb method, const std::string& target, const std::string& body = "",
                                const std::string& content_type = "application/json", const std::string& accept = "") {
  hub::ApiRequest req;
  req.method = method;
  hub::parseTarget(target, req.path, req.query);
  req.body = body;
  req.content_type = content_type;
  req.accept = accept;
  req.user.name = "admin";
  req.user.groups = {"system:masters"};
  net::io_context ioc;
  hub::ApiResponse out;
  bool done = false;
  net::co_spawn(ioc, api.handle(req), [&](std::exception_ptr e, hub::ApiResponse r) {
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

}  // namespace kflex::test
