// SPDX-License-Identifier: Apache-2.0
#include "hub/api/watch_stream.hpp"

#include <algorithm>

#include "hub/api/api_service.hpp"
#include "hub/api/errors.hpp"
#include "hub/api/request_codec.hpp"
#include "hub/api/table_printer.hpp"

namespace kflex::hub {

using model::ResourceType;

std::string watchEventLine(EventType type, const std::string& object_json) {
  const char* name = type == EventType::Added ? "ADDED" : type == EventType::Modified ? "MODIFIED" : "DELETED";
  std::string line;
  line.reserve(object_json.size() + 32);
  line += "{\"type\":\"";
  line += name;
  line += "\",\"object\":";
  line += object_json;
  line += "}\n";
  return line;
}

ApiResponse watchResponse(ObjectStore& store, const std::atomic<bool>& stopping, const Clock& clock, const ApiRequest& req,
                          const ResourceType& t, const std::string& name, std::chrono::seconds default_timeout,
                          std::chrono::seconds bookmark_interval) {
  auto parsed = parseSelectors(req);
  if (auto* bad = std::get_if<ApiResponse>(&parsed)) {
    return std::move(*bad);
  }
  const auto& [labels, fields] = std::get<Selectors>(parsed);
  int64_t since = 0;
  std::string rv = req.query.count("resourceVersion") ? req.query.at("resourceVersion") : "";
  if (auto bad = checkQueryResourceVersion(req, store.revision(), since)) {
    return std::move(*bad);
  }
  std::chrono::seconds timeout = default_timeout;
  if (auto it = req.query.find("timeoutSeconds"); it != req.query.end() && !it->second.empty()) {
    try {
      timeout = std::chrono::seconds(std::max(1L, std::stol(it->second)));
    } catch (const std::exception&) {
      return statusResponse(400, "BadRequest", "timeoutSeconds must be an integer");
    }
  }
  bool bookmarks = req.query.count("allowWatchBookmarks") && req.query.at("allowWatchBookmarks") == "true";
  bool send_initial = req.query.count("sendInitialEvents") && req.query.at("sendInitialEvents") == "true";
  if (send_initial && !bookmarks) {
    return statusResponse(422, "Invalid", "sendInitialEvents requires allowWatchBookmarks=true");
  }
  // Only the named object, when watching one (kubectl get NAME -w uses a field selector instead).
  ApiRequest copy = req;
  bool every_ns = t.namespaced && req.ns.empty();
  auto filter = [labels = labels, fields = fields, name, key = resourceKey(t, req.ns), every_ns](const ObjectRecord& o) {
    bool ours = every_ns ? o.resource.rfind(key, 0) == 0 : o.resource == key;
    return ours && (name.empty() || o.name == name) && labels.matches(o.labels) && fields.matches(o.name);
  };
  ApiResponse r;
  if (stopping) {
    return statusResponse(503, "ServiceUnavailable", "the hub is shutting down");
  }
  // Subscribe now so that a 410 is a real status code, not an event inside a 200 stream.
  auto sub_result = store.watch(rv == "0" ? 0 : since, net::system_executor(), 0, filter);
  if (!sub_result) {
    return statusResponse(410, "Expired", sub_result.error().message);
  }
  auto sub = std::make_shared<WatchSubscription>(std::move(sub_result.value()));
  bool table = wantsTable(req);
  r.stream = [&store, &stopping, &clock, sub, filter, copy, table, timeout, bookmarks, send_initial, bookmark_interval,
              &t](ChunkWriter& out)
      -> net::awaitable<void> {
    auto ex = co_await net::this_coro::executor;
    bool first_table = true;
    auto encode = [&](const Event& e) -> std::string {
      if (!table) {
        return watchEventLine(e.type, e.object->bytes);
      }
      std::string tbl = tableFor(copy, t, {e.object}, e.revision, first_table, clock.now());
      first_table = false;
      return watchEventLine(e.type, tbl);
    };
    auto bookmark = [&](int64_t revision, bool initial_end) {
      Json meta = {{"resourceVersion", std::to_string(revision)}, {"creationTimestamp", nullptr}};
      if (initial_end) {
        meta["annotations"] = {{"k8s.io/initial-events-end", "true"}};
      }
      return "{\"type\":\"BOOKMARK\",\"object\":" +
             Json{{"kind", t.kind}, {"apiVersion", t.apiVersion()}, {"metadata", meta}}.dump() + "}\n";
    };
    int64_t last = sub->revision;
    bool ok = true;
    std::string batch;
    for (const auto& e : sub->replay) {
      batch += encode(*e);  // the store kept only what `filter` accepts
    }
    if (send_initial) {
      batch += bookmark(sub->revision, true);
    }
    if (!batch.empty()) {
      ok = co_await out.write(std::move(batch));
    }
    sub->replay = {};  // its memory too: a watch may live for half an hour
    auto deadline = std::chrono::steady_clock::now() + timeout;
    // One timer per watch, not one per event: a ticker sends a tick through the event channel
    // when a bookmark is due and when the watch's time is up, so the loop waits on the channel
    // alone. (When the queue is full the tick is dropped; the loop is busy with events then and
    // checks the deadline after each.)
    static const EventPtr kTick = std::make_shared<const Event>();
    struct Ticker {
      explicit Ticker(const net::any_io_executor& e) : timer(e) {}
      net::steady_timer timer;
      bool done = false;  // set by the loop when it ends; both run on the connection's loop
    };
    auto ticker = std::make_shared<Ticker>(ex);
    std::chrono::steady_clock::duration interval = bookmark_interval;
    net::co_spawn(ex, [ticker, sub, deadline, interval]() -> net::awaitable<void> {
      while (!ticker->done) {
        ticker->timer.expires_at(std::min(deadline, std::chrono::steady_clock::now() + interval));
        auto [ec] = co_await ticker->timer.async_wait(net::as_tuple(net::use_awaitable));
        if (ec || ticker->done) {
          co_return;
        }
        sub->channel->try_send(boost::system::error_code{}, kTick);
        if (std::chrono::steady_clock::now() >= deadline) {
          co_return;
        }
      }
    }, net::detached);
    while (ok && !stopping) {
      auto [ec, event] = co_await sub->channel->async_receive(net::as_tuple(net::use_awaitable));
      if (ec || !event) {
        break;  // closed: shutdown or the watcher fell behind
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        break;
      }
      if (event == kTick) {
        if (bookmarks) {
          ok = co_await out.write(bookmark(last, false));
        }
        continue;
      }
      last = event->revision;
      std::string chunk;
      if (filter(*event->object)) {
        chunk = encode(*event);
      }
      // Drain what else is queued into the same chunk.
      EventPtr more;
      while (sub->channel->try_receive([&](boost::system::error_code e2, EventPtr ev) {
        if (!e2 && ev && ev != kTick) {
          more = std::move(ev);
        }
      })) {
        if (more) {
          last = more->revision;
          if (filter(*more->object)) {
            chunk += encode(*more);
          }
          more.reset();
        }
      }
      if (!chunk.empty()) {
        ok = co_await out.write(std::move(chunk));
      }
    }
    ticker->done = true;
    ticker->timer.cancel();
    store.unwatch(sub->id);
  };
  return r;
}

}  // namespace kflex::hub
