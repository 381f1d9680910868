// The first steps of every member connection, HTTP/2 and HTTP/1.1 alike:
// the member's address as it is, or a DNS name resolved on libuv's thread
// pool (never on the loop); a TCP connect on the transport's handle; then
// TCP_NODELAY, reading, and TLS per cluster.tls. The connection that owns
// the dial keeps its own timer and state: the dial only asks whether it is
// still wanted when a step completes.
#pragma once

#include <uv.h>

#include <string>
#include <string_view>

#include "conf/config.h"
#include "proxy/core/loop_context.h"
#include "proxy/core/transport.h"

namespace sidemux::upstream {

class MemberDial {
 public:
  class Owner {
   public:
    // Still connecting: not closed (timed out) since the dial started.
    virtual bool dial_wanted() const = 0;
    // Resolving or connecting failed; the owner closes with this reason.
    virtual void on_dial_failed(std::string reason) = 0;
    // The resolve request ended: it counted among the owner's handles.
    virtual void on_dial_request_done() = 0;
    // TCP is up without TLS: the byte stream is open. (With TLS, the
    // transport's on_transport_secure() follows the handshake instead.)
    virtual void on_dial_plain() = 0;

   protected:
    ~Owner() = default;
  };

  // `alpn` (wire format) replaces the TLS context's offer when not empty.
  MemberDial(core::LoopContext& context, core::Transport& transport, const conf::HostPort& address, Owner& owner,
             std::string_view alpn = {});
  MemberDial(const MemberDial&) = delete;
  MemberDial& operator=(const MemberDial&) = delete;

  // Returns true when a resolve request is out: the owner counts it as one
  // more handle until on_dial_request_done().
  bool start();
  // Cancels a resolve still on the thread pool (its callback still runs).
  void cancel();

 private:
  void connect(const struct sockaddr* addr);
  void on_connected(int status);

  core::LoopContext& context_;
  core::Transport& transport_;
  const conf::HostPort& address_;
  Owner& owner_;
  std::string_view alpn_;
  uv_connect_t connect_req_;
  uv_getaddrinfo_t resolve_req_;
  bool resolving_ = false;
};

}  // namespace sidemux::upstream
