#include "proxy/h2_common.h"

#include "proxy/transport.h"

namespace sidemux {

namespace {
// nghttp2's own defaults, stated so a reader sees the bounds that stop
// Rapid Reset (CVE-2023-44487) and CONTINUATION floods (CVE-2024-28182).
constexpr uint64_t kResetBurst = 1000;
constexpr uint64_t kResetRatePerSecond = 33;
constexpr size_t kMaxContinuations = 8;
}  // namespace

H2Callbacks make_h2_callbacks() {
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  return H2Callbacks(cbs);
}

H2Options make_h2_options() {
  nghttp2_option* opt;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  // Closed streams are kept only for the priority tree, which gRPC never uses.
  nghttp2_option_set_no_closed_streams(opt, 1);
  nghttp2_option_set_stream_reset_rate_limit(opt, kResetBurst, kResetRatePerSecond);
  nghttp2_option_set_max_continuations(opt, kMaxContinuations);
  return H2Options(opt);
}

int send_h2_output(nghttp2_session* session, Transport& transport) {
  while (!transport.write_buffer_full()) {
    const uint8_t* data;
    ssize_t n = nghttp2_session_mem_send(session, &data);
    if (n < 0) return static_cast<int>(n);
    if (n == 0) break;
    transport.write({reinterpret_cast<const char*>(data), static_cast<size_t>(n)});
  }
  return 0;
}

}  // namespace sidemux
