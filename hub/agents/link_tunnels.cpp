// SPDX-License-Identifier: Apache-2.0
#include "hub/agents/link_tunnels.hpp"

#include "shared/common/log.hpp"

namespace kflex::hub {

namespace tunnel = protocol::tunnel;

// One stream; every field but `executor` is used on that executor only.
struct LinkTunnels::Entry {
  explicit Entry(const net::any_io_executor& ex) : executor(ex), answer(ex) {
    answer.expires_at(net::steady_timer::time_point::max());
  }
  net::any_io_executor executor;   // where open() ran: the link's
  net::steady_timer answer;        // cancelled when the agent answers the OPEN
  bool answered = false;
  bool opened = false;
  std::string refused;             // RESET's reason, or why the link ended
  std::list<std::string> early;    // frames after OPENED, before attach() (a list: empty, it costs nothing)
  std::shared_ptr<Stream> stream;
};

LinkTunnels::LinkTunnels(std::shared_ptr<AgentLink> link, TunnelLimits limits)
    : link_(std::move(link)), limits_(limits) {}

size_t LinkTunnels::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

std::shared_ptr<LinkTunnels::Entry> LinkTunnels::find(uint32_t id) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(id);
  return it != entries_.end() ? it->second : nullptr;
}

void LinkTunnels::erase(uint32_t id) {
  std::lock_guard lock(mutex_);
  entries_.erase(id);
}

net::awaitable<Result<uint32_t>> LinkTunnels::open(std::string name) {
  auto entry = std::make_shared<Entry>(co_await net::this_coro::executor);
  uint32_t id = 0;
  {
    std::lock_guard lock(mutex_);
    if (closed_) {
      co_return fail(Errc::Unavailable, closed_why_);
    }
    if (entries_.size() >= limits_.max_streams) {
      co_return fail(Errc::Unavailable, "the agent's link carries " + std::to_string(entries_.size()) +
                                            " tunnel streams, the hub's limit; retry when some have ended");
    }
    do {
      id = ++last_id_;  // (wraps after 2^32 streams; 0 is never a stream, nor one still open)
    } while (id == 0 || entries_.count(id) > 0);
    entries_[id] = entry;
  }
  link_->sendFrame(tunnel::encodeOpen(id, name));
  entry->answer.expires_after(limits_.open_timeout);
  co_await entry->answer.async_wait(net::as_tuple(net::use_awaitable));
  if (entry->opened) {
    co_return id;
  }
  erase(id);
  if (!entry->answered) {
    link_->sendFrame(tunnel::encode(tunnel::FrameType::Reset, id, "the hub stopped waiting"));
    co_return fail(Errc::Unavailable,
                   "the agent did not answer within " + std::to_string(limits_.open_timeout.count()) + " s");
  }
  co_return fail(Errc::Unavailable, entry->refused);
}

void LinkTunnels::attach(uint32_t id, tls::LeanStream client) {
  // The stream's work runs on the link's loop, as its frames arrive there.
  if (auto moved = client.rebind(link_->executor()); !moved) {
    abandon(id, moved.error().message);
    tls::closeSocket(client);
    return;
  }
  net::dispatch(link_->executor(), [self = shared_from_this(), id, c = std::make_shared<tls::LeanStream>(std::move(client))] {
    self->start(id, std::move(*c));
  });
}

void LinkTunnels::start(uint32_t id, tls::LeanStream client) {
  auto entry = find(id);
  if (!entry || !entry->refused.empty()) {
    tls::closeSocket(client);  // the link ended meanwhile
    return;
  }
  auto link = link_;
  std::weak_ptr<LinkTunnels> weak = weak_from_this();
  entry->stream = std::make_shared<Stream>(
      id, std::move(client), [link](std::string frame) { link->sendFrame(std::move(frame)); },
      [weak](uint32_t ended, const std::string& why) {
        if (!why.empty()) {
          log::debug("tunnel stream ended", {{"stream", std::to_string(ended)}, {"why", why}});
        }
        if (auto self = weak.lock()) {
          self->erase(ended);
        }
      },
      limits_.idle_timeout);
  entry->stream->start();
  auto early = std::move(entry->early);
  for (const auto& message : early) {
    if (auto f = tunnel::decode(message)) {
      entry->stream->onFrame(*f);
    }
  }
}

void LinkTunnels::abandon(uint32_t id, const std::string& why) {
  erase(id);
  link_->sendFrame(tunnel::encode(tunnel::FrameType::Reset, id, why.substr(0, tunnel::kMaxReason)));
}

void LinkTunnels::onFrame(std::string message) {
  auto frame = tunnel::decode(message);
  if (!frame) {
    log::warn("malformed tunnel frame from an agent; ignored", {{"agent", link_->agent()}, {"error", frame.error().message}});
    return;
  }
  auto entry = find(frame->stream);
  if (!entry) {
    return;  // (a stream that has just ended: its late frames go nowhere)
  }
  // (On the link's executor, where the entry lives: at once, no hop between threads.)
  net::dispatch(entry->executor, [this, self = shared_from_this(), entry, message = std::move(message)]() mutable {
    auto f = tunnel::decode(message);  // (the frame views this copy)
    if (!f) {
      return;
    }
    if (!entry->answered) {
      if (f->type == tunnel::FrameType::Opened) {
        entry->opened = true;
      } else if (f->type == tunnel::FrameType::Reset) {
        entry->refused = f->payload.empty() ? std::string("the agent refused the stream") : std::string(f->payload);
      } else {
        return;  // (nothing else can come before the answer)
      }
      entry->answered = true;
      entry->answer.cancel();
      return;
    }
    if (entry->stream) {
      entry->stream->onFrame(*f, std::move(message));
    } else if (entry->early.size() < 64) {
      entry->early.push_back(std::move(message));
    } else {
      entry->refused = "too many frames before the stream started";
      abandon(f->stream, entry->refused);
    }
  });
}

void LinkTunnels::closeAll(const std::string& why) {
  std::map<uint32_t, std::shared_ptr<Entry>> entries;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    closed_why_ = why;
    entries.swap(entries_);
  }
  for (auto& [id, entry] : entries) {
    net::post(entry->executor, [entry, why] {
      if (!entry->answered) {
        entry->answered = true;
        entry->refused = why;
        entry->answer.cancel();
      } else if (entry->stream) {
        entry->stream->fail(why, false);
      } else {
        entry->refused = why;  // (attach() closes its client)
      }
    });
  }
}

}  // namespace kflex::hub
