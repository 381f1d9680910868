// An HTTP/2 member in the test process: a listening socket on 127.0.0.1 on
// the test's loop and, per accepted connection, an nghttp2 server session
// whose answers a test chooses. Lets UpstreamSession and Pool run against a
// real HTTP/2 peer without a thread or a child process.
#pragma once

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "t/unit/support/peer_work.h"

namespace sidemux::unit {

// Binds 127.0.0.1:0 before the config exists, so the config can name it.
inline int bind_loopback(uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sin;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sin), len), 0);
  EXPECT_EQ(::listen(fd, 16), 0);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  port = ntohs(sin.sin_port);
  return fd;
}

class TestMember {
 public:
  // What the member does with a complete request.
  // partial: HEADERS and `body` in DATA, then nothing more (the stream stays
  // open), as a member that is in the middle of a message.
  enum class Answer { ok, reset, goaway, nothing, partial };

  struct Connection {
    TestMember* member;
    uv_tcp_t tcp;
    nghttp2_session* session = nullptr;
    // Reads are held, unanswered: a member that stopped (its kernel still
    // accepts and takes bytes).
    bool held = false;
    std::string pending;
    bool closed = false;
  };

  explicit TestMember(int fd) : fd_(fd) {}
  ~TestMember() { EXPECT_TRUE(closed_) << "close() and run the loop before the member goes"; }
  TestMember(const TestMember&) = delete;
  TestMember& operator=(const TestMember&) = delete;

  void start(uv_loop_t* loop) {
    uv_tcp_init(loop, &listener_);
    listener_.data = this;
    EXPECT_EQ(uv_tcp_open(&listener_, fd_), 0);
    EXPECT_EQ(uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 16,
                        [](uv_stream_t* s, int) { static_cast<TestMember*>(s->data)->accept(); }),
              0);
  }
  void close() {
    auto on_closed = [](uv_handle_t* h) { static_cast<TestMember*>(h->data)->closed_ = true; };
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&listener_)))
      uv_close(reinterpret_cast<uv_handle_t*>(&listener_), on_closed);
    for (auto& c : connections) drop(*c);
  }

  // Knobs, read when a connection is accepted or a request is complete.
  bool hold_new_connections = false;  // accepted, but not a byte answered
  uint32_t max_concurrent_streams = 100;
  Answer answer = Answer::ok;
  // With Answer::ok: empty, a trailers-only answer; else HEADERS, this body
  // in DATA, then the grpc-status trailer, as a unary gRPC call is answered.
  std::string body;
  // With Answer::ok and not 0, instead of `body`: HEADERS, this many bytes
  // in DATA frame after frame as the windows allow, then the trailer (one
  // such stream at a time).
  size_t long_body = 0;
  uint32_t reset_code = NGHTTP2_INTERNAL_ERROR;

  // What it saw.
  std::vector<std::unique_ptr<Connection>> connections;
  int requests = 0;
  int pings = 0;
  size_t request_bytes = 0;  // DATA payload received, all streams
  size_t long_body_sent = 0;  // of long_body, handed to nghttp2

  // A held connection starts answering: its SETTINGS, then what it read.
  void release(Connection& c) {
    c.held = false;
    submit_settings(c);
    std::string pending = std::move(c.pending);
    nghttp2_session_mem_recv(c.session, reinterpret_cast<const uint8_t*>(pending.data()), pending.size());
    flush(c);
  }
  void freeze(Connection& c) { c.held = true; }
  // Closes a connection as a member process that died would.
  void drop(Connection& c) {
    if (c.closed) return;
    c.closed = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c.tcp), [](uv_handle_t* h) {
      auto* conn = static_cast<Connection*>(h->data);
      nghttp2_session_del(conn->session);
      conn->session = nullptr;
    });
  }

 private:
  void accept() {
    PeerWork peer;
    auto c = std::make_unique<Connection>();
    c->member = this;
    uv_tcp_init(listener_.loop, &c->tcp);
    c->tcp.data = c.get();
    ASSERT_EQ(uv_accept(reinterpret_cast<uv_stream_t*>(&listener_), reinterpret_cast<uv_stream_t*>(&c->tcp)), 0);
    uv_tcp_nodelay(&c->tcp, 1);  // answers go out at once, as a member's would
    nghttp2_session_callbacks* cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cbs, [](nghttp2_session*, uint8_t, int32_t, const uint8_t*, size_t len, void* user) {
          static_cast<Connection*>(user)->member->request_bytes += len;
          return 0;
        });
    nghttp2_session_server_new(&c->session, cbs, c.get());
    nghttp2_session_callbacks_del(cbs);
    c->held = hold_new_connections;
    if (!c->held) submit_settings(*c);
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&c->tcp),
        [](uv_handle_t*, size_t, uv_buf_t* buf) {
          static char storage[64 * 1024];
          *buf = uv_buf_init(storage, sizeof storage);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
          PeerWork reading;
          auto* conn = static_cast<Connection*>(s->data);
          if (n < 0) {
            conn->member->drop(*conn);
            return;
          }
          if (conn->closed) return;
          if (conn->held) {
            conn->pending.append(buf->base, static_cast<size_t>(n));
            return;
          }
          nghttp2_session_mem_recv(conn->session, reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(n));
          conn->member->flush(*conn);
        });
    flush(*c);
    connections.push_back(std::move(c));
  }

  void submit_settings(Connection& c) {
    nghttp2_settings_entry entry{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, max_concurrent_streams};
    nghttp2_submit_settings(c.session, NGHTTP2_FLAG_NONE, &entry, 1);
  }

  void flush(Connection& c) {
    PeerWork peer;
    if (c.closed) return;
    struct Write {
      uv_write_t req;
      std::string data;
    };
    auto* w = new Write;
    const uint8_t* data;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(c.session, &data)) > 0) w->data.append(reinterpret_cast<const char*>(data), n);
    if (w->data.empty()) {
      delete w;
      return;
    }
    uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    w->req.data = w;
    uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&c.tcp), &buf, 1,
             [](uv_write_t* req, int) { delete static_cast<Write*>(req->data); });
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto* c = static_cast<Connection*>(user);
    TestMember& m = *c->member;
    if (frame->hd.type == NGHTTP2_PING && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) ++m.pings;
    bool request_done = (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
                        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
    if (!request_done) return 0;
    ++m.requests;
    int32_t id = frame->hd.stream_id;
    switch (m.answer) {
      case Answer::partial: submit_body(session, id, m.body, false); break;
      case Answer::ok: {
        if (m.long_body) {
          submit_long_body(session, id, m);
          break;
        }
        if (!m.body.empty()) {
          submit_body(session, id, m.body, true);
          break;
        }
        const nghttp2_nv nva[] = {
            {(uint8_t*)":status", (uint8_t*)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
            {(uint8_t*)"grpc-status", (uint8_t*)"0", 11, 1, NGHTTP2_NV_FLAG_NONE},
        };
        nghttp2_submit_response(session, id, nva, 2, nullptr);
        break;
      }
      case Answer::reset: nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, m.reset_code); break;
      case Answer::goaway: nghttp2_submit_goaway(session, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0); break;
      case Answer::nothing: break;
    }
    return 0;
  }

  // `body` fits one DATA frame: it goes out whole, then (with `trailer`) the
  // grpc-status trailer, as a unary gRPC call is answered.
  static void submit_body(nghttp2_session* session, int32_t id, const std::string& body, bool trailer) {
    const nghttp2_nv nva[] = {
        {(uint8_t*)":status", (uint8_t*)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t*)"content-type", (uint8_t*)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider provider{};
    provider.source.ptr = const_cast<std::string*>(&body);
    provider.read_callback = trailer ? read_body<true> : read_body<false>;
    nghttp2_submit_response(session, id, nva, 2, &provider);
  }
  static void submit_long_body(nghttp2_session* session, int32_t id, TestMember& m) {
    const nghttp2_nv nva[] = {
        {(uint8_t*)":status", (uint8_t*)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t*)"content-type", (uint8_t*)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
    };
    m.long_body_sent = 0;
    nghttp2_data_provider provider{};
    provider.source.ptr = &m;
    provider.read_callback = [](nghttp2_session* s, int32_t stream_id, uint8_t* buf, size_t len, uint32_t* flags,
                                nghttp2_data_source* src, void*) -> ssize_t {
      auto& member = *static_cast<TestMember*>(src->ptr);
      size_t n = std::min(len, member.long_body - member.long_body_sent);
      std::memset(buf, 'l', n);
      member.long_body_sent += n;
      if (member.long_body_sent == member.long_body) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        const nghttp2_nv trailer[] = {{(uint8_t*)"grpc-status", (uint8_t*)"0", 11, 1, NGHTTP2_NV_FLAG_NONE}};
        nghttp2_submit_trailer(s, stream_id, trailer, 1);
      }
      return static_cast<ssize_t>(n);
    };
    nghttp2_submit_response(session, id, nva, 2, &provider);
  }
  template <bool kTrailer>
  static ssize_t read_body(nghttp2_session* s, int32_t stream_id, uint8_t* buf, size_t len, uint32_t* flags,
                           nghttp2_data_source* src, void*) {
    const auto& b = *static_cast<const std::string*>(src->ptr);
    size_t n = std::min(len, b.size());
    std::memcpy(buf, b.data(), n);
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    const nghttp2_nv trailer[] = {{(uint8_t*)"grpc-status", (uint8_t*)"0", 11, 1, NGHTTP2_NV_FLAG_NONE}};
    if (kTrailer) nghttp2_submit_trailer(s, stream_id, trailer, 1);
    return static_cast<ssize_t>(n);
  }

  int fd_;
  uv_tcp_t listener_;
  bool closed_ = false;
};

}  // namespace sidemux::unit

#include "proxy/core/header_list.h"
#include "t/unit/support/test_cluster.h"
#include "upstream/member.h"
#include "upstream/stream_handler.h"

namespace sidemux::unit {

// A StreamHandler that sends `body` and records what comes back.
struct RecordingHandler : upstream::StreamHandler {
  void on_response_header(std::string_view name, std::string_view value, bool trailer) override {
    (trailer ? trailers : headers).push_back({std::string(name), std::string(value)});
  }
  void on_response_headers_end(bool, bool end) override { ended |= end; }
  void on_response_data(const uint8_t* data, size_t len, bool end) override {
    body_in.append(reinterpret_cast<const char*>(data), len);
    ended |= end;
  }
  ssize_t read_request_body(size_t len, uint32_t* data_flags) override {
    size_t n = std::min(len, body.size() - sent);
    if (sent + n == body.size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
  core::ByteQueue::Tail request_body_front() const override { return body.from(sent); }
  void on_request_body_sent(size_t n) override { sent += n; }
  void on_upstream_close(Close kind, uint32_t error_code, std::string_view why) override {
    closed = true;
    close_kind = kind;
    close_code = error_code;
    reason = why;
  }

  core::ByteQueue body;
  size_t sent = 0;
  core::HeaderList headers;
  core::HeaderList trailers;
  std::string body_in;
  bool ended = false;
  bool closed = false;
  Close close_kind = Close::done;
  uint32_t close_code = 0;
  std::string reason;
};

// A gRPC request's header block, as a ProxiedStream would send it.
inline const core::HeaderList& grpc_request() {
  static const core::HeaderList fields = {{":method", "POST"},          {":scheme", "http"},
                                          {":authority", "member"},     {":path", "/test.Svc/Call"},
                                          {"content-type", "application/grpc"}, {"te", "trailers"}};
  return fields;
}

// A cluster of one member, `member`, on a running scheduler; `cluster_yaml`
// adds keys to the cluster's mapping, `top_yaml` top-level keys (limits:).
// Health checks do not run.
// Declare the RecordingHandlers of a test before it: its shutdown tells the
// streams still open, as a worker's does.
struct ClusterWithMember {
  explicit ClusterWithMember(const std::string& cluster_yaml = "", const std::string& top_yaml = "")
      : fd(bind_loopback(port)),
        member(fd),
        cluster("listeners: [{name: client, address: '127.0.0.1:0'}]\n"
                "cluster: {members: [{name: m, address: '127.0.0.1:" +
                std::to_string(port) + "'}]" + (cluster_yaml.empty() ? "" : ", " + cluster_yaml) + "}\n" +
                top_yaml) {
    member.start(cluster.test.context.loop());
    cluster.test.context.scheduler().start();
  }
  ~ClusterWithMember() { member.close(); }

  upstream::Pool& pool() { return cluster.member(0).pool(); }
  bool run_until(const std::function<bool()>& done, uint64_t timeout_ms = 5000) {
    return cluster.test.run_until(done, timeout_ms);
  }
  // Submits grpc_request() on `s` with `handler`; the stream id.
  int32_t submit(upstream::UpstreamSession& s, RecordingHandler& handler) {
    auto nva = core::to_nv(grpc_request());
    return s.submit(nva.data(), nva.size(), !handler.body.empty(), &handler);
  }

  uint16_t port = 0;
  int fd;
  TestMember member;
  TestCluster cluster;
};

}  // namespace sidemux::unit
