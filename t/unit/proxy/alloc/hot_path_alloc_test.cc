// Heap allocations per proxied unary request in steady state: an in-process
// HTTP/2 client -> Http2Session -> ProxiedStream -> UpstreamSession -> an
// in-process member, all on one loop. This binary replaces malloc, calloc
// and realloc (operator new and nghttp2 and libuv allocate through them) with
// counting wrappers around glibc's own, and counts only on the test thread
// outside the peers' work (t/unit/support/peer_work.h). Its own binary: the
// replacement is process-wide, and ASan brings its own malloc, so the
// sanitizer tree does not build it.
#include <execinfo.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstdio>
#include <functional>
#include <string>

#include "t/unit/support/peer_work.h"
#include "t/unit/support/test_proxy.h"

extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t n, size_t size);
void* __libc_realloc(void* p, size_t size);
}

namespace {

thread_local bool counting = false;
thread_local long allocations = 0;
// SIDEMUX_ALLOC_TRACE=N prints the call stacks of N counted allocations
// (symbolize with addr2line or gdb): who allocates.
thread_local long trace_left = 0;
thread_local bool tracing = false;

inline void count_one() {
  if (!counting || sidemux::unit::peer_work_depth != 0 || tracing) return;
  ++allocations;
  if (trace_left > 0) {
    --trace_left;
    tracing = true;  // backtrace() may allocate once
    void* frames[24];
    int n = backtrace(frames, 24);
    (void)!write(2, "--- allocation\n", 15);
    backtrace_symbols_fd(frames, n, 2);
    tracing = false;
  }
}

}  // namespace

extern "C" {
void* malloc(size_t size) {
  count_one();
  return __libc_malloc(size);
}
void* calloc(size_t n, size_t size) {
  count_one();
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t size) {
  count_one();
  return __libc_realloc(p, size);
}
}

namespace sidemux {
namespace {

// What the proxy may allocate per unary request; the test fails when a
// change adds one (issue 12: zero in steady state).
// None: nghttp2's blocks (its stream, outbound items, header block copies,
// both sessions) come from proxy/core/small_blocks.h, as do header
// fields and the stream's body queues (the loop's stream memory).
constexpr long kAllowedPerRequest = 0;
// Allocations that do not recur (a container reaching a new capacity once).
constexpr long kOneOff = 16;

constexpr int kWarmup = 1000;
constexpr int kRequests = 10000;

// A unary gRPC message: 5-byte prefix and a 96-byte body.
std::string grpc_message() { return std::string("\0\0\0\0\x60", 5) + std::string(96, 'x'); }

TEST(HotPathAllocations, UnaryRequestsInSteadyState) {
  // Health checks would add their own streams to the count.
  unit::TestProxy p("health_check: {interval: 1h}");
  p.member.body = grpc_message();
  auto& client = p.h2_client();
  core::HeaderList fields = unit::grpc_request();
  const std::string request = grpc_message();
  const std::function<bool()> answered = [&] { return client.closed; };
  bool all_ok = true;
  auto one = [&] {
    {
      unit::PeerWork peer;
      client.closed = false;
      client.headers.clear();
      client.body.clear();
      client.body_sent = 0;
      client.request(fields, request);
    }
    bool done = p.run_until(answered);
    all_ok = all_ok && done && client.close_code == NGHTTP2_NO_ERROR && client.body == request;
  };
  for (int i = 0; i < kWarmup; ++i) one();
  ASSERT_TRUE(all_ok) << "warm-up requests failed";
  ASSERT_EQ(client.header("grpc-status"), "0");

  allocations = 0;
  if (const char* n = std::getenv("SIDEMUX_ALLOC_TRACE")) trace_left = std::atol(n);
  counting = true;
  for (int i = 0; i < kRequests; ++i) one();
  counting = false;
  ASSERT_TRUE(all_ok);
  EXPECT_EQ(client.header("grpc-status"), "0");
  EXPECT_EQ(p.member.requests, kWarmup + kRequests);

  double per_request = static_cast<double>(allocations) / kRequests;
  std::printf("heap allocations per unary request: %.2f (%ld over %d requests)\n", per_request, allocations,
              kRequests);
  EXPECT_LE(allocations, kAllowedPerRequest * kRequests + kOneOff);
}

}  // namespace
}  // namespace sidemux
