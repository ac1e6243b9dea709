// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
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
        idle_timer_(socket_.get_executor()), idle_timeout_(idle_timeout) {}

  uint32_t id() const { return id_; }
  /// Bytes of the peer's DATA held here, not yet written to the socket.
  uint64_t buffered() const { return receive_.buffered(); }

  /// Starts moving bytes both ways.
  void start() {
    pumpOut();
    if (idle_timeout_ > std::chrono::steady_clock::duration::zero()) {
      last_data_ = std::chrono::steady_clock::now();
      armIdle();
    }
  }

  /// A frame of this stream from the peer (DATA, WINDOW, CLOSE, RESET).
  void onFrame(const tunnel::Frame& f) {
    switch (f.type) {
      case tunnel::FrameType::Data:
        onData(f, Chunk{std::string(f.payload), 0});
        break;
      case tunnel::FrameType::Window:
        if (auto r = send_window_.grant(tunnel::windowGrant(f)); !r) {
          fail(r.error().message, true);
          return;
        }
        pumpOut();
        break;
      case tunnel::FrameType::Close:
        peer_closed_ = true;
        pumpIn();  // the socket's sending side is shut once what came before is written
        break;
      case tunnel::FrameType::Reset:
        fail("the peer reset the stream" + (f.payload.empty() ? std::string() : ": " + std::string(f.payload)),
             false);
        break;
      default:
        fail("unexpected " + std::to_string(int(f.type)) + " frame on an open stream", true);
    }
  }

  /// The same, `f` decoded from `message`: a DATA frame's payload is written from the message
  /// itself, without a copy.
  void onFrame(const tunnel::Frame& f, std::string&& message) {
    if (f.type != tunnel::FrameType::Data) {
      onFrame(f);
      return;
    }
    // (Compared as addresses: a payload that is not this message's tail is copied.)
    auto begin = reinterpret_cast<uintptr_t>(message.data());
    auto payload = reinterpret_cast<uintptr_t>(f.payload.data());
    if (payload < begin || payload + f.payload.size() != begin + message.size()) {
      onFrame(f);
      return;
    }
    onData(f, Chunk{std::move(message), size_t(payload - begin)});
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
  // Bytes of the peer's DATA to write to the socket: `message` from `offset` on.
  struct Chunk {
    std::string message;
    size_t offset = 0;
  };

  void onData(const tunnel::Frame& f, Chunk chunk) {
    if (auto r = receive_.received(f.payload.size()); !r || peer_closed_) {
      fail(r ? "DATA after the peer's CLOSE" : r.error().message, true);
      return;
    }
    inbound_.push_back(std::move(chunk));
    last_data_ = std::chrono::steady_clock::now();
    pumpIn();
  }

  // Plain completion handlers, no coroutines: an idle stream is one socket wait and one timer.

  // Socket -> DATA frames, within the peer's window; CLOSE at the socket's end of input. At most
  // one wait or read at a time (reading_); a WINDOW that opens a shut window calls it again.
  void pumpOut() {
    if (reading_ || finished_ || we_closed_ || send_window_.available() == 0) {
      return;
    }
    reading_ = true;
    if (!out_buf_.empty()) {
      readSome();
      return;
    }
    // Idle: wait for input without a buffer.
    asyncWaitReadable(socket_, [self = this->shared_from_this()](boost::system::error_code ec) {
      self->reading_ = false;
      if (self->finished_) {
        return;
      }
      if (ec) {
        self->fail("the local connection failed: " + ec.message(), true);
        return;
      }
      self->out_buf_.resize(tunnel::kHeaderBytes + tunnel::kDataChunk);
      self->reading_ = true;
      self->readSome();
    });
  }

  // Reads into out_buf_ after its frame header; the bytes leave as that DATA frame (a small one
  // copied to its size, a large one moved: the next read gets a buffer of its own).
  void readSome() {
    size_t want = size_t(std::min<uint64_t>(out_buf_.size() - tunnel::kHeaderBytes, send_window_.available()));
    socket_.async_read_some(net::buffer(out_buf_.data() + tunnel::kHeaderBytes, want),
                            [self = this->shared_from_this(), want](boost::system::error_code ec, size_t n) {
                              self->reading_ = false;
                              if (self->finished_) {
                                return;
                              }
                              if (ec == net::error::eof) {
                                self->send_(tunnel::encode(tunnel::FrameType::Close, self->id_));
                                self->we_closed_ = true;
                                std::string().swap(self->out_buf_);
                                self->maybeDone();
                                return;
                              }
                              if (ec) {
                                self->fail("the local connection failed: " + ec.message(), true);
                                return;
                              }
                              (void)self->send_window_.take(n);
                              self->last_data_ = std::chrono::steady_clock::now();
                              std::string frame;
                              if (n < kCopyBelow) {
                                frame = tunnel::encode(tunnel::FrameType::Data, self->id_,
                                                       std::string_view(self->out_buf_.data() + tunnel::kHeaderBytes, n));
                              } else {
                                frame = std::exchange(self->out_buf_, std::string());
                                tunnel::putHeader(frame, tunnel::FrameType::Data, self->id_);
                                frame.resize(tunnel::kHeaderBytes + n);
                              }
                              if (n < want) {
                                std::string().swap(self->out_buf_);  // drained for now
                              } else if (self->out_buf_.empty()) {
                                self->out_buf_.resize(tunnel::kHeaderBytes + tunnel::kDataChunk);  // more to come
                              }
                              self->send_(std::move(frame));
                              self->pumpOut();
                            });
  }

  // DATA from the peer -> the socket, one write at a time, granting the window back as it
  // drains; after the peer's CLOSE and everything before it, the socket's sending side is shut.
  void pumpIn() {
    if (writing_ || finished_) {
      return;
    }
    if (inbound_.empty()) {
      if (peer_closed_ && !peer_drained_) {
        shutdownSend(socket_);
        peer_drained_ = true;
        maybeDone();
      }
      return;
    }
    writing_ = true;
    // (The chunk travels with the handler: finish() may drop the queue while a write is out.)
    auto chunk = std::make_shared<Chunk>(std::move(inbound_.front()));
    inbound_.pop_front();
    net::async_write(socket_, net::buffer(chunk->message.data() + chunk->offset, chunk->message.size() - chunk->offset),
                     [self = this->shared_from_this(), chunk](boost::system::error_code ec, size_t n) {
                       self->writing_ = false;
                       if (self->finished_) {
                         return;
                       }
                       if (ec) {
                         self->fail("the local connection failed: " + ec.message(), true);
                         return;
                       }
                       if (uint32_t grant = self->receive_.consumed(n)) {
                         self->send_(tunnel::encodeWindow(self->id_, grant));
                       }
                       self->pumpIn();
                     });
  }

  // Resets the stream once no DATA went either way for the idle timeout.
  void armIdle() {
    idle_timer_.expires_at(last_data_ + idle_timeout_);
    idle_timer_.async_wait([weak = this->weak_from_this()](boost::system::error_code) {
      auto self = weak.lock();
      if (!self || self->finished_) {
        return;
      }
      if (std::chrono::steady_clock::now() - self->last_data_ >= self->idle_timeout_) {
        auto secs = std::chrono::duration_cast<std::chrono::seconds>(self->idle_timeout_).count();
        self->fail("idle for " + std::to_string(secs) + " s", true);
        return;
      }
      self->armIdle();
    });
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
  // Below this, a DATA frame read is copied into a message of its size rather than moved with
  // the whole buffer.
  static constexpr size_t kCopyBelow = 4096;

  std::list<Chunk> inbound_;  // (not a deque: an empty one costs nothing)
  std::string out_buf_;       // header and bytes of the next DATA frame, held only while bytes flow
  net::steady_timer idle_timer_;
  std::chrono::steady_clock::duration idle_timeout_;
  std::chrono::steady_clock::time_point last_data_{};
  bool reading_ = false;       // a wait or read on the socket is out
  bool writing_ = false;       // a write to the socket is out
  bool peer_closed_ = false;   // CLOSE received
  bool peer_drained_ = false;  // ... and everything before it written to the socket
  bool we_closed_ = false;     // CLOSE sent (the socket's input ended)
  bool finished_ = false;
};

}  // namespace kflex::net_tunnel
