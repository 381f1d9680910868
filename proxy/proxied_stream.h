// One gRPC stream across both sides: the client's stream on a downstream
// Http2Session and the member's stream on an UpstreamSession. Owned by the
// downstream session; the upstream session refers to it by stream user data
// and forgets it on reset or close.
//
// Flow control is end to end: request bytes are consumed on the client's
// window only when the member's window took them, response bytes on the
// member's window only when the client's window took them. Each direction
// buffers at most one stream window (proxy/core/flow_windows.h), which
// grows from the client connection's budget (proxy/window_budget.h) while
// the stream's bytes keep moving.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "conf/config.h"
#include "parsers/grpc_framing.h"
#include "proxy/core/byte_queue.h"
#include "proxy/core/header_list.h"
#include "upstream/cluster.h"
#include "upstream/member.h"
#include "upstream/stream_handler.h"

namespace sidemux {

namespace upstream {
class UpstreamSession;
}  // namespace upstream

class Http2Session;

// While attached to a member the stream watches it (upstream::MemberWatcher):
// a member marked down for losing its leader ends the stream with UNAVAILABLE.
class ProxiedStream final : public upstream::StreamHandler, private upstream::MemberWatcher {
 public:
  ProxiedStream(Http2Session& session, int32_t id, core::HeaderList request_headers, bool request_ended);
  ~ProxiedStream() override;
  ProxiedStream(const ProxiedStream&) = delete;
  ProxiedStream& operator=(const ProxiedStream&) = delete;

  void start();
  void on_request_data(const uint8_t* data, size_t len);
  void on_request_end();
  // The downstream data provider for the response body, as
  // read_request_body() is for the request: the next DATA frame's length,
  // whose bytes the client session takes from response_body_front() as it
  // writes the frame, then calls on_response_body_sent().
  ssize_t read_response_body(size_t len, uint32_t* data_flags);
  core::ByteQueue::Tail response_body_front() const { return response_body_.from(0); }
  void on_response_body_sent(size_t n);
  // The client's stream closed: normally, by RST_STREAM, or with its
  // connection. Cancels the member's stream if it is still open.
  void on_downstream_close(uint32_t error_code);

  // upstream::StreamHandler
  void on_response_header(std::string_view name, std::string_view value, bool trailer) override;
  void on_response_headers_end(bool trailer, bool end_stream) override;
  void on_response_data(const uint8_t* data, size_t len, bool end_stream) override;
  ssize_t read_request_body(size_t len, uint32_t* data_flags) override;
  core::ByteQueue::Tail request_body_front() const override { return request_body_.from(request_sent_); }
  void on_request_body_sent(size_t n) override;
  void on_upstream_close(Close kind, uint32_t error_code, std::string_view reason) override;

 private:
  class StreamTimer;

  void on_member_lost(std::string_view reason) override;

  void attempt(std::string_view last_failure);
  // etcd's trailers-only answer says raft never took the request.
  bool refused_by_etcd() const;
  // Again on another member: the request never did anything where it went.
  void retry(const char* why, std::string_view reason);
  void on_retry_timer();
  void detach_upstream(uint32_t error_code);
  // Request bytes the member took are no longer kept for a retry.
  void drop_sent_request();
  void release_upstream();
  void respond_not_grpc(int http_status, std::string_view message);
  void set_remaining_timeout();
  void end_with_status(int grpc_status, std::string_view message);
  void on_deadline();
  void note_grpc_status(const core::HeaderList& fields);
  void finish();

  Http2Session& down_;
  int32_t down_id_;
  std::shared_ptr<const conf::Config> config_;  // the generation this stream started in
  core::HeaderList request_headers_;
  core::HeaderList response_headers_;
  core::HeaderList trailers_;
  core::ByteQueue request_body_;
  core::ByteQueue response_body_;
  // Request bytes already sent upstream but kept for a retry until the
  // member answers (at most kRetryBufferLimit).
  size_t request_sent_ = 0;
  size_t request_consumed_ = 0;  // of those, returned to the client's window
  bool retryable_ = true;
  bool request_ended_;
  bool response_started_ = false;  // response HEADERS submitted downstream
  bool response_ended_ = false;
  bool downstream_closed_ = false;
  // Stream windows held from the connection's budgets (0: none).
  uint32_t response_window_ = 0;  // the member's stream, for response bytes
  uint32_t request_window_ = 0;   // the client's stream, for request bytes
  parsers::grpc::MessageFraming response_sent_;  // of the bytes the client took

  // Shared: a member removed by a reload lives on until its streams end.
  std::shared_ptr<upstream::Member> member_;
  upstream::UpstreamSession* up_ = nullptr;
  int32_t up_id_ = -1;
  upstream::Attempts attempts_;  // set in start(), once the :path is known
  std::unique_ptr<StreamTimer> deadline_;
  std::unique_ptr<StreamTimer> retry_timer_;  // a dropped proposal waits out a leader change
  std::optional<std::chrono::steady_clock::time_point> deadline_at_;  // from grpc-timeout

  int grpc_status_ = -1;  // -1: none seen yet
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
};

}  // namespace sidemux
