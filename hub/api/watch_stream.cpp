// SPDX-License-Identifier: Apache-2.0
#include "hub/api/watch_stream.hpp"

#include <algorithm>

#include "hub/api/api_service.hpp"
#include "hub/api/errors.hpp"
#include "hub/api/request_codec.hpp"
#include "hub/api/table_printer.hpp"

namespace kflex::hub {

using model::ResourceType;

namespace {

// kube-apiserver's tick through a watch's event channel (a bookmark is due, or the time is up).
const EventPtr kTick = std::make_shared<const Event>();

// One watch's state, shared by its stream and its ticker.
struct Watch {
  Watch(ObjectStore& s, const std::atomic<bool>& stop, const Clock& c, const ResourceType& type)
      : store(s), stopping(stop), clock(c), t(type) {}
  ObjectStore& store;
  const std::atomic<bool>& stopping;
  const Clock& clock;
  const ResourceType& t;
  std::shared_ptr<WatchSubscription> sub;
  std::function<bool(const ObjectRecord&)> filter;
  ApiRequest req;  // (for the Table columns)
  bool table = false;
  bool bookmarks = false;
  bool send_initial = false;
  bool first_table = true;
  std::chrono::steady_clock::time_point deadline;
  std::chrono::steady_clock::duration bookmark_interval{};
  // The ticker: one timer per watch, not one per event.
  std::unique_ptr<net::steady_timer> timer;
  bool done = false;  // set when the stream ends; stream and ticker run on the connection's loop

  std::string encode(const Event& e) {
    if (!table) {
      return watchEventLine(e.type, e.object->bytes);
    }
    std::string tbl = tableFor(req, t, {e.object}, e.revision, first_table, clock.now());
    first_table = false;
    return watchEventLine(e.type, tbl);
  }

  std::string bookmark(int64_t revision, bool initial_end) const {
    Json meta = {{"resourceVersion", std::to_string(revision)}, {"creationTimestamp", nullptr}};
    if (initial_end) {
      meta["annotations"] = {{"k8s.io/initial-events-end", "true"}};
    }
    return "{\"type\":\"BOOKMARK\",\"object\":" +
           Json{{"kind", t.kind}, {"apiVersion", t.apiVersion()}, {"metadata", meta}}.dump() + "}\n";
  }
};

// Sends a tick through the watch's event channel when a bookmark is due and when its time is up,
// so that the stream waits on the channel alone. (When the queue is full the tick is dropped; the
// stream is busy with events then and checks the deadline after each.)
net::awaitable<void> tick(std::shared_ptr<Watch> w) {
  while (!w->done) {
    w->timer->expires_at(std::min(w->deadline, std::chrono::steady_clock::now() + w->bookmark_interval));
    auto [ec] = co_await w->timer->async_wait(net::as_tuple(net::use_awaitable));
    if (ec || w->done) {
      co_return;
    }
    w->sub->channel->try_send(boost::system::error_code{}, kTick);
    if (std::chrono::steady_clock::now() >= w->deadline) {
      co_return;
    }
  }
}

// Streams the watch's events to `out` until the client goes, its time is up or the hub stops.
net::awaitable<void> streamEvents(std::shared_ptr<Watch> w, ChunkWriter& out) {
  auto ex = co_await net::this_coro::executor;
  WatchSubscription& sub = *w->sub;
  int64_t last = sub.revision;
  bool ok = true;
  std::string batch;
  for (const auto& e : sub.replay) {
    batch += w->encode(*e);  // the store kept only what the filter accepts
  }
  if (w->send_initial) {
    batch += w->bookmark(sub.revision, true);
  }
  if (!batch.empty()) {
    ok = co_await out.write(std::move(batch));
  }
  sub.replay = {};  // its memory too: a watch may live for half an hour
  w->timer = std::make_unique<net::steady_timer>(ex);
  net::co_spawn(ex, tick(w), net::detached);
  while (ok && !w->stopping) {
    auto [ec, event] = co_await sub.channel->async_receive(net::as_tuple(net::use_awaitable));
    if (ec || !event) {
      break;  // closed: shutdown or the watcher fell behind
    }
    if (std::chrono::steady_clock::now() >= w->deadline) {
      break;
    }
    if (event == kTick) {
      if (w->bookmarks) {
        ok = co_await out.write(w->bookmark(last, false));
      }
      continue;
    }
    last = event->revision;
    std::string chunk;
    if (w->filter(*event->object)) {
      chunk = w->encode(*event);
    }
    // Drain what else is queued into the same chunk.
    EventPtr more;
    while (sub.channel->try_receive([&](boost::system::error_code e2, EventPtr ev) {
      if (!e2 && ev && ev != kTick) {
        more = std::move(ev);
      }
    })) {
      if (more) {
        last = more->revision;
        if (w->filter(*more->object)) {
          chunk += w->encode(*more);
        }
        more.reset();
      }
    }
    if (!chunk.empty()) {
      ok = co_await out.write(std::move(chunk));
    }
  }
  w->done = true;
  w->timer->cancel();
  w->store.unwatch(sub.id);
}

}  // namespace

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
  auto w = std::make_shared<Watch>(store, stopping, clock, t);
  w->sub = std::make_shared<WatchSubscription>(std::move(sub_result.value()));
  w->filter = filter;
  w->req = req;
  w->table = wantsTable(req);
  w->bookmarks = bookmarks;
  w->send_initial = send_initial;
  w->deadline = std::chrono::steady_clock::now() + timeout;
  w->bookmark_interval = bookmark_interval;
  // (Not a coroutine itself: the stream lives in `w`, which the coroutine holds by value.)
  r.stream = [w](ChunkWriter& out) { return streamEvents(w, out); };
  return r;
}

}  // namespace kflex::hub
