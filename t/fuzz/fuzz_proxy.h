// A client of a TestProxy over loopback TCP rather than a socketpair: the
// proxy then sees a 127.0.0.1 peer, which admin.allow admits, so the admin
// paths (/metrics, /debug/vars) answer rather than refuse.
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
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
  // libFuzzer's -timeout check is a SIGALRM every timeout/2 + 1 seconds
  // without SA_RESTART: an interrupted connect() goes on in the kernel, so
  // wait for it to finish rather than call it again; accept4() is retried.
  if (::connect(client, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) {
    FUZZ_CHECK(errno == EINTR);
    pollfd pfd{client, POLLOUT, 0};
    int ready;
    do ready = ::poll(&pfd, 1, 5000);
    while (ready < 0 && errno == EINTR);
    int error = 0;
    socklen_t len = sizeof error;
    FUZZ_CHECK(ready == 1 && ::getsockopt(client, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0);
  }
  int accepted;
  do accepted = ::accept4(listening, nullptr, nullptr, SOCK_CLOEXEC);
  while (accepted < 0 && errno == EINTR);
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
