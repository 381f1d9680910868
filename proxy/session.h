// A downstream protocol handler. A ClientConnection starts without one,
// classifies its first bytes, then hands every later byte to the Session it
// chose (HTTP/1 or HTTP/2; TLS wraps one of these).
#pragma once

#include <cstddef>

namespace sidemux {

class Session {
 public:
  virtual ~Session() = default;

  // Bytes from the client, in order.
  virtual void on_read(const char* data, size_t len) = 0;
  // Called once per loop turn when the connection was scheduled: append
  // output until the connection's write buffer is full, resume paused input.
  virtual void produce() = 0;
  // No open stream and no request in progress: the idle timeout applies and
  // a drain may close the connection now.
  virtual bool idle() const = 0;
  // uv_now() milliseconds by which the request being received must be
  // complete (0: none in progress). Bounds slow request heads (slowloris),
  // as HAProxy's "timeout http-request" does.
  virtual uint64_t request_deadline() const { return 0; }
  // Queue a keepalive PING; false if the protocol has none (HTTP/1).
  virtual bool ping() { return false; }
  // Graceful shutdown. `final` false: announce it (HTTP/2 GOAWAY notice,
  // HTTP/1 closes when idle); true: stop taking new streams.
  virtual void shutdown(bool final) = 0;
  // The connection was quiet for a while (nothing read or written): give
  // back the memory of buffers that hold nothing until the next use.
  virtual void release_idle_memory() {}
};

}  // namespace sidemux
