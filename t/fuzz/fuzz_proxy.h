// A client of a TestProxy over loopback TCP rather than a socketpair: the
// proxy then sees a 127.0.0.1 peer, which admin.allow admits, so the admin
// paths (/metrics, /debug/vars) answer rather than refuse.
#pragma once

#include <sys/socket.h>

#include <memory>

#include "t/fuzz/fuzz_loop.h"
#include "t/fuzz/fuzz_support.h"
#include "t/unit/support/test_proxy.h"

namespace sidemux::fuzz {

inline unit::TestEndpoint& loopback_client(unit::TestProxy& proxy) {
  // One listening socket for the process: a fresh one per input would take
  // an ephemeral port each time.
  static uint16_t port = 0;
  static const int listening = unit::bind_loopback(port);
  int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(port);
  // Blocking, but on loopback with a listening socket it completes at once.
  FUZZ_CHECK(::connect(client, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
  int accepted = ::accept4(listening, nullptr, nullptr, SOCK_CLOEXEC);
  FUZZ_CHECK(accepted >= 0);
  proxy.accept(accepted);
  proxy.raw.push_back(std::make_unique<unit::TestEndpoint>(proxy.worker.context(), client));
  // Small pieces go out at once: Nagle would hold them for the peer's
  // delayed ACK, past the turns the targets run the loop for.
  uv_tcp_nodelay(proxy.raw.back()->transport.tcp(), 1);
  close_with_reset(proxy.raw.back()->transport.tcp());
  proxy.raw.back()->transport.resume_reading();
  return *proxy.raw.back();
}

}  // namespace sidemux::fuzz
