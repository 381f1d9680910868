// What the loop-driven fuzz targets share: the fixtures of t/unit/support
// (their gtest checks abort the input instead of only printing), and
// running a uv loop until nothing moves any more, bounded in turns so a
// peer that keeps the loop busy cannot stall the fuzzer.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

namespace sidemux::fuzz {

// Runs non-blocking loop turns until `progress` (a number that grows while
// anything happens: bytes answered, requests seen) has stood still for
// kQuietTurns turns, or kMaxTurns ran.
inline void settle(uv_loop_t* loop, const std::function<uint64_t()>& progress) {
  constexpr int kQuietTurns = 4;
  constexpr int kMaxTurns = 400;
  uint64_t last = progress();
  int quiet = 0;
  for (int i = 0; i < kMaxTurns && quiet < kQuietTurns; ++i) {
    uv_run(loop, UV_RUN_NOWAIT);
    uint64_t now = progress();
    quiet = now == last ? quiet + 1 : 0;
    last = now;
  }
}

// The socket's close will be a reset, leaving no TIME_WAIT behind: at
// hundreds of inputs a second those would use up the ephemeral ports that
// the per-input listening sockets bind.
inline void close_with_reset(uv_tcp_t* tcp) {
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(tcp), &fd) != 0) return;
  const linger reset{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
}

inline std::string_view as_chars(const uint8_t* data, size_t len) {
  return {reinterpret_cast<const char*>(data), len};
}

}  // namespace sidemux::fuzz

// A fixture check that fails (EXPECT_* in t/unit/support) throws; escaping
// the target, that aborts, and libFuzzer keeps the input. Defined here, as
// each target is one translation unit including this once.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  GTEST_FLAG_SET(throw_on_failure, true);
  return 0;
}
