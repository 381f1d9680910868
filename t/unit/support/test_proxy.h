// A real Worker whose loop the test thread runs (Worker::start() is never
// called), a Listener without a socket, and client connections handed to
// the worker over socketpairs, as the listener would after accept. The one
// cluster member is a TestMember on the same loop.
#pragma once

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>

#include <memory>
#include <string>

#include "proxy/client_connection.h"
#include "proxy/core/h2_common.h"
#include "proxy/core/header_list.h"
#include "proxy/listener.h"
#include "proxy/worker.h"
#include "t/unit/support/test_context.h"
#include "t/unit/support/peer_work.h"
#include "t/unit/support/test_member.h"
#include "t/unit/support/test_transport.h"

namespace sidemux::unit {

// An HTTP/2 client over a transport: nghttp2's default session (windows
// reopen as it reads), one stream at a time is enough for the tests.
struct TestH2Client {
  // `window`: the connection's and every stream's receive window, if not
  // nghttp2's default.
  TestH2Client(core::LoopContext& context, int fd, int32_t window = 0) : end(context, fd) {
    nghttp2_session_callbacks* cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(
        cbs, [](nghttp2_session*, const nghttp2_frame*, const uint8_t* n, size_t nl, const uint8_t* v, size_t vl,
                uint8_t, void* user) {
          static_cast<TestH2Client*>(user)->headers.push_back(
              {std::string(reinterpret_cast<const char*>(n), nl), std::string(reinterpret_cast<const char*>(v), vl)});
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cbs, [](nghttp2_session*, uint8_t, int32_t, const uint8_t* data, size_t len, void* user) {
          static_cast<TestH2Client*>(user)->body.append(reinterpret_cast<const char*>(data), len);
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cbs, [](nghttp2_session*, int32_t, uint32_t code, void* user) {
          auto* c = static_cast<TestH2Client*>(user);
          c->closed = true;
          c->close_code = code;
          return 0;
        });
    nghttp2_session_client_new(&session, cbs, this);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_settings_entry entry{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(window)};
    nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, &entry, window ? 1 : 0);
    if (window) nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0, window);
    end.owner.on_read = [this] {
      PeerWork peer;
      nghttp2_session_mem_recv(session, reinterpret_cast<const uint8_t*>(end.owner.read.data()), end.owner.read.size());
      end.owner.read.clear();
      end.transport.schedule();
    };
    end.owner.on_produce = [this] {
      PeerWork peer;
      core::send_h2_output(session, end.transport);
    };
    end.transport.resume_reading();
    end.transport.schedule();
  }
  ~TestH2Client() { nghttp2_session_del(session); }

  // A request with `fields` and, when `request_body` is not empty, that body.
  int32_t request(const core::HeaderList& fields, std::string request_body = "") {
    body_out = std::move(request_body);
    auto nva = core::to_nv(fields);
    nghttp2_data_provider provider{};
    provider.source.ptr = this;
    provider.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags,
                                nghttp2_data_source* src, void*) -> ssize_t {
      auto* c = static_cast<TestH2Client*>(src->ptr);
      size_t n = std::min(len, c->body_out.size() - c->body_sent);
      std::memcpy(buf, c->body_out.data() + c->body_sent, n);
      c->body_sent += n;
      if (c->body_sent == c->body_out.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(n);
    };
    int32_t id = nghttp2_submit_request(session, nullptr, nva.data(), nva.size(),
                                        body_out.empty() ? nullptr : &provider, nullptr);
    end.transport.schedule();
    return id;
  }
  std::string_view header(std::string_view name) const { return core::find_header(headers, name); }

  TestEndpoint end;
  nghttp2_session* session = nullptr;
  core::HeaderList headers;  // response headers and trailers, in order
  std::string body;
  std::string body_out;
  size_t body_sent = 0;
  bool closed = false;
  uint32_t close_code = 0;
};

class TestProxy {
 public:
  // `limits` and `cluster` add keys to those mappings.
  explicit TestProxy(const std::string& cluster_yaml = "", const std::string& limits_yaml = "")
      : fd_(bind_loopback(port_)),
        member(fd_),
        config(load_config("listeners: [{name: client, address: '127.0.0.1:0'}]\n"
                           "limits: {drain_timeout: 50ms" +
                           (limits_yaml.empty() ? "" : ", " + limits_yaml) +
                           "}\n"
                           "cluster: {members: [{name: m, address: '127.0.0.1:" +
                           std::to_string(port_) + "'}]" + (cluster_yaml.empty() ? "" : ", " + cluster_yaml) +
                           "}\n")),
        worker(0, process, registry, config, tls_contexts(config), {}),
        listener(worker, config->listeners[0], 0, worker.tls(), -1) {
    ignore_sigpipe();
    process.registries.push_back(&registry);
    member.start(worker.loop());
    worker.context().scheduler().start();
  }
  ~TestProxy() {
    member.close();
    listener.close();
    for (auto& c : clients) c->end.transport.close();
    for (auto& c : raw) c->transport.close();
    // Connections end with the drain (drain_timeout is short), then the
    // worker's handles close and the loop ends.
    worker.drain([] {});
    uv_run(worker.loop(), UV_RUN_DEFAULT);
  }
  TestProxy(const TestProxy&) = delete;
  TestProxy& operator=(const TestProxy&) = delete;

  // A client connection as the listener hands it over; `fd` is its socket.
  void accept(int fd) {
    auto conn = std::make_unique<ClientConnection>(worker, listener);
    ClientConnection* c = conn.get();
    accepted.push_back(c);
    worker.adopt(std::move(conn));
    ASSERT_EQ(uv_tcp_open(reinterpret_cast<uv_tcp_t*>(c->stream()), fd), 0);
    c->start();
  }
  // A connected socketpair: the proxy's end accepted, the other returned.
  int connect() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    accept(fds[0]);
    return fds[1];
  }
  TestH2Client& h2_client(int32_t window = 0) {
    clients.push_back(std::make_unique<TestH2Client>(worker.context(), connect(), window));
    return *clients.back();
  }
  TestEndpoint& raw_client() {
    raw.push_back(std::make_unique<TestEndpoint>(worker.context(), connect()));
    raw.back()->transport.resume_reading();
    return *raw.back();
  }

  bool run_until(const std::function<bool()>& done, uint64_t timeout_ms = 5000) {
    return run_loop_until(worker.loop(), done, timeout_ms);
  }

 private:
  uint16_t port_ = 0;
  int fd_;

 public:
  TestMember member;
  core::Logger log{-1};
  ProcessState process{log};
  metrics::Registry registry;
  std::shared_ptr<const conf::Config> config;
  Worker worker;
  Listener listener;
  std::vector<std::unique_ptr<TestH2Client>> clients;
  std::vector<std::unique_ptr<TestEndpoint>> raw;
  std::vector<ClientConnection*> accepted;  // the worker's, in order; alive while their client is
};

}  // namespace sidemux::unit
