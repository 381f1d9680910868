// What every connection to a member has, HTTP/2 (UpstreamSession) and
// HTTP/1.1 (Http1Connection) alike: a transport, the dial that opens it, one
// timer (the connect timeout first, then whatever the connection times), and
// the lifetime rule. The connection may be freed only after every libuv
// handle and request it holds has called back: the transport's socket, the
// timer, and a DNS request still out on the thread pool. The last of them
// calls on_handles_closed(), where the connection's pool frees it.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/core/transport.h"
#include "upstream/member_dial.h"

namespace sidemux::core {
class LoopContext;
}

namespace sidemux::upstream {

class Member;

class MemberConnection : private core::Transport::Owner, private MemberDial::Owner {
 public:
  MemberConnection(const MemberConnection&) = delete;
  MemberConnection& operator=(const MemberConnection&) = delete;

  // Starts the connect timeout and the dial; either may close the
  // connection before this returns.
  void connect();
  // Close now. `failure`: the member misbehaved (counts toward outlier
  // ejection) rather than an orderly close.
  virtual void close(std::string_view reason, bool failure) = 0;

 protected:
  // `alpn` (wire format) replaces the TLS context's offer when not empty.
  MemberConnection(core::LoopContext& context, Member& member, std::string_view alpn = {});
  ~MemberConnection() override;

  // The timer calls on_timer() once, `timeout_ms` from now.
  void start_timer(uint64_t timeout_ms);
  void stop_timer() { uv_timer_stop(&timer_); }
  // The first steps of close(): a resolve still out is cancelled (its
  // callback still runs).
  void cancel_dial() { dial_.cancel(); }
  // The last steps of close(): the socket and the timer close, and
  // on_handles_closed() follows once their callbacks have run.
  void close_handles();

  // Still connecting (MemberDial::Owner::dial_wanted).
  virtual bool connecting() const = 0;
  virtual void on_timer() = 0;
  // Every handle has closed: the pool may free the connection from here.
  virtual void on_handles_closed() = 0;

  // Why the transport failed: TLS's own error when it has one, else the socket's.
  std::string transport_failure(int status) const;

  core::LoopContext& context_;
  Member& member_;
  core::Transport transport_;

 private:
  // core::Transport::Owner: the rest is the connection's own; the socket's
  // close ends either kind of connection the same way.
  void on_transport_closed() override;
  // MemberDial::Owner
  bool dial_wanted() const override { return connecting(); }
  void on_dial_failed(std::string reason) override { close(reason, true); }
  void on_dial_request_done() override { on_handle_closed(); }
  void on_dial_plain() override { on_transport_secure(); }

  void on_handle_closed();

  uv_timer_t timer_;
  MemberDial dial_;
  int handles_open_ = 2;  // the socket and the timer, and a resolve request while one is out
};

}  // namespace sidemux::upstream
