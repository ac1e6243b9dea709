// SPDX-License-Identifier: Apache-2.0
// The hub's HTTP request path behind the TLS and HTTP parsing: ApiService::handle as an admin,
// over one store in a temporary directory that lives as long as the process. An input is
//
//   METHOD TARGET\n
//   CONTENT-TYPE\n
//   BODY
//
// so the fuzzer reaches query parsing, selectors, body decoding, every patch type, validation,
// managed fields, dry runs and the store. Every answer must be a Status or an object in JSON.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "fuzz/fuzz_target.hpp"
#include "hub/api/api_service.hpp"
#include "hub/store/object_store.hpp"
#include "shared/common/json_decode.hpp"
#include "shared/common/time.hpp"

namespace {

using namespace kflex;

struct Hub {
  Hub() {
    char tmpl[] = "/tmp/kflex-fuzz-XXXXXX";
    dir = ::mkdtemp(tmpl);
    store = std::move(hub::ObjectStore::open(dir / "hub.db", {}).value());
    api = std::make_unique<hub::ApiService>(*store, registry, clock, hub::ApiOptions{});
  }
  ~Hub() {
    api.reset();
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::filesystem::path dir;
  model::Registry registry = model::kflexRegistry();
  FakeClock clock{*parseTime("2026-01-01T00:00:00Z")};
  std::unique_ptr<hub::ObjectStore> store;
  std::unique_ptr<hub::ApiService> api;
};

Hub& theHub() {
  static Hub hub;
  return hub;
}

http::verb methodOf(const std::string& m) {
  for (auto v : {http::verb::get, http::verb::post, http::verb::put, http::verb::patch, http::verb::delete_}) {
    if (m == http::to_string(v)) {
      return v;
    }
  }
  return http::verb::get;
}

}  // namespace

KFLEX_FUZZ_TARGET(api_request) {
  std::string input(reinterpret_cast<const char*>(data), size);
  auto first = input.find('\n');
  auto second = first == std::string::npos ? std::string::npos : input.find('\n', first + 1);
  if (second == std::string::npos || first > 4096) {
    return 0;
  }
  std::string line = input.substr(0, first);
  auto space = line.find(' ');
  if (space == std::string::npos) {
    return 0;
  }
  hub::ApiRequest req;
  req.method = methodOf(line.substr(0, space));
  hub::parseTarget(line.substr(space + 1), req.path, req.query);
  req.content_type = input.substr(first + 1, second - first - 1);
  req.body = input.substr(second + 1);
  req.user.name = "admin";
  req.user.groups = {"system:masters", "system:authenticated"};
  net::io_context ioc;
  hub::ApiResponse out;
  bool done = false;
  net::co_spawn(ioc, theHub().api->handle(std::move(req)), [&](std::exception_ptr e, hub::ApiResponse r) {
    if (e) {
      std::rethrow_exception(e);  // an exception out of handle() is a finding
    }
    out = std::move(r);
    done = true;
  });
  for (int i = 0; i < 3000 && !done; ++i) {
    ioc.run_for(std::chrono::milliseconds(10));
    ioc.restart();
  }
  if (!done) {
    std::abort();  // a request that never completes is a finding too
  }
  if (!out.stream && out.status != 0 && out.content_type.find("json") != std::string::npos &&
      !decodeJson(out.body, {})) {
    std::abort();  // an answer that says JSON and is not
  }
  return 0;
}
