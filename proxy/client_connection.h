// One client connection: its transport and the classify/idle timer. It
// classifies the first bytes (parsers/classify), then swaps in the Session
// that speaks the protocol it found and hands it every later byte.
//
// Lifetime: close() starts uv_close on both handles; the worker deletes the
// connection from the last close callback, a later loop phase than any
// callback that asked for the close.
#pragma once

#include <uv.h>

#include <array>
#include <memory>

#include "parsers/classify.h"
#include "proxy/core/transport.h"
#include "proxy/session.h"

namespace sidemux {

class Listener;
class Worker;

class ClientConnection : private core::Transport::Owner {
 public:
  ClientConnection(Worker& worker, Listener& listener);
  ~ClientConnection();
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  uv_stream_t* stream() { return transport_.stream(); }
  // After uv_accept: start reading and the classify timer.
  void start();

  Worker& worker() { return worker_; }
  Listener& listener() { return listener_; }
  core::Transport& transport() { return transport_; }
  const struct sockaddr* peer() const { return reinterpret_cast<const sockaddr*>(&peer_); }

  // Drain (SIGTERM): unclassified connections close, sessions shut down.
  void shutdown(bool final);
  void close();
  // The session saw a frame about a stream (not a PING, SETTINGS or
  // WINDOW_UPDATE): the connection is in use, the idle timeout restarts.
  void note_activity();
  // From the worker's periodic sweep: a connection that read and wrote
  // nothing since `since` (uv_now()) gives its transport's and session's
  // empty buffers back (Session::release_idle_memory), once per quiet
  // spell. True if it did now.
  bool release_idle_memory(uint64_t since);

  size_t slot = 0;  // index in the worker's connection list, for O(1) removal

 private:
  void on_transport_read(const char* data, size_t len) override;
  void on_transport_error(int status) override;
  void on_transport_produce() override;
  void on_transport_closed() override;
  void on_transport_secure() override;

  void on_timer();
  void classify(const char* data, size_t len);
  void start_tls(const char* rest, size_t rest_len);
  void start_session(parsers::Protocol protocol);
  void arm_timer(uint64_t ms);
  // Keepalive of a connection with open streams; false when it closed.
  // Narrows `next` to when it must look again.
  bool keepalive(uint64_t now, uint64_t& next);
  void close_with_goaway();
  void on_handle_closed();

  Worker& worker_;
  Listener& listener_;
  core::Transport transport_;
  uv_timer_t timer_;  // classify timeout, then idle timeout
  struct sockaddr_storage peer_ {};

  std::unique_ptr<Session> session_;
  parsers::Protocol protocol_ = parsers::Protocol::need_more;
  std::array<char, parsers::kHttp2Preface.size()> sniff_{};
  size_t sniff_len_ = 0;
  bool closing_ = false;
  bool counted_active_ = false;
  int handles_open_ = 2;
  uint64_t last_activity_ = 0;  // uv_now() of the last use (HTTP/2: a stream frame)
  uint64_t last_read_ = 0;      // uv_now() of the last byte read, whatever it was
  uint64_t ping_sent_ = 0;      // keepalive PING outstanding since (0: none)
  uint64_t released_at_ = 0;    // last use before the last release_idle_memory()
  bool tls_failed_ = false;     // the handshake failure was counted
  uint64_t armed_deadline_ = 0;  // request deadline the timer was last set for
};

}  // namespace sidemux
