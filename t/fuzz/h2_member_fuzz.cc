// A member's answer as the upstream side reads it: a real Cluster, Member,
// Pool and UpstreamSession on a bare loop connect to a raw peer on
// 127.0.0.1 that writes the fuzz bytes in pieces, while one gRPC stream is
// in flight. The handler checks the StreamHandler contract: no call after
// on_upstream_close, and on_upstream_close exactly once by the time the
// peer closed the connection. Torn down (every handle closed) per input.
// Input: byte 0 seeds the split; byte 1 bit 0 set: the rest is sent raw,
// clear: an empty server SETTINGS goes first; bit 1: the request has a
// body (one gRPC message); the rest is the member's bytes.
#include <memory>
#include <string>
#include <vector>

#include "t/fuzz/fuzz_loop.h"
#include "t/fuzz/fuzz_support.h"
#include "t/unit/support/test_member.h"

using namespace sidemux;

namespace {

struct CheckingHandler : unit::RecordingHandler {
  void on_response_header(std::string_view name, std::string_view value, bool trailer) override {
    FUZZ_CHECK(!closed);
    RecordingHandler::on_response_header(name, value, trailer);
    ++calls;
  }
  void on_response_headers_end(bool trailer, bool end) override {
    FUZZ_CHECK(!closed);
    RecordingHandler::on_response_headers_end(trailer, end);
    ++calls;
  }
  void on_response_data(const uint8_t* data, size_t len, bool end) override {
    FUZZ_CHECK(!closed);
    RecordingHandler::on_response_data(data, len, end);
    body_in.clear();  // bounded by the input anyway; nothing checks it
    ++calls;
  }
  ssize_t read_request_body(size_t len, uint32_t* data_flags) override {
    FUZZ_CHECK(!closed);
    return RecordingHandler::read_request_body(len, data_flags);
  }
  void on_request_body_sent(size_t n) override {
    FUZZ_CHECK(!closed);
    RecordingHandler::on_request_body_sent(n);
  }
  void on_upstream_close(Close kind, uint32_t error_code, std::string_view why) override {
    FUZZ_CHECK(!closed);
    RecordingHandler::on_upstream_close(kind, error_code, why);
    ++calls;
  }
  uint64_t calls = 0;
};

// The member: a listening socket on the test loop; the one connection it
// accepts gets `script` written in pieces, and whatever it reads is dropped.
class RawMember {
 public:
  explicit RawMember(int fd) : fd_(fd) {}

  void start(uv_loop_t* loop) {
    uv_tcp_init(loop, &listener_);
    listener_.data = this;
    FUZZ_CHECK(uv_tcp_open(&listener_, fd_) == 0);
    FUZZ_CHECK(uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 4,
                         [](uv_stream_t* s, int) { static_cast<RawMember*>(s->data)->accept(); }) == 0);
  }
  bool accepted() const { return conn_open_; }
  uint64_t bytes_read() const { return bytes_read_; }
  void write(std::string_view piece) {
    if (!conn_open_ || piece.empty()) return;
    auto* w = new Write{{}, std::string(piece)};
    uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    w->req.data = w;
    if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&conn_), &buf, 1,
                 [](uv_write_t* req, int) { delete static_cast<Write*>(req->data); }) != 0)
      delete w;
  }
  // The handles close on the loop's next turns; this object must outlive them.
  void close() {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    drop();
  }

 private:
  struct Write {
    uv_write_t req;
    std::string data;
  };
  void accept() {
    if (conn_used_) return;  // one connection per input; later ones wait in the backlog
    conn_used_ = conn_open_ = true;
    uv_tcp_init(listener_.loop, &conn_);
    conn_.data = this;
    FUZZ_CHECK(uv_accept(reinterpret_cast<uv_stream_t*>(&listener_), reinterpret_cast<uv_stream_t*>(&conn_)) == 0);
    uv_tcp_nodelay(&conn_, 1);  // each piece goes out alone, not held for an ACK
    fuzz::close_with_reset(&conn_);
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&conn_),
        [](uv_handle_t*, size_t, uv_buf_t* buf) {
          static char storage[64 * 1024];
          *buf = uv_buf_init(storage, sizeof storage);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
          auto* m = static_cast<RawMember*>(s->data);
          if (n < 0) return m->drop();
          m->bytes_read_ += static_cast<uint64_t>(n);
        });
  }
  void drop() {
    if (!conn_open_) return;
    conn_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&conn_), nullptr);
  }

  int fd_;
  uv_tcp_t listener_;
  uv_tcp_t conn_;
  bool conn_used_ = false;
  bool conn_open_ = false;
  uint64_t bytes_read_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  fuzz::Splitter split(data[0]);
  const bool raw = data[1] & 1;
  std::string bytes;
  if (!raw) bytes.assign("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);  // the server preface: SETTINGS
  bytes.append(fuzz::as_chars(data + 2, size - 2));

  // Declared before the cluster: its teardown runs the loop that closes them.
  CheckingHandler handler;
  if (data[1] & 2) handler.body.append(reinterpret_cast<const uint8_t*>("\x00\x00\x00\x00\x02\x08\x01"), 7);
  uint16_t port = 0;
  RawMember member(unit::bind_loopback(port));
  unit::TestCluster cluster("listeners: [{name: client, address: '127.0.0.1:0'}]\n"
                            "cluster: {members: [{name: m, address: '127.0.0.1:" +
                            std::to_string(port) + "'}]}\n");
  uv_loop_t* loop = cluster.test.context.loop();
  member.start(loop);
  cluster.test.context.scheduler().start();

  upstream::UpstreamSession* session = cluster.member(0).pool().session_for_new_stream();
  FUZZ_CHECK(session != nullptr);
  auto nva = core::to_nv(unit::grpc_request());
  FUZZ_CHECK(session->submit(nva.data(), nva.size(), !handler.body.empty(), &handler) > 0);
  FUZZ_CHECK(cluster.test.run_until([&] { return member.accepted(); }));

  auto progress = [&] { return member.bytes_read() + handler.calls; };
  fuzz::settle(loop, progress);
  for (size_t pos = 0; pos < bytes.size() && member.accepted();) {
    size_t n = split.next(bytes.size() - pos);
    member.write(std::string_view(bytes).substr(pos, n));
    pos += n;
    fuzz::settle(loop, progress);
  }
  // However the answer went, the stream hears how it ended once the
  // connection is gone.
  member.close();
  FUZZ_CHECK(cluster.test.run_until([&] { return handler.closed; }));
  return 0;
}
