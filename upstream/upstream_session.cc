#include "upstream/upstream_session.h"

#include <uv.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "proxy/core/h2_common.h"
#include "proxy/core/loop_context.h"
#include "proxy/core/small_blocks.h"
#include "proxy/core/uv_time.h"
#include "upstream/member.h"
#include "upstream/pool.h"

namespace sidemux::upstream {

namespace {

UpstreamSession* self(void* user) { return static_cast<UpstreamSession*>(user); }

using core::ms;

// Until the member's SETTINGS arrive, assume the RFC's recommended minimum.
constexpr uint32_t kDefaultPeerMaxStreams = 100;

// Whether a reset the member sent is its own failure. The other codes put
// the fault on the request or on its sender (PROTOCOL_ERROR is grpc-go's
// answer to a malformed request: a bad -bin value, a non-POST method;
// FLOW_CONTROL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR name what the sender
// did wrong; CANCEL and ENHANCE_YOUR_CALM say the stream is not wanted):
// a client must not be able to eject a member by sending such requests.
// INTERNAL_ERROR and codes RFC 9113 does not define are the member's own.
bool member_caused(uint32_t error_code) {
  return error_code == NGHTTP2_INTERNAL_ERROR || error_code > NGHTTP2_HTTP_1_1_REQUIRED;
}

// 1xx (100 Continue, 103 Early Hints): a gRPC response has no use for one;
// the final response HEADERS follow.
bool informational(std::string_view status) { return status.size() == 3 && status[0] == '1'; }

}  // namespace

UpstreamSession::UpstreamSession(core::LoopContext& context, Pool& pool, Member& member)
    : MemberConnection(context, member),
      pool_(pool),
      streams_(&context.stream_memory()),
      opened_at_(uv_now(context.loop())) {
  // No on_frame_send: only the server side acts on frames it sent.
  const core::H2Handlers handlers{.on_begin_headers = on_begin_headers, .on_header = on_header,
                                  .on_frame_recv = on_frame_recv, .on_data_chunk = on_data_chunk,
                                  .on_stream_close = on_stream_close, .before_frame_send = before_frame_send,
                                  .send_data = send_data};
  // A member learns the bound its response headers are held to (on_header).
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, context.config()->limits.max_header_list_size}};
  session_ = core::new_h2_session(core::H2Role::client, handlers, this, settings, core::h2_memory());
}

UpstreamSession::~UpstreamSession() { nghttp2_session_del(session_); }

void UpstreamSession::on_transport_secure() {
  // The byte stream is up, but the member counts as ready only once its
  // SETTINGS arrive: a stopped process still completes TCP in the kernel.
  stream_open_ = true;
  transport_.schedule();
}

bool UpstreamSession::has_capacity() const {
  if (state_ != State::connecting && state_ != State::ready) return false;
  uint32_t peer_max = state_ == State::ready
                          ? nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
                          : kDefaultPeerMaxStreams;
  uint32_t limit = std::min(peer_max, context_.config()->cluster.max_streams_per_connection);
  return streams_.size() < limit;
}

int32_t UpstreamSession::submit(const nghttp2_nv* nva, size_t nvlen, bool has_body, StreamHandler* handler) {
  nghttp2_data_provider provider{};
  provider.read_callback = read_body;
  int32_t id = nghttp2_submit_request(session_, nullptr, nva, nvlen, has_body ? &provider : nullptr, handler);
  if (id > 0) {
    streams_.emplace(id, OpenStream{handler});
    transport_.schedule();
  }
  return id;
}

void UpstreamSession::resume_body(int32_t stream_id) {
  if (nghttp2_session_resume_data(session_, stream_id) == 0) transport_.schedule();
}

void UpstreamSession::consume(int32_t stream_id, size_t n) {
  nghttp2_session_consume_stream(session_, stream_id, n);
  transport_.schedule();
}

void UpstreamSession::set_window(int32_t stream_id, uint32_t window) {
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, stream_id, static_cast<int32_t>(window));
  transport_.schedule();
}

void UpstreamSession::reset(int32_t stream_id, uint32_t error_code) {
  if (streams_.erase(stream_id) == 0) return;
  nghttp2_session_set_stream_user_data(session_, stream_id, nullptr);
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, error_code);
  transport_.schedule();
  maybe_close_idle();
}

bool UpstreamSession::silent_since(uint64_t t) const {
  return state_ != State::closed && std::max(last_read_, opened_at_) < t;
}

void UpstreamSession::drain() {
  if (state_ == State::connecting || state_ == State::ready) set_state(State::draining);
  maybe_close_idle();
}

void UpstreamSession::maybe_close_idle() {
  if (state_ == State::draining && streams_.empty()) {
    nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
    transport_.close_after_flush();
  }
}

void UpstreamSession::set_state(State s) {
  State old = state_;
  state_ = s;
  pool_.on_state_change(*this, old);
}

void UpstreamSession::fail_streams(std::string_view reason) {
  // Handlers may submit to other sessions of this pool, never to this one
  // (it is closed), so iterating a moved-out copy is safe.
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, open] : streams) {
    nghttp2_session_set_stream_user_data(session_, id, nullptr);
    // Whether the connection was up or not: a member that got any byte of
    // the request may act on it (an etcd member listening but not serving
    // yet still applies a Put it read), so only streams still queued here
    // may go to another member.
    open.handler->on_upstream_close(open.reached ? StreamHandler::Close::lost : StreamHandler::Close::refused,
                                    NGHTTP2_INTERNAL_ERROR, reason);
  }
}

void UpstreamSession::close(std::string_view reason, bool failure) {
  if (state_ == State::closed) return;
  bool was_connecting = state_ == State::connecting;
  // Callers pass views of temporaries; handlers below keep only views too.
  const std::string why(reason);
  cancel_dial();
  // The member's verdict first, so that streams retried below skip it. A
  // lost connection counts once for outlier ejection, however many streams
  // it carried; an orderly close (drained, shutting down) not at all.
  if (was_connecting) {
    pool_.on_connect_failed(*this, why);
  } else if (failure) {
    member_.record_failure(why);
  }
  set_state(State::closed);
  fail_streams(why);
  close_handles();
}

void UpstreamSession::on_handles_closed() { pool_.on_closed(*this); }

void UpstreamSession::on_transport_error(int status) {
  const core::TlsEndpoint* tls = transport_.tls();
  const bool tls_failed = tls && !tls->error().empty();
  // A member that said GOAWAY and finished its streams may then hang up.
  const bool orderly = !tls_failed && status == UV_EOF && state_ == State::draining && streams_.empty();
  close(transport_failure(status), !orderly);
}

void UpstreamSession::on_transport_read(const char* data, size_t len) {
  last_read_ = uv_now(context_.loop());
  ping_outstanding_ = false;
  ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data), len);
  if (rv < 0) close(std::string("http2 error from member: ") + nghttp2_strerror(static_cast<int>(rv)), true);
}

void UpstreamSession::on_transport_produce() {
  // Nothing leaves before the connection is up; submitted streams wait.
  if (!stream_open_ || state_ == State::closed) return;
  if (int rc = send_h2_output(session_, transport_); rc != 0) {
    close(std::string("http2 error: ") + nghttp2_strerror(rc), true);
    return;
  }
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) {
    set_state(State::draining);
    transport_.close_after_flush();
  }
}

void UpstreamSession::arm_ping() { start_timer(ms(context_.config()->limits.keepalive_interval)); }

void UpstreamSession::on_timer() {
  if (state_ == State::connecting) {
    close(stream_open_ ? "connect: no HTTP/2 SETTINGS from the member in time" : "connect: timed out", true);
    return;
  }
  const auto& limits = context_.config()->limits;
  const uint64_t interval = ms(limits.keepalive_interval);
  if (ping_outstanding_) {
    // Neither the PING's ACK nor anything else came back in time: the member
    // is gone without closing TCP (SIGSTOP, a dropped network).
    close("member stopped answering (PING timeout)", true);
    return;
  }
  uint64_t quiet = uv_now(context_.loop()) - last_read_;
  if (quiet < interval || !heard_since_ping_ || streams_.empty()) {
    // gRPC servers' ping policy: a PING only with streams open (grpc-go
    // counts one on an idle connection as a strike), only after `interval`
    // without any frame, and one per quiet spell (PINGs without data in
    // between earn a "too many pings" GOAWAY). A member that freezes after
    // that is caught by its health checks, which close every connection of
    // it that went silent (HealthCheck::on_timer).
    start_timer(quiet < interval ? interval - quiet : interval);
    return;
  }
  ping_outstanding_ = true;
  heard_since_ping_ = false;
  nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr);
  transport_.schedule();
  start_timer(ms(limits.keepalive_timeout));
}

int UpstreamSession::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto it = self(user)->streams_.find(frame->hd.stream_id);
  if (it != self(user)->streams_.end()) {
    it->second.header_bytes = 0;
    it->second.informational = false;
  }
  return 0;
}

int UpstreamSession::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                               const uint8_t* value, size_t valuelen, uint8_t, void* user) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  auto* s = self(user);
  auto it = s->streams_.find(frame->hd.stream_id);
  if (it == s->streams_.end()) return 0;
  OpenStream& open = it->second;
  // Members get the same bound as clients: what a member sends is copied
  // into the stream, so its size is limited by configuration too.
  if (!core::count_header_field(open.header_bytes, namelen, valuelen,
                                s->context_.config()->limits.max_header_list_size))
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  // nghttp2 files the HEADERS after a 1xx under NGHTTP2_HCAT_HEADERS, as it
  // does trailers: which block is the response is known only from here.
  // (nghttp2 puts :status first and allows no 1xx after the final one.)
  if (!open.final_response && n == ":status" && informational(v)) open.informational = true;
  if (open.informational) return 0;
  open.handler->on_response_header(n, v, open.final_response);
  return 0;
}

int UpstreamSession::on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  auto* s = self(user);
  if (frame->hd.type != NGHTTP2_PING) s->heard_since_ping_ = true;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      auto it = s->streams_.find(frame->hd.stream_id);
      if (it == s->streams_.end() || it->second.informational) break;
      bool trailer = it->second.final_response;
      it->second.final_response = true;
      it->second.handler->on_response_headers_end(trailer, frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
      break;
    }
    case NGHTTP2_RST_STREAM:
      if (auto it = s->streams_.find(frame->hd.stream_id); it != s->streams_.end()) it->second.reset_by_member = true;
      break;
    case NGHTTP2_DATA:
      // END_STREAM on a DATA frame comes here; the bytes came through on_data_chunk.
      if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        auto* h = static_cast<StreamHandler*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
        if (h) h->on_response_data(nullptr, 0, true);
      }
      break;
    case NGHTTP2_SETTINGS:
      if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && s->state_ == State::connecting) {
        s->last_read_ = uv_now(s->context_.loop());
        s->set_state(State::ready);
        s->arm_ping();
      }
      break;
    case NGHTTP2_GOAWAY:
      // Streams above last_stream_id are closed by nghttp2 with
      // REFUSED_STREAM (retried); the rest finish here.
      s->drain();
      break;
  }
  return 0;
}

int UpstreamSession::on_data_chunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                                   size_t len, void* user) {
  // The connection window reopens on receipt (see consume()); the bytes of
  // a stream reset from our side are simply dropped.
  nghttp2_session_consume_connection(session, len);
  self(user)->transport_.schedule();
  auto* h = static_cast<StreamHandler*>(nghttp2_session_get_stream_user_data(session, stream_id));
  if (h) h->on_response_data(data, len, false);
  return 0;
}

int UpstreamSession::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user) {
  auto* s = self(user);
  auto it = s->streams_.find(stream_id);
  if (it != s->streams_.end()) {
    OpenStream open = it->second;
    s->streams_.erase(it);
    using Close = StreamHandler::Close;
    if (error_code == NGHTTP2_NO_ERROR) {
      open.handler->on_upstream_close(Close::done, error_code, "");
    } else if (error_code == NGHTTP2_REFUSED_STREAM) {
      // From the member, or from nghttp2 for a stream above a GOAWAY's
      // last-stream-id: either way the member did not process it.
      open.handler->on_upstream_close(Close::refused, error_code, "member refused the stream");
    } else if (!open.reset_by_member) {
      // nghttp2 reset it from our side: the member's answer broke HTTP/2
      // or gRPC's rules (a malformed response, too large a header list).
      open.handler->on_upstream_close(Close::reset, error_code, "member sent an invalid response");
    } else if (member_caused(error_code)) {
      open.handler->on_upstream_close(Close::reset, error_code, "member reset the stream");
    } else {
      open.handler->on_upstream_close(Close::rejected, error_code, "member rejected the request");
    }
  }
  s->maybe_close_idle();
  return 0;
}

int UpstreamSession::before_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  // Just before nghttp2 hands out the first byte of a stream's HEADERS
  // (send_h2_output() appends every byte it hands out to the transport's
  // batch): from here on the stream counts as having reached the member,
  // even if the batch never leaves (conservative: never replay).
  if (frame->hd.type == NGHTTP2_HEADERS) {
    auto* s = self(user);
    if (auto it = s->streams_.find(frame->hd.stream_id); it != s->streams_.end()) it->second.reached = true;
  }
  return 0;
}

ssize_t UpstreamSession::read_body(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                                   uint32_t* data_flags, nghttp2_data_source*, void*) {
  // Looked up rather than taken from the data source: a stream reset from
  // our side has no handler any more.
  auto* h = static_cast<StreamHandler*>(nghttp2_session_get_stream_user_data(session, stream_id));
  if (!h) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  return core::provide_data(h->read_request_body(length, data_flags), h->request_body_front(), buf, data_flags,
                            [h](size_t n) { h->on_request_body_sent(n); });
}

int UpstreamSession::send_data(nghttp2_session* session, nghttp2_frame* frame, const uint8_t* framehd,
                               size_t length, nghttp2_data_source*, void* user) {
  // A large DATA frame (core::provide_data). nghttp2 calls this right after
  // read_body() for the same frame, with no
  // other callback between them: the handler and its bytes are still there.
  auto* h = static_cast<StreamHandler*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
  if (!h) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  return core::write_data_frame(self(user)->transport_, frame, framehd, h->request_body_front(), length,
                                [h](size_t n) { h->on_request_body_sent(n); });
}

}  // namespace sidemux::upstream
