// One HTTP/2 client connection to a member (nghttp2 over a core::Transport), with
// connect timeout, PING keepalive and per-stream flow control driven by the
// streams' consumers.
//
// States: connecting -> ready -> draining -> closed. `draining` means no new
// streams (member GOAWAY, PING timeout handling, pool retirement); the
// connection closes when its last stream ends. The Pool owns sessions and
// moves them between its per-state lists as the session reports changes.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <memory>
#include <memory_resource>
#include <string>
#include <unordered_map>
#include <vector>

#include "upstream/member_connection.h"
#include "upstream/stream_handler.h"

namespace sidemux::core {
class LoopContext;
}

namespace sidemux::upstream {

class Member;
class Pool;

class UpstreamSession : public MemberConnection {
 public:
  enum class State { connecting, ready, draining, closed };

  UpstreamSession(core::LoopContext& context, Pool& pool, Member& member);
  ~UpstreamSession() override;

  State state() const { return state_; }
  // Room for one more stream (counts streams submitted while connecting).
  bool has_capacity() const;
  size_t active_streams() const { return streams_.size(); }

  // Returns the stream id, or a negative nghttp2 error.
  int32_t submit(const nghttp2_nv* nva, size_t nvlen, bool has_body, StreamHandler* handler);
  void resume_body(int32_t stream_id);
  // Response bytes were passed on downstream: reopen the stream's window.
  // (The connection window reopens as bytes arrive: a stream's buffer is
  // bounded by its own window, and one slow client must not be able to
  // hold the shared connection window of every stream to the member.)
  void consume(int32_t stream_id, size_t n);
  // Grow the stream's window to `window` bytes (the consumer's budget).
  void set_window(int32_t stream_id, uint32_t window);
  // Cancel a stream; the handler gets no further calls.
  void reset(int32_t stream_id, uint32_t error_code);
  // No new streams; close when the last one ends.
  void drain();
  // Opened before uv_now() time `t` and nothing at all read since.
  bool silent_since(uint64_t t) const;
  // Close now: open streams get on_upstream_close.
  void close(std::string_view reason, bool failure) override;

 private:
  // core::Transport::Owner, in the order of a connection's life.
  void on_transport_secure() override;
  void on_transport_read(const char* data, size_t len) override;
  void on_transport_produce() override;
  void on_transport_error(int status) override;

  // MemberConnection. The timer: the connect timeout, then PING keepalive
  // and its timeout.
  bool connecting() const override { return state_ == State::connecting; }
  void on_timer() override;
  void on_handles_closed() override;

  void arm_ping();
  void set_state(State s);
  void fail_streams(std::string_view reason);
  void maybe_close_idle();

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame*, void*);
  static int on_header(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t, const uint8_t*, size_t,
                       uint8_t, void*);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame*, void*);
  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t, const uint8_t*, size_t, void*);
  static int on_stream_close(nghttp2_session*, int32_t, uint32_t, void*);
  static int before_frame_send(nghttp2_session*, const nghttp2_frame*, void*);
  static ssize_t read_body(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*, nghttp2_data_source*, void*);
  static int send_data(nghttp2_session*, nghttp2_frame*, const uint8_t*, size_t, nghttp2_data_source*, void*);

  Pool& pool_;
  bool stream_open_ = false;  // TCP (and TLS) up: frames may flow
  nghttp2_session* session_ = nullptr;
  State state_ = State::connecting;
  struct OpenStream {
    StreamHandler* handler;
    uint32_t header_bytes = 0;  // of the header block being received
    // A byte of its HEADERS went into the transport: the member may have
    // it, so the stream is never retried once the connection fails.
    bool reached = false;
    bool final_response = false;  // the non-1xx response HEADERS arrived
    bool informational = false;   // the block being received is a 1xx
    bool reset_by_member = false;  // an RST_STREAM came from the member
  };
  std::pmr::unordered_map<int32_t, OpenStream> streams_;
  bool ping_outstanding_ = false;
  bool heard_since_ping_ = true;  // a frame other than a PING ACK arrived
  uint64_t last_read_ = 0;
  uint64_t opened_at_ = 0;  // uv_now() at construction
};

}  // namespace sidemux::upstream
