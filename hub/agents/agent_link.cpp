// SPDX-License-Identifier: Apache-2.0
#include "hub/agents/agent_link.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include "shared/common/log.hpp"
#include "shared/common/version.hpp"

namespace kflex::hub {
namespace {
namespace websocket = beast::websocket;
using namespace net::experimental::awaitable_operators;
}  // namespace

AgentLink::AgentLink(tls::LeanStream&& stream, std::string agent, std::string peer,
                     LinkOptions options)
    : ws_(std::move(stream)),
      wake_(ws_.get_executor()),
      agent_(std::move(agent)),
      peer_(std::move(peer)),
      options_(options) {}

net::awaitable<bool> AgentLink::accept(http::request<http::string_body> req) {
  websocket::stream_base::timeout t{};
  t.handshake_timeout = std::chrono::seconds(10);
  t.idle_timeout = options_.idle_timeout;
  t.keep_alive_pings = true;
  ws_.set_option(t);
  ws_.read_message_max(protocol::kMaxFrameBytes);
  ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
    res.set(http::field::server, std::string("kflex-hub/") + kVersion);
  }));
  ws_.write_buffer_bytes(2048);  // link messages are small; the default is 4 KiB per link
  auto [ec] = co_await ws_.async_accept(req, net::as_tuple(net::use_awaitable));
  if (ec) {
    log::warn("agent link handshake failed",
              {{"agent", agent_}, {"peer", peer_}, {"error", ec.message()}});
    co_return false;
  }
  co_return true;
}

net::awaitable<void> AgentLink::run(MessageHandler on_message, FrameHandler on_frame) {
  try {
    co_await (readLoop(on_message, on_frame) && writeLoop());
  } catch (const std::exception& e) {
    // (The read loop answers a message it cannot handle; this is for anything else.) The link
    // ends here, whatever went wrong.
    log::error("agent link failed", {{"agent", agent_}, {"peer", peer_}, {"error", e.what()}});
    abort();
  }
}

void AgentLink::abort() {
  closing_ = true;
  boost::system::error_code ec;
  beast::get_lowest_layer(ws_.next_layer()).socket().close(ec);
  wake_.cancel();
}

void AgentLink::send(std::string frame) {
  net::dispatch(executor(), [this, self = shared_from_this(), m = std::move(frame)]() mutable {
    if (closing_) {
      return;
    }
    if (queued_ > 0 && queued_ + m.size() > options_.max_queue_bytes) {
      // A slow agent is disconnected, not buffered without end. (One message alone may be larger:
      // a snapshot of control planes with their hooks.)
      log::warn("agent too slow; disconnecting",
                {{"agent", agent_}, {"queued_bytes", std::to_string(queued_)}});
      close_code_ = protocol::code::kTooSlow;
      abort();
      return;
    }
    queued_ += m.size();
    queue_.push_back(std::move(m));
    wake_.cancel();
  });
}

void AgentLink::sendFrame(std::string frame) {
  net::dispatch(executor(), [this, self = shared_from_this(), f = std::move(frame)]() mutable {
    if (closing_) {
      return;
    }
    frames_.push_back(std::move(f));
    wake_.cancel();
  });
}

void AgentLink::close(std::string code, std::string message) {
  net::dispatch(executor(), [this, self = shared_from_this(), code = std::move(code),
                             message = std::move(message)]() mutable {
    if (closing_) {
      return;
    }
    std::string err = protocol::encode(protocol::ErrorBody{code, std::move(message)}, nextSeq());
    queued_ += err.size();
    queue_.push_back(std::move(err));
    close_code_ = std::move(code);
    closing_ = true;
    wake_.cancel();
  });
}

net::awaitable<void> AgentLink::writeLoop() {
  while (true) {
    if (queue_.empty() && (frames_.empty() || closing_)) {
      if (closing_) {
        break;
      }
      wake_.expires_at(net::steady_timer::time_point::max());
      co_await wake_.async_wait(net::as_tuple(net::use_awaitable));
      continue;
    }
    std::string m;
    if (!queue_.empty()) {
      m = std::move(queue_.front());
      queue_.pop_front();
      queued_ -= m.size();
      ws_.text(true);
    } else {
      m = std::move(frames_.front());
      frames_.pop_front();
      ws_.binary(true);
    }
    auto [ec, n] = co_await ws_.async_write(net::buffer(m), net::as_tuple(net::use_awaitable));
    if (ec) {
      closing_ = true;
      co_return;
    }
  }
  if (ws_.is_open()) {
    websocket::close_reason why(close_code_ == protocol::code::kShuttingDown
                                    ? websocket::close_code::going_away
                                : close_code_.empty() ? websocket::close_code::normal
                                                      : websocket::close_code::policy_error,
                                close_code_);
    co_await ws_.async_close(why, net::as_tuple(net::use_awaitable));
  }
}

net::awaitable<void> AgentLink::readLoop(const MessageHandler& on_message, const FrameHandler& on_frame) {
  while (!closing_) {
    // Each message is read into a string of its own, which a tunnel frame's handler keeps (its
    // payload is written on from there, never copied); an idle link holds no buffer.
    std::string text;
    auto buffer = net::dynamic_buffer(text);
    auto [ec, n] = co_await ws_.async_read(buffer, net::as_tuple(net::use_awaitable));
    if (ec) {
      if (ec == websocket::error::message_too_big) {
        log::warn("agent sent an oversized frame",
                  {{"agent", agent_}, {"limit", std::to_string(protocol::kMaxFrameBytes)}});
        close_code_ = protocol::code::kProtocol;
      }
      break;
    }
    if (ws_.got_binary()) {
      if (!on_frame) {
        close(protocol::code::kProtocol, "this hub takes no binary messages on an agent link");
        break;
      }
      on_frame(std::move(text));
      continue;
    }
    auto env = protocol::decode(text);
    if (!env) {
      log::warn("agent protocol error", {{"agent", agent_}, {"error", env.error().message}});
      close(protocol::code::kProtocol, env.error().message);
      break;
    }
    // Messages are decoded field by field and never throw; should a handler throw all the same,
    // the link ends as after a protocol error (an error frame, then a close and clean-up)
    // instead of the exception ending the read loop with the link still open.
    bool handled = false;
    try {
      handled = co_await on_message(env.value());
    } catch (const std::exception& e) {
      log::error("cannot handle an agent message; closing the link",
                 {{"agent", agent_}, {"type", env->type}, {"error", e.what()}});
      close(protocol::code::kProtocol, "the hub cannot handle this " + env->type + " message");
    }
    if (!handled) {
      break;
    }
  }
  closing_ = true;
  wake_.cancel();
}

}  // namespace kflex::hub
