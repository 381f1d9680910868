#include "proxy/core/h2_common.h"

#include <memory>
#include <vector>

#include "proxy/core/flow_windows.h"

namespace sidemux::core {

namespace {
// nghttp2's own defaults, stated so a reader sees the bounds that stop
// Rapid Reset (CVE-2023-44487) and CONTINUATION floods (CVE-2024-28182).
constexpr uint64_t kResetBurst = 1000;
constexpr uint64_t kResetRatePerSecond = 33;
constexpr size_t kMaxContinuations = 8;

struct H2CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* c) const { nghttp2_session_callbacks_del(c); }
};
using H2Callbacks = std::unique_ptr<nghttp2_session_callbacks, H2CallbacksDeleter>;

H2Callbacks make_h2_callbacks(const H2Handlers& h) {
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  if (h.on_begin_frame) nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, h.on_begin_frame);
  if (h.on_begin_headers) nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, h.on_begin_headers);
  if (h.on_header) nghttp2_session_callbacks_set_on_header_callback(cbs, h.on_header);
  if (h.on_frame_recv) nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h.on_frame_recv);
  if (h.on_invalid_frame_recv)
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, h.on_invalid_frame_recv);
  if (h.on_data_chunk) nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h.on_data_chunk);
  if (h.on_frame_send) nghttp2_session_callbacks_set_on_frame_send_callback(cbs, h.on_frame_send);
  if (h.before_frame_send) nghttp2_session_callbacks_set_before_frame_send_callback(cbs, h.before_frame_send);
  if (h.on_stream_close) nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h.on_stream_close);
  if (h.send_data) nghttp2_session_callbacks_set_send_data_callback(cbs, h.send_data);
  return H2Callbacks(cbs);
}

struct H2OptionDeleter {
  void operator()(nghttp2_option* o) const { nghttp2_option_del(o); }
};
using H2Options = std::unique_ptr<nghttp2_option, H2OptionDeleter>;

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

}  // namespace

nghttp2_session* new_h2_session(H2Role role, const H2Handlers& handlers, void* user,
                                std::span<const nghttp2_settings_entry> settings, nghttp2_mem* memory) {
  H2Callbacks cbs = make_h2_callbacks(handlers);
  nghttp2_session* session = nullptr;
  if (role == H2Role::server) {
    nghttp2_session_server_new3(&session, cbs.get(), user, make_h2_options().get(), memory);
  } else {
    nghttp2_session_client_new3(&session, cbs.get(), user, make_h2_options().get(), memory);
  }
  std::vector<nghttp2_settings_entry> all(settings.begin(), settings.end());
  all.push_back({NGHTTP2_SETTINGS_ENABLE_PUSH, 0});
  all.push_back({NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
                 role == H2Role::server ? kClientInitialStreamWindow : kInitialStreamWindow});
  nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, all.data(), all.size());
  nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  return session;
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

}  // namespace sidemux::core
