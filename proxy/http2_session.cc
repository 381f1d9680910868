#include "proxy/http2_session.h"

#include <array>
#include <cstring>
#include <memory>

#include "parsers/grpc.h"
#include "proxy/client_connection.h"
#include "proxy/listener.h"
#include "proxy/local_handlers.h"
#include "proxy/metric_names.h"
#include "proxy/worker.h"

namespace sidemux {

struct Http2Session::Stream {
  int32_t id;
  std::string method;
  std::string path;
  uint32_t header_bytes = 0;
  std::string body;  // local response body
  size_t body_sent = 0;
};

namespace {

Http2Session* self(void* user) { return static_cast<Http2Session*>(user); }

// nghttp2 copies name and value at submit time, so views of temporaries
// are fine here.
nghttp2_nv header(std::string_view name, std::string_view value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

// nghttp2's own defaults, stated so a reader sees the bounds that stop
// Rapid Reset (CVE-2023-44487) and CONTINUATION floods (CVE-2024-28182).
constexpr uint64_t kResetBurst = 1000;
constexpr uint64_t kResetRatePerSecond = 33;
constexpr size_t kMaxContinuations = 8;

struct OptionDeleter {
  void operator()(nghttp2_option* o) const { nghttp2_option_del(o); }
};
struct CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* c) const { nghttp2_session_callbacks_del(c); }
};

}  // namespace

Http2Session::Http2Session(ClientConnection& conn)
    : conn_(conn), max_header_list_size_(conn.worker().config()->limits.max_header_list_size) {
  nghttp2_session_callbacks* cbs_raw;
  nghttp2_session_callbacks_new(&cbs_raw);
  std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter> cbs(cbs_raw);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs_raw, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs_raw, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs_raw, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs_raw, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs_raw, on_frame_send);

  nghttp2_option* opt_raw;
  nghttp2_option_new(&opt_raw);
  std::unique_ptr<nghttp2_option, OptionDeleter> opt(opt_raw);
  // Closed streams are kept only for the priority tree, which gRPC never uses.
  nghttp2_option_set_no_closed_streams(opt_raw, 1);
  nghttp2_option_set_stream_reset_rate_limit(opt_raw, kResetBurst, kResetRatePerSecond);
  nghttp2_option_set_max_continuations(opt_raw, kMaxContinuations);

  nghttp2_session_server_new2(&session_, cbs_raw, this, opt_raw);

  const auto& limits = conn.worker().config()->limits;
  std::array<nghttp2_settings_entry, 3> settings = {{
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits.max_header_list_size},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  }};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
}

Http2Session::~Http2Session() {
  // Streams still open die with the session; their user data is freed here.
  nghttp2_session_del(session_);
}

void Http2Session::on_read(const char* data, size_t len) {
  if (failed_) return;
  ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data), len);
  if (rv < 0) fail("http2 protocol error", static_cast<int>(rv));
}

void Http2Session::fail(const char* what, int code) {
  failed_ = true;
  conn_.listener().count_rejected("bad_request");
  conn_.worker().log().debug(what, {{"error", nghttp2_strerror(code)}});
  // A GOAWAY tells the client why; then the connection ends.
  nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
  conn_.transport().pause_reading();
  conn_.transport().close_after_flush();
}

void Http2Session::produce() {
  while (!conn_.transport().write_buffer_full()) {
    const uint8_t* data;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      conn_.transport().close();
      return;
    }
    if (n == 0) break;
    conn_.transport().write({reinterpret_cast<const char*>(data), static_cast<size_t>(n)});
  }
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) conn_.transport().close_after_flush();
}

void Http2Session::shutdown(bool final) {
  if (final) {
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                          NGHTTP2_NO_ERROR, nullptr, 0);
  } else {
    // Two-step GOAWAY: the notice lets in-flight requests arrive before the
    // final GOAWAY names the last stream served.
    nghttp2_submit_shutdown_notice(session_);
  }
}

int Http2Session::on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto* s = self(user);
  auto* stream = new Stream{frame->hd.stream_id};
  nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, stream);
  ++s->open_streams_;
  s->conn_.worker().streams_active().inc();
  return 0;
}

int Http2Session::on_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                            size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* user) {
  auto* stream = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
  if (!stream) return 0;
  // RFC 9113 counts 32 bytes of overhead per field for the header list size.
  stream->header_bytes += static_cast<uint32_t>(namelen + valuelen + 32);
  if (stream->header_bytes > self(user)->max_header_list_size_) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  if (n == ":method") stream->method = v;
  else if (n == ":path") stream->path = v;
  return 0;
}

int Http2Session::on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto* stream = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
  if (stream) self(user)->on_request(*stream);
  return 0;
}

int Http2Session::on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void*) {
  // A complete answer to a request the client is still sending: cut the
  // request off (RFC 9113 8.1) so the client cannot hold the stream open.
  // Not earlier: an RST_STREAM queued with the answer would discard it.
  bool answered = (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
                  (frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
  if (answered && !nghttp2_session_get_stream_remote_close(session, frame->hd.stream_id))
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
  return 0;
}

int Http2Session::on_stream_close(nghttp2_session* session, int32_t stream_id, uint32_t, void* user) {
  auto* stream = static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, stream_id));
  if (!stream) return 0;
  auto* s = self(user);
  nghttp2_session_set_stream_user_data(session, stream_id, nullptr);
  delete stream;
  --s->open_streams_;
  s->conn_.worker().streams_active().dec();
  return 0;
}

void Http2Session::on_request(Stream& stream) {
  if (is_local_path(stream.path)) {
    respond_local(stream);
    return;
  }
  // Forwarding to members plugs in here; until then no member can take it.
  respond_unavailable(stream, conn_.worker().cluster().health().reason);
}

ssize_t Http2Session::read_body(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* data_flags,
                                nghttp2_data_source* source, void*) {
  auto* stream = static_cast<Stream*>(source->ptr);
  size_t n = std::min(length, stream->body.size() - stream->body_sent);
  std::memcpy(buf, stream->body.data() + stream->body_sent, n);
  stream->body_sent += n;
  if (stream->body_sent == stream->body.size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

void Http2Session::respond_local(Stream& stream) {
  LocalRequest req{stream.method, stream.path, conn_.peer()};
  LocalResponse resp = handle_local(req, conn_.worker().local_context());
  std::string status = std::to_string(resp.status);
  std::string length = std::to_string(resp.body.size());
  std::array<nghttp2_nv, 4> nva = {header(":status", status), header("content-type", resp.content_type),
                                   header("content-length", length), header("allow", kAllow)};
  size_t nvlen = resp.method_not_allowed() ? 4 : 3;
  bool head = stream.method == "HEAD";
  stream.body = std::move(resp.body);
  nghttp2_data_provider provider{};
  provider.source.ptr = &stream;
  provider.read_callback = read_body;
  nghttp2_submit_response(session_, stream.id, nva.data(), nvlen, head ? nullptr : &provider);
  conn_.transport().schedule();
}

void Http2Session::respond_unavailable(Stream& stream, std::string_view why) {
  std::string message = parsers::grpc::percent_encode(why);
  std::array<nghttp2_nv, 4> nva = {header(":status", "200"), header("content-type", parsers::grpc::kContentType),
                                   header("grpc-status", "14"), header("grpc-message", message)};
  nghttp2_submit_response(session_, stream.id, nva.data(), nva.size(), nullptr);
  conn_.transport().schedule();
}

}  // namespace sidemux
