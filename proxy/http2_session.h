// The downstream HTTP/2 server session of one client connection (nghttp2).
// Requests for local paths are answered by the local handlers; every other
// request becomes a ProxiedStream to a cluster member.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <memory>
#include <memory_resource>
#include <string>
#include <unordered_map>

#include "proxy/core/header_list.h"
#include "proxy/core/pooled.h"
#include "proxy/core/session_memory.h"
#include "proxy/session.h"
#include "proxy/window_budget.h"

namespace sidemux {

class ClientConnection;
class ProxiedStream;
class Worker;

class Http2Session : public Session {
 public:
  explicit Http2Session(ClientConnection& conn);
  ~Http2Session() override;
  Http2Session(const Http2Session&) = delete;
  Http2Session& operator=(const Http2Session&) = delete;

  void on_read(const char* data, size_t len) override;
  void produce() override;
  bool idle() const override { return streams_.empty(); }
  // A header block under way (HEADERS, then CONTINUATION) must end by then.
  uint64_t request_deadline() const override { return header_block_deadline_; }
  bool ping() override;
  void shutdown(bool final) override;
  void release_idle_memory() override;

  // For proxied streams.
  Worker& worker();
  const std::string& peer_string() const { return peer_; }
  void submit_response(int32_t id, const core::HeaderList& fields, bool has_body);
  void submit_trailer(int32_t id, const core::HeaderList& fields);
  void resume_data(int32_t id);
  // Request bytes passed on: reopen the stream's window (the connection's
  // reopens on receipt, as on the member side).
  void consume(int32_t id, size_t n);
  // Grow the stream's window to `window` bytes (from request_budget()).
  void set_window(int32_t id, uint32_t window);
  // This connection's share of stream windows: towards the members for its
  // responses, towards the client for its requests.
  WindowBudget& response_budget() { return response_budget_; }
  WindowBudget& request_budget() { return request_budget_; }
  void reset(int32_t id, uint32_t error_code);

 private:
  struct Stream;

  static int on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user);
  static int on_invalid_frame_recv(nghttp2_session*, const nghttp2_frame* frame, int lib_error, void* user);
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t flags, void* user);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data, size_t len,
                           void* user);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user);
  static int send_data(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                       nghttp2_data_source*, void* user);
  static ssize_t read_body(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                           uint32_t* data_flags, nghttp2_data_source* source, void* user);

  Stream* find(int32_t id);
  void on_request(Stream& stream, bool end_stream);
  void respond_local(Stream& stream);
  void fail(const char* what, int code);

  ClientConnection& conn_;
  core::SessionMemory memory_;  // outlives session_
  nghttp2_session* session_ = nullptr;
  std::pmr::unordered_map<int32_t, core::Pooled<Stream>> streams_;
  uint32_t max_header_list_size_;
  std::string peer_;
  bool failed_ = false;
  uint64_t header_block_deadline_ = 0;
  WindowBudget response_budget_{core::kInitialStreamWindow};
  WindowBudget request_budget_{core::kClientInitialStreamWindow};
};

}  // namespace sidemux
