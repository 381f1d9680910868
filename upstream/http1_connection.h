// One HTTP/1.1 keep-alive connection to a member, carrying one forwarded
// request at a time (no pipelining towards members: a response that fails
// half-way must not take a second client's request down with it).
//
// States: connecting -> active -> idle -> active ... -> closed. The exchange
// (the forwarded request) writes request bytes once told the connection is
// writable, reads the response through the Http1Exchange callbacks and
// pauses/resumes the member's reads for backpressure. A response that ends
// with keep-alive after the whole request went out returns the connection
// to its pool's idle list; anything else closes it.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "parsers/http1_response.h"
#include "upstream/member_connection.h"

namespace sidemux::core {
class LoopContext;
}

namespace sidemux::upstream {

class Http1Pool;
class Member;

// The member side of one forwarded HTTP/1 request, as its owner sees it.
class Http1Exchange {
 public:
  enum class Close {
    refused,  // no byte of the request reached the member: may be retried
    lost,     // the connection failed after the request reached the member
    ended,    // sidemux ended it (the member was marked down, shutdown), or the tunnel closed
  };
  // The connection is up and its write buffer has room: write request bytes.
  virtual void on_upstream_writable() = 0;
  virtual void on_upstream_informational(const parsers::Http1Response& head) = 0;
  virtual void on_upstream_head(const parsers::Http1Response& head) = 0;
  virtual void on_upstream_body(std::span<const char> bytes) = 0;
  // The response is complete; the connection has let go of the exchange.
  virtual void on_upstream_end() = 0;
  // After a 101: bytes of the tunnelled protocol.
  virtual void on_upstream_tunnel(const char* data, size_t len) = 0;
  // The connection let go of the exchange without a complete response.
  virtual void on_upstream_close(Close kind, std::string_view reason) = 0;

 protected:
  ~Http1Exchange() = default;
};

class Http1Connection : public MemberConnection, private parsers::Http1ResponseParser::Handler {
 public:
  enum class State { connecting, active, tunnel, idle, closed };

  Http1Connection(core::LoopContext& context, Http1Pool& pool, Member& member);
  ~Http1Connection() override;

  State state() const { return state_; }

  // Take a request (the connection is connecting or idle).
  void start(Http1Exchange& exchange, bool head_request);
  bool writable() const { return open_ && !transport_.write_buffer_full() && state_ != State::closed; }
  // Request bytes, already framed; only while writable() (or nearly: one
  // read's worth past the high-water mark).
  void write(std::string_view bytes);
  // The last request byte was written: the connection may be reused after
  // a keep-alive response.
  void request_done() { request_done_ = true; }
  void pause_reading() { transport_.pause_reading(); }
  void resume_reading();
  // The exchange goes away before its response ended: the connection cannot
  // be reused and closes (its owner gets no further calls).
  void detach();
  // Close now: an exchange gets on_upstream_close(kind), Close::lost unless
  // given. `failure`: the member misbehaved (counts toward outlier ejection).
  void close(std::string_view reason, bool failure, Http1Exchange::Close kind);
  void close(std::string_view reason, bool failure) override { close(reason, failure, Http1Exchange::Close::lost); }

 private:
  // core::Transport::Owner
  void on_transport_secure() override;
  void on_transport_read(const char* data, size_t len) override;
  void on_transport_produce() override;
  void on_transport_error(int status) override;
  // parsers::Http1ResponseParser::Handler
  void on_informational(const parsers::Http1Response& head) override;
  void on_head(const parsers::Http1Response& head) override;
  void on_body(std::span<const char> bytes) override;
  bool on_end(const parsers::Http1Response& head, const parsers::Http1Headers& trailers) override;

  // MemberConnection. The timer: the connect timeout, then the idle
  // timeout while pooled.
  bool connecting() const override { return state_ == State::connecting; }
  void on_timer() override;
  void on_handles_closed() override;

  void set_state(State s);

  Http1Pool& pool_;
  parsers::Http1ResponseParser parser_;
  State state_ = State::connecting;
  Http1Exchange* exchange_ = nullptr;
  bool open_ = false;          // TCP (and TLS) up
  bool reached_ = false;       // a byte of the current request was handed to the socket
  bool request_done_ = false;  // the current request's last byte was written
  bool response_ended_ = false;
};

}  // namespace sidemux::upstream
