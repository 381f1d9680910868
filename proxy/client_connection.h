// One client connection: the socket, the classify/idle timer and the write
// buffers. It classifies the first bytes (parsers/classify), then swaps in
// the Session that speaks the protocol it found and hands it every byte.
//
// Lifetime: close() starts uv_close on both handles; the worker deletes the
// connection from the last close callback, a later loop phase than any
// callback that asked for the close.
#pragma once

#include <uv.h>

#include <array>
#include <memory>
#include <string>

#include "parsers/classify.h"
#include "proxy/session.h"

namespace sidemux {

class Listener;
class Worker;

class ClientConnection {
 public:
  ClientConnection(Worker& worker, Listener& listener);
  ~ClientConnection();
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
  // After uv_accept: start reading and the classify timer.
  void start();
  // Closed before classification (over max_connections): counted by the caller.
  void reject();

  Worker& worker() { return worker_; }
  Listener& listener() { return listener_; }
  const struct sockaddr* peer() const { return reinterpret_cast<const sockaddr*>(&peer_); }

  // Session API. write() appends to the output buffer; the bytes go out in
  // one batched write on this loop turn.
  void write(std::string_view bytes);
  // Past the high-water mark a session stops producing until produce() is
  // called again after the buffer drained.
  bool write_buffer_full() const { return out_.size() >= kWriteHighWater; }
  void schedule();  // ask for produce() and a flush on this loop turn
  void pause_reading();
  void resume_reading();
  // Close once everything buffered was written.
  void close_after_flush();
  void close();
  bool closing() const { return closing_; }

  // Drain (SIGTERM): unclassified connections close, sessions shut down.
  void shutdown(bool final);
  // Called by the worker's prepare handle for scheduled connections.
  void produce_and_flush();

  size_t slot = 0;  // index in the worker's connection list, for O(1) removal
  bool scheduled = false;

 private:
  static constexpr size_t kWriteHighWater = 64 * 1024;

  void on_read(ssize_t nread, const uv_buf_t* buf);
  void on_timer();
  void on_write_done(int status);
  void on_handle_closed();
  void classify(const char* data, size_t len);
  void start_session(parsers::Protocol protocol);
  void flush();
  void arm_idle_timer();

  Worker& worker_;
  Listener& listener_;
  uv_tcp_t tcp_;
  uv_timer_t timer_;  // classify timeout, then idle timeout
  uv_write_t write_req_;
  struct sockaddr_storage peer_ {};

  std::unique_ptr<Session> session_;
  parsers::Protocol protocol_ = parsers::Protocol::need_more;
  std::array<char, parsers::kHttp2Preface.size()> sniff_{};
  size_t sniff_len_ = 0;

  // Double buffer: sessions append to out_ while inflight_ is being written;
  // both keep their capacity, so steady traffic allocates nothing.
  std::string out_;
  std::string inflight_;
  bool writing_ = false;
  bool reading_ = false;
  bool close_after_flush_ = false;
  bool closing_ = false;
  bool counted_active_ = false;
  int handles_open_ = 0;
  uint64_t last_activity_ = 0;
};

}  // namespace sidemux
