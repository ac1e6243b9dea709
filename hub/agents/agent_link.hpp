// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <boost/beast/websocket.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "hub/api/http_server.hpp"
#include "shared/net/asio.hpp"
#include "shared/protocol/messages.hpp"
#include "shared/tls/lean_stream.hpp"

namespace kflex::hub {

/// Timings and limits of one agent link's connection.
struct LinkOptions {
  std::chrono::seconds idle_timeout{
      60};  ///< No frame (pings included) for this long closes a link.
  size_t max_queue_bytes =
      8 * 1024 * 1024;  ///< Unsent bytes before the agent is disconnected as too slow.
};

/**
 * The connection of one agent link: a WebSocket over mutual TLS that carries protocol envelopes.
 * It knows frames, a write queue with back-pressure (an agent that does not read is disconnected,
 * never buffered without end), closing with a reason, and the message sequence numbers; nothing
 * of control planes, leases or status. What a message means is the caller's (the gateway).
 *
 * Made with std::make_shared (queued work holds the link).
 * Thread safety: send() and close() may be called from any thread; they run on the link's
 * executor (a strand of its own), as run()'s handler does. nextSeq() and closeCode() only there.
 */
class AgentLink : public std::enable_shared_from_this<AgentLink> {
 public:
  using Executor = tls::LeanStream::executor_type;
  /// One decoded message; false ends the link (the handler has closed it with a reason).
  using MessageHandler = std::function<net::awaitable<bool>(const protocol::Envelope& envelope)>;
  /// One binary message (a tunnel frame, docs/dev/tunnel.md), on the link's executor.
  using FrameHandler = std::function<void(std::string frame)>;

  AgentLink(tls::LeanStream&& stream, std::string agent, std::string peer, LinkOptions options);
  AgentLink(const AgentLink&) = delete;
  AgentLink& operator=(const AgentLink&) = delete;

  /// Completes the WebSocket upgrade that `req` asks for; false (logged) when it failed.
  net::awaitable<bool> accept(http::request<http::string_body> req);
  /// Reads messages and hands each to `on_message`, while writing what is queued, until the
  /// agent or the handler ends the link or it is closed; then sends the close frame. A frame
  /// that is not an envelope ends the link with a protocol error. Never throws.
  net::awaitable<void> run(MessageHandler on_message, FrameHandler on_frame = {});

  /// Queues a frame. An agent with more than max_queue_bytes unsent is disconnected as too slow.
  void send(std::string frame);
  /// Queues a tunnel frame (a binary message). Frames go out after every queued text message, in
  /// the order they were queued: the link's own messages keep priority. Their bytes are bounded
  /// by the streams' windows, not by max_queue_bytes.
  void sendFrame(std::string frame);
  /// Encodes `message` with the link's next sequence number and queues it.
  template <class Message>
  void send(Message message, int64_t revision = 0) {
    net::dispatch(executor(), [self = shared_from_this(), m = std::move(message), revision] {
      self->send(protocol::encode(m, self->nextSeq(), revision));
    });
  }
  /// Sends an error frame with `code` and `message`, then closes the link (once; later calls do
  /// nothing).
  void close(std::string code, std::string message);

  /// The link's next message id (on its executor).
  uint64_t nextSeq() { return ++seq_; }
  /// Why the link ended ("" = closed without a reason; on its executor).
  const std::string& closeCode() const { return close_code_; }
  const std::string& agent() const { return agent_; }
  const std::string& peer() const { return peer_; }
  Executor executor() { return ws_.get_executor(); }

 private:
  net::awaitable<void> readLoop(const MessageHandler& on_message, const FrameHandler& on_frame);
  net::awaitable<void> writeLoop();
  /// Drops the connection at once (too slow, or a failure).
  void abort();

  boost::beast::websocket::stream<tls::LeanStream> ws_;
  net::steady_timer wake_;  // the writer sleeps on it; cancel() wakes it
  const std::string agent_;
  const std::string peer_;
  const LinkOptions options_;
  // Below: only on the link's executor.
  std::deque<std::string> queue_;
  size_t queued_ = 0;
  std::deque<std::string> frames_;  // tunnel frames, after queue_
  bool closing_ = false;
  std::string close_code_;
  uint64_t seq_ = 0;
};

}  // namespace kflex::hub
