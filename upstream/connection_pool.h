// What a Member asks of each of its pools, whatever protocol they speak
// (HTTP/2 for gRPC streams, HTTP/1.1 for forwarded requests): stop taking
// work and let it finish, close everything now, and say when nothing is
// left, so that a retired member is freed only after its last connection.
// Taking work out of a pool stays protocol-specific: a stream needs a
// session with capacity, a request an idle connection.
#pragma once

namespace sidemux::core {
class LoopContext;
}

namespace sidemux::upstream {

class Member;

class ConnectionPool {
 public:
  ConnectionPool(const ConnectionPool&) = delete;
  ConnectionPool& operator=(const ConnectionPool&) = delete;

  // No new work; each connection closes once what it carries has ended.
  virtual void drain() = 0;
  // Close every connection now (worker shutdown); handles close on later turns.
  virtual void shutdown() = 0;
  virtual bool empty() const = 0;

 protected:
  ConnectionPool(core::LoopContext& context, Member& member) : context_(context), member_(member) {}
  // Never deleted through this interface: a Member owns its pools by value.
  ~ConnectionPool() = default;

  core::LoopContext& context_;
  Member& member_;
  bool shut_down_ = false;  // drained or shut down: nothing new is opened
};

}  // namespace sidemux::upstream
