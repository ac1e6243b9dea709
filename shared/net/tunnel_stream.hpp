// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "shared/net/asio.hpp"
#include "shared/protocol/tunnel.hpp"

namespace kflex::net_tunnel {

namespace tunnel = protocol::tunnel;

// What a stream needs of its socket besides reads and writes; overloads for other sockets
// (tls::LeanStream) live beside them and are found by argument-dependent lookup.
/// Ends the socket's sending side (a half-close, once everything written has been written).
inline void shutdownSend(net::ip::tcp::socket& s) {
  boost::system::error_code ignored;
  s.shutdown(net::socket_base::shutdown_send, ignored);
}
/// Closes the socket; operations in flight finish with an error.
inline void closeSocket(net::ip::tcp::socket& s) {
  boost::system::error_code ignored;
  s.close(ignored);
}
/// Waits until a read would not block, so that an idle stream holds no read buffer.
template <class Token>
auto asyncWaitReadable(net::ip::tcp::socket& s, Token&& token) {
  return s.async_wait(net::socket_base::wait_read, std::forward<Token>(token));
}

/**
 * One tunnel stream's end (docs/dev/tunnel.md): the bytes of a local socket (the agent's
 * connection to a control plane's API server, the hub's to a kubectl) carried as frames on the
 * agent link. What the socket gives goes out as DATA while the peer's window allows; DATA from
 * the peer is written to the socket and granted back (WINDOW) as it drains, so neither side ever
 * holds more than one window of a stream. `send` queues one binary frame on the link.
 *
 * Thread safety: everything on the socket's executor (a strand): call onFrame() there.
 */
template <class Socket>
class TunnelStream : public std::enable_shared_from_this<TunnelStream<Socket>> {
 public:
  using Send = std::function<void(std::string frame)>;
  /// Called once when the stream ends, with why ("" for a clean close of both sides).
  using Ended = std::function<void(uint32_t id, const std::string& why)>;

  /// `idle_timeout`: a stream with no DATA either way for this long is reset (0: never).
  TunnelStream(uint32_t id, Socket socket, Send send, Ended ended,
               std::chrono::steady_clock::duration idle_timeout = std::chrono::steady_clock::duration::zero())
      : id_(id), socket_(std::move(socket)), send_(std::move(send)), ended_(std::move(ended)),
        window_open_(socket_.get_executor()), inbound_ready_(socket_.get_executor()), idle_timer_(socket_.get_executor()),
        idle_timeout_(idle_timeout) {
    window_open_.expires_at(net::steady_timer::time_point::max());
    inbound_ready_.expires_at(net::steady_timer::time_point::max());
  }

  uint32_t id() const { return id_; }
  /// Bytes of the peer's DATA held here, not yet written to the socket.
  uint64_t buffered() const { return receive_.buffered(); }

  /// Starts moving bytes both ways.
  void start() {
    auto self = this->shared_from_this();
    net::co_spawn(socket_.get_executor(), self->outbound(), net::detached);
    net::co_spawn(socket_.get_executor(), self->inbound(), net::detached);
    if (idle_timeout_ > std::chrono::steady_clock::duration::zero()) {
      last_data_ = std::chrono::steady_clock::now();
      net::co_spawn(socket_.get_executor(), self->idleWatch(), net::detached);
    }
  }

  /// A frame of this stream from the peer (DATA, WINDOW, CLOSE, RESET).
  void onFrame(const tunnel::Frame& f) {
    switch (f.type) {
      case tunnel::FrameType::Data:
        if (auto r = receive_.received(f.payload.size()); !r || peer_closed_) {
          fail(r ? "DATA after the peer's CLOSE" : r.error().message, true);
          return;
        }
        inbound_.emplace_back(f.payload);
        last_data_ = std::chrono::steady_clock::now();
        inbound_ready_.cancel();
        break;
      case tunnel::FrameType::Window:
        if (auto r = send_window_.grant(tunnel::windowGrant(f)); !r) {
          fail(r.error().message, true);
          return;
        }
        window_open_.cancel();
        break;
      case tunnel::FrameType::Close:
        peer_closed_ = true;
        inbound_ready_.cancel();  // the writer shuts the socket's sending side once drained
        break;
      case tunnel::FrameType::Reset:
        fail("the peer reset the stream" + (f.payload.empty() ? std::string() : ": " + std::string(f.payload)),
             false);
        break;
      default:
        fail("unexpected " + std::to_string(int(f.type)) + " frame on an open stream", true);
    }
  }

  /// Ends the stream at once: RESET to the peer (when `tell_peer`), the socket closed.
  void fail(const std::string& why, bool tell_peer) {
    if (finished_) {
      return;
    }
    if (tell_peer) {
      send_(tunnel::encode(tunnel::FrameType::Reset, id_, why.substr(0, tunnel::kMaxReason)));
    }
    finish(why.empty() ? "reset" : why);
  }

 private:
  // Socket → DATA frames, within the peer's window; CLOSE at the socket's end of input.
  net::awaitable<void> outbound() {
    auto self = this->shared_from_this();
    std::string buf;  // (held only while bytes flow: an idle stream waits without it)
    while (!finished_) {
      while (send_window_.available() == 0 && !finished_) {
        window_open_.expires_at(net::steady_timer::time_point::max());
        co_await window_open_.async_wait(net::as_tuple(net::use_awaitable));
      }
      if (finished_) {
        co_return;
      }
      if (buf.empty()) {
        auto [wec] = co_await asyncWaitReadable(socket_, net::as_tuple(net::use_awaitable));
        if (finished_) {
          co_return;
        }
        if (wec) {
          fail("the local connection failed: " + wec.message(), true);
          co_return;
        }
        buf.resize(tunnel::kMaxData);
      }
      size_t want = size_t(std::min<uint64_t>(buf.size(), send_window_.available()));
      auto [ec, n] = co_await socket_.async_read_some(net::buffer(buf.data(), want), net::as_tuple(net::use_awaitable));
      if (finished_) {
        co_return;
      }
      if (ec == net::error::eof) {
        send_(tunnel::encode(tunnel::FrameType::Close, id_));
        we_closed_ = true;
        maybeDone();
        co_return;
      }
      if (ec) {
        fail("the local connection failed: " + ec.message(), true);
        co_return;
      }
      (void)send_window_.take(n);
      last_data_ = std::chrono::steady_clock::now();
      send_(tunnel::encode(tunnel::FrameType::Data, id_, std::string_view(buf.data(), n)));
      if (n < want) {
        std::string().swap(buf);  // drained for now: wait for more without the buffer
      }
    }
  }

  // DATA from the peer → the socket, granting the window back as it drains.
  net::awaitable<void> inbound() {
    auto self = this->shared_from_this();
    while (!finished_) {
      if (inbound_.empty()) {
        if (peer_closed_) {
          shutdownSend(socket_);
          peer_drained_ = true;
          maybeDone();
          co_return;
        }
        inbound_ready_.expires_at(net::steady_timer::time_point::max());
        co_await inbound_ready_.async_wait(net::as_tuple(net::use_awaitable));
        continue;
      }
      std::string chunk = std::move(inbound_.front());
      inbound_.pop_front();
      auto [ec, n] = co_await net::async_write(socket_, net::buffer(chunk), net::as_tuple(net::use_awaitable));
      if (finished_) {
        co_return;
      }
      if (ec) {
        fail("the local connection failed: " + ec.message(), true);
        co_return;
      }
      if (uint32_t grant = receive_.consumed(n)) {
        send_(tunnel::encodeWindow(id_, grant));
      }
    }
  }

  // Resets the stream once no DATA went either way for the idle timeout.
  net::awaitable<void> idleWatch() {
    auto self = this->shared_from_this();
    while (!finished_) {
      idle_timer_.expires_at(last_data_ + idle_timeout_);
      co_await idle_timer_.async_wait(net::as_tuple(net::use_awaitable));
      if (finished_) {
        co_return;
      }
      if (std::chrono::steady_clock::now() - last_data_ >= idle_timeout_) {
        fail("idle for " + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(idle_timeout_).count()) +
                 " s",
             true);
        co_return;
      }
    }
  }

  void maybeDone() {
    if (we_closed_ && peer_drained_) {
      finish("");
    }
  }

  void finish(const std::string& why) {
    if (std::exchange(finished_, true)) {
      return;
    }
    closeSocket(socket_);
    window_open_.cancel();
    inbound_ready_.cancel();
    idle_timer_.cancel();
    inbound_.clear();
    if (ended_) {
      ended_(id_, why);
    }
  }

  uint32_t id_;
  Socket socket_;
  Send send_;
  Ended ended_;
  tunnel::SendWindow send_window_;
  tunnel::ReceiveWindow receive_;
  std::deque<std::string> inbound_;
  net::steady_timer window_open_;    // cancelled when the peer grants more
  net::steady_timer inbound_ready_;  // cancelled when DATA or CLOSE arrives
  net::steady_timer idle_timer_;
  std::chrono::steady_clock::duration idle_timeout_;
  std::chrono::steady_clock::time_point last_data_{};
  bool peer_closed_ = false;   // CLOSE received
  bool peer_drained_ = false;  // ... and everything before it written to the socket
  bool we_closed_ = false;     // CLOSE sent (the socket's input ended)
  bool finished_ = false;
};

}  // namespace kflex::net_tunnel
