#include "proxy/http2_session.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "proxy/client_connection.h"
#include "proxy/core/address.h"
#include "proxy/core/h2_common.h"
#include "proxy/core/uv_time.h"
#include "proxy/listener.h"
#include "proxy/local_handlers.h"
#include "proxy/proxied_stream.h"
#include "proxy/worker.h"

namespace sidemux {

struct Http2Session::Stream {
  explicit Stream(std::pmr::memory_resource& pool) : headers(&pool) {}
  int32_t id = 0;
  core::HeaderList headers;  // request headers as received, pseudo-headers first
  std::string_view method;
  std::string_view path;
  uint32_t header_bytes = 0;
  std::string host;  // `host`, which is not forwarded, for a missing :authority
  std::string local_body;  // a local handler's answer
  size_t local_sent = 0;
  core::Pooled<ProxiedStream> proxy;
};

namespace {

Http2Session* self(void* user) { return static_cast<Http2Session*>(user); }

}  // namespace

Http2Session::Http2Session(ClientConnection& conn)
    : conn_(conn),
      streams_(&conn.worker().context().stream_memory()),
      max_header_list_size_(conn.worker().config()->limits.max_header_list_size),
      peer_(core::format_peer(conn.peer())) {
  const core::H2Handlers handlers{.on_begin_headers = on_begin_headers, .on_header = on_header,
                                  .on_frame_recv = on_frame_recv, .on_data_chunk = on_data_chunk,
                                  .on_frame_send = on_frame_send, .on_stream_close = on_stream_close,
                                  .on_begin_frame = on_begin_frame, .on_invalid_frame_recv = on_invalid_frame_recv,
                                  .send_data = send_data};
  const auto& limits = conn.worker().config()->limits;
  std::array<nghttp2_settings_entry, 2> settings = {{
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits.max_header_list_size},
  }};
  session_ = core::new_h2_session(core::H2Role::server, handlers, this, settings, memory_.mem());
}

Http2Session::~Http2Session() {
  // Streams still open end with the connection: their member streams are
  // cancelled by ~ProxiedStream before the nghttp2 session goes.
  conn_.worker().streams_active().dec(static_cast<int64_t>(streams_.size()));
  streams_.clear();
  nghttp2_session_del(session_);
}

Worker& Http2Session::worker() { return conn_.worker(); }

Http2Session::Stream* Http2Session::find(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
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
  if (core::send_h2_output(session_, conn_.transport()) != 0) {
    conn_.close();
    return;
  }
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_))
    conn_.transport().close_after_flush();
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

void Http2Session::release_idle_memory() {
  // want_write() is 0 also once a session ended with frames unsent: one
  // that still reads is live, and then 0 means none is half handed out.
  // (One that stopped reading after a GOAWAY keeps its frame buffer until
  // it closes: the safe side.)
  bool output_sent = nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_);
  memory_.release_pages(output_sent);
}

void Http2Session::submit_response(int32_t id, const core::HeaderList& fields, bool has_body) {
  auto nva = core::to_nv(fields);
  nghttp2_data_provider provider{};
  provider.read_callback = read_body;
  nghttp2_submit_response(session_, id, nva.data(), nva.size(), has_body ? &provider : nullptr);
  conn_.transport().schedule();
}

void Http2Session::submit_trailer(int32_t id, const core::HeaderList& fields) {
  auto nva = core::to_nv(fields);
  nghttp2_submit_trailer(session_, id, nva.data(), nva.size());
  conn_.transport().schedule();
}

void Http2Session::resume_data(int32_t id) {
  if (nghttp2_session_resume_data(session_, id) == 0) conn_.transport().schedule();
}

void Http2Session::consume(int32_t id, size_t n) {
  nghttp2_session_consume_stream(session_, id, n);
  conn_.transport().schedule();
}

void Http2Session::set_window(int32_t id, uint32_t window) {
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, id, static_cast<int32_t>(window));
  conn_.transport().schedule();
}

void Http2Session::reset(int32_t id, uint32_t error_code) {
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, error_code);
  conn_.transport().schedule();
}

bool Http2Session::ping() {
  nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr);
  conn_.transport().schedule();
  return true;
}

int Http2Session::on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user) {
  auto* s = self(user);
  // A header block's frames come back to back (RFC 9113 6.10), so the
  // block ends when on_frame_recv sees the HEADERS or, for a block nghttp2
  // rejected (no on_frame_recv), when any other frame begins.
  if (hd->type == NGHTTP2_HEADERS && s->header_block_deadline_ == 0) {
    Worker& w = s->conn_.worker();
    s->header_block_deadline_ = uv_now(w.loop()) + core::ms(w.config()->limits.classify_timeout);
  } else if (hd->type != NGHTTP2_CONTINUATION) {
    s->header_block_deadline_ = 0;
  }
  if (hd->stream_id != 0) s->conn_.note_activity();
  return 0;
}

int Http2Session::on_invalid_frame_recv(nghttp2_session*, const nghttp2_frame* frame, int, void* user) {
  // A header block nghttp2 rejected whole gets no on_frame_recv.
  if (frame->hd.type == NGHTTP2_HEADERS) self(user)->header_block_deadline_ = 0;
  return 0;
}

int Http2Session::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto* s = self(user);
  auto& pool = s->conn_.worker().context().stream_memory();
  auto stream = core::make_pooled<Stream>(pool, pool);
  stream->id = frame->hd.stream_id;
  stream->headers.reserve(12);  // a gRPC request's usual count, so one allocation
  s->streams_.emplace(frame->hd.stream_id, std::move(stream));
  s->conn_.worker().streams_active().inc();
  return 0;
}

int Http2Session::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                            const uint8_t* value, size_t valuelen, uint8_t, void* user) {
  auto* s = self(user);
  Stream* stream = s->find(frame->hd.stream_id);
  // Request trailers (rare in gRPC) are not forwarded.
  if (!stream || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  if (!core::count_header_field(stream->header_bytes, namelen, valuelen, s->max_header_list_size_)) {
    // nghttp2 resets the stream and drops the rest of the block without
    // another callback: the block is over as far as its deadline goes.
    s->header_block_deadline_ = 0;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  if (n == "host") stream->host.assign(reinterpret_cast<const char*>(value), valuelen);
  if (core::is_hop_by_hop(n)) return 0;
  stream->headers.emplace_back(n, std::string_view(reinterpret_cast<const char*>(value), valuelen));
  return 0;
}

int Http2Session::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* s = self(user);
  if (frame->hd.type == NGHTTP2_HEADERS) s->header_block_deadline_ = 0;
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
  Stream* stream = s->find(frame->hd.stream_id);
  if (!stream) return 0;
  bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    s->on_request(*stream, end_stream);
  } else if (end_stream && stream->proxy) {
    stream->proxy->on_request_end();
  }
  return 0;
}

int Http2Session::on_data_chunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                                size_t len, void* user) {
  auto* s = self(user);
  // The connection window reopens on receipt; each stream's window only as
  // its bytes move on, which bounds what a stream can buffer.
  nghttp2_session_consume_connection(session, len);
  s->conn_.transport().schedule();
  Stream* stream = s->find(stream_id);
  if (stream && stream->proxy) {
    stream->proxy->on_request_data(data, len);
  } else if (stream) {
    nghttp2_session_consume_stream(session, stream_id, len);  // local handlers take no body
  }
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

int Http2Session::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user) {
  auto* s = self(user);
  auto it = s->streams_.find(stream_id);
  if (it == s->streams_.end()) return 0;
  if (it->second->proxy) it->second->proxy->on_downstream_close(error_code);
  s->streams_.erase(it);
  s->conn_.worker().streams_active().dec();
  s->conn_.note_activity();  // the idle timeout counts from the last stream's end
  return 0;
}

void Http2Session::on_request(Stream& stream, bool end_stream) {
  // A request translated from HTTP/1 may name its target only in `host`,
  // which does not cross the proxy: it becomes :authority (RFC 9113
  // 8.3.1), among the pseudo-headers, which come first.
  if (!stream.host.empty() && core::find_header(stream.headers, ":authority").empty()) {
    auto regular = std::find_if(stream.headers.begin(), stream.headers.end(),
                                [](const core::HeaderField& f) { return !f.name.starts_with(':'); });
    stream.headers.insert(regular, {":authority", std::move(stream.host)});
  }
  for (const auto& f : stream.headers) {
    if (f.name == ":method") stream.method = f.value;
    if (f.name == ":path") stream.path = f.value;
  }
  if (is_local_path(stream.path)) {
    respond_local(stream);
    return;
  }
  stream.proxy = core::make_pooled<ProxiedStream>(conn_.worker().context().stream_memory(), *this, stream.id,
                                                  std::move(stream.headers), end_stream);
  stream.method = stream.path = {};
  stream.proxy->start();
}

ssize_t Http2Session::read_body(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                                uint32_t* data_flags, nghttp2_data_source*, void* user) {
  Stream* stream = self(user)->find(stream_id);
  if (!stream) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (ProxiedStream* p = stream->proxy.get())
    return core::provide_data(p->read_response_body(length, data_flags), p->response_body_front(), buf, data_flags,
                              [p](size_t n) { p->on_response_body_sent(n); });
  // A local answer is a few bytes, copied.
  size_t n = std::min(length, stream->local_body.size() - stream->local_sent);
  std::memcpy(buf, stream->local_body.data() + stream->local_sent, n);
  stream->local_sent += n;
  if (stream->local_sent == stream->local_body.size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

int Http2Session::send_data(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                            nghttp2_data_source*, void* user) {
  // A large DATA frame of a proxied stream (core::provide_data), right
  // after read_body() for the same frame, with no other callback between
  // them: the stream and its bytes are still there.
  Http2Session* s = self(user);
  Stream* stream = s->find(frame->hd.stream_id);
  if (!stream || !stream->proxy) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  ProxiedStream* p = stream->proxy.get();
  return core::write_data_frame(s->conn_.transport(), frame, framehd, p->response_body_front(), length,
                                [p](size_t n) { p->on_response_body_sent(n); });
}

void Http2Session::respond_local(Stream& stream) {
  LocalRequest req{stream.method, stream.path, conn_.peer()};
  LocalResponse resp = handle_local(req, conn_.worker().local_context());
  core::HeaderList fields = {{":status", std::to_string(resp.status)},
                       {"content-type", std::string(resp.content_type)},
                       {"content-length", std::to_string(resp.body.size())}};
  if (resp.method_not_allowed()) fields.push_back({"allow", std::string(kAllow)});
  bool head = stream.method == "HEAD";
  stream.local_body = std::move(resp.body);
  submit_response(stream.id, fields, !head);
}

}  // namespace sidemux
