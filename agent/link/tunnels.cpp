// SPDX-License-Identifier: Apache-2.0
#include "agent/link/tunnels.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "shared/common/log.hpp"

namespace kflex::agent {

namespace tunnel = protocol::tunnel;
using namespace net::experimental::awaitable_operators;

Tunnels::Tunnels(net::any_io_executor executor, Resolve resolve, Send send, size_t max_streams)
    : executor_(std::move(executor)), resolve_(std::move(resolve)), send_(std::move(send)), max_streams_(max_streams) {}

Tunnels::~Tunnels() { closeAll(); }

void Tunnels::reset(uint32_t id, const std::string& why) {
  send_(tunnel::encode(tunnel::FrameType::Reset, id, why.substr(0, tunnel::kMaxReason)));
}

void Tunnels::onMessage(std::string message) {
  auto frame = tunnel::decode(message);
  if (!frame) {
    log::warn("malformed tunnel frame from the hub; ignored", {{"error", frame.error().message}});
    return;
  }
  const uint32_t id = frame->stream;
  if (frame->type == tunnel::FrameType::Open) {
    if (streams_.count(id) > 0 || dialling_.count(id) > 0) {
      reset(id, "stream " + std::to_string(id) + " is already open");
      return;
    }
    if (size() >= max_streams_) {
      reset(id, "this agent has " + std::to_string(size()) + " tunnel streams open, its limit");
      return;
    }
    auto name = tunnel::openedControlPlane(*frame);
    if (!name) {
      reset(id, name.error().message);
      return;
    }
    dialling_[id] = name.value();
    net::co_spawn(executor_, open(id, name.value(), alive_), net::detached);
    return;
  }
  auto it = streams_.find(id);
  if (it == streams_.end()) {
    if (dialling_.count(id) > 0 && frame->type == tunnel::FrameType::Reset) {
      dialling_.erase(id);  // the hub gave up before the dial ended
    }
    return;  // (a stream that has just ended: its late frames go nowhere)
  }
  auto stream = it->second;  // (onFrame may end it, which erases it from the map)
  stream->onFrame(*frame, std::move(message));
}

net::awaitable<void> Tunnels::open(uint32_t id, std::string name, std::shared_ptr<bool> alive) {
  auto target = resolve_(name);
  if (!target) {
    dialling_.erase(id);
    reset(id, target.error().message);
    co_return;
  }
  net::ip::tcp::socket socket(executor_);
  net::steady_timer timeout(executor_, std::chrono::seconds(10));
  std::string failed;
  // A name (an adopted cluster's server) is resolved here, by this host's resolver.
  std::vector<net::ip::tcp::endpoint> endpoints;
  boost::system::error_code not_ip;
  auto address = net::ip::make_address(target->host, not_ip);
  if (!not_ip) {
    endpoints.emplace_back(address, target->port);
  } else {
    net::ip::tcp::resolver resolver(executor_);
    auto found = co_await (resolver.async_resolve(target->host, std::to_string(target->port),
                                                  net::as_tuple(net::use_awaitable)) ||
                           timeout.async_wait(net::as_tuple(net::use_awaitable)));
    if (found.index() == 1) {
      failed = "resolving " + target->host + " timed out";
    } else if (auto [rec, results] = std::get<0>(found); rec) {
      failed = "cannot resolve " + target->host + ": " + rec.message();
    } else {
      for (const auto& r : results) {
        endpoints.push_back(r.endpoint());
      }
    }
  }
  if (failed.empty()) {
    auto result = co_await (net::async_connect(socket, endpoints, net::as_tuple(net::use_awaitable)) ||
                            timeout.async_wait(net::as_tuple(net::use_awaitable)));
    if (result.index() == 1) {
      failed = "timed out";
    } else if (auto [ec, ep] = std::get<0>(result); ec) {
      failed = ec.message();
    }
  }
  if (!*alive) {
    co_return;  // closed meanwhile (the link ended)
  }
  bool still_wanted = dialling_.erase(id) > 0;
  if (!still_wanted) {
    co_return;  // the hub reset it meanwhile
  }
  if (!failed.empty()) {
    reset(id, "cannot connect to control plane " + name + "'s API server: " + failed);
    co_return;
  }
  auto stream = std::make_shared<Stream>(id, std::move(socket), send_, [this, alive](uint32_t ended, const std::string& why) {
    if (!*alive) {
      return;
    }
    if (!why.empty()) {
      log::debug("tunnel stream ended", {{"stream", std::to_string(ended)}, {"why", why}});
    }
    streams_.erase(ended);
  });
  streams_[id] = stream;
  send_(tunnel::encode(tunnel::FrameType::Opened, id));
  stream->start();
}

void Tunnels::closeAll() {
  *alive_ = false;
  alive_ = std::make_shared<bool>(true);
  auto streams = std::move(streams_);
  streams_.clear();
  dialling_.clear();
  for (auto& [id, s] : streams) {
    s->fail("the link to the hub ended", false);
  }
}

}  // namespace kflex::agent
