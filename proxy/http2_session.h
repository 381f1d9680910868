// The downstream HTTP/2 server session of one client connection (nghttp2).
// Requests for local paths are answered by the local handlers; every other
// request is a gRPC call for the cluster.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <string>

#include "proxy/session.h"

namespace sidemux {

class ClientConnection;
struct LocalResponse;

class Http2Session : public Session {
 public:
  explicit Http2Session(ClientConnection& conn);
  ~Http2Session() override;
  Http2Session(const Http2Session&) = delete;
  Http2Session& operator=(const Http2Session&) = delete;

  void on_read(const char* data, size_t len) override;
  void produce() override;
  bool idle() const override { return open_streams_ == 0; }
  void shutdown(bool final) override;

 private:
  struct Stream;

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t flags, void* user);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user);
  static ssize_t read_body(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                           uint32_t* data_flags, nghttp2_data_source* source, void* user);

  void on_request(Stream& stream);
  void respond_local(Stream& stream);
  void respond_unavailable(Stream& stream, std::string_view why);
  void fail(const char* what, int code);

  ClientConnection& conn_;
  nghttp2_session* session_ = nullptr;
  uint32_t open_streams_ = 0;
  uint32_t max_header_list_size_;
  bool failed_ = false;
};

}  // namespace sidemux
