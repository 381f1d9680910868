// HTTP/1.x request parsing with llhttp, with the size limits of the local
// handlers. Parsing is incremental; a request is delivered when complete.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "parsers/http1_headers.h"
#include "parsers/http1_llhttp.h"

namespace sidemux::parsers {

struct Http1Request {
  std::string method;
  std::string target;
  Http1Headers headers;
  uint8_t version_major = 1;
  uint8_t version_minor = 1;
  bool keep_alive = true;  // llhttp's verdict from version and Connection
  bool upgrade = false;    // Connection: upgrade with an Upgrade header
  bool chunked = false;    // Transfer-Encoding: chunked
  uint64_t content_length = 0;  // when not chunked
  uint64_t body_bytes = 0;  // counted; dropped unless the head hook streams them

  // First value of a header (name in lower case), or empty.
  std::string_view header(std::string_view name) const { return headers.get(name); }
  void clear();
};

class Http1Parser : public Http1Llhttp {
 public:
  struct Limits : Http1HeadLimits {
    size_t max_body_bytes = 16384;
  };

  // Return false to pause after this request (backpressure): feed() then
  // stops and reports how much it consumed.
  using OnRequest = bool (*)(void* user, const Http1Request& req);

  Http1Parser(const Limits& limits, OnRequest on_request, void* user);

  // Requests that are forwarded rather than answered: at the end of each
  // head `on_head` decides; true streams that request's body to `on_body`
  // (no body limit; false from on_body pauses after that span) and lets an
  // upgrade request through (feed() then reports `upgraded`). on_request
  // still marks the end of the request.
  using OnHead = bool (*)(void* user, const Http1Request& req);
  using OnBody = bool (*)(void* user, const char* data, size_t len);
  void stream_bodies(OnHead head_hook, OnBody body_hook) {
    on_head_ = head_hook;
    on_body_ = body_hook;
  }

  // upgraded: the request before `consumed` asked for an upgrade that the
  // head hook took; the bytes after it belong to the new protocol.
  enum class Status { ok, paused, upgraded, error };
  struct Result {
    Status status;
    size_t consumed;   // bytes of the input used; the rest must be fed again
    int http_status;   // on error: 400, 413 or 431; 0: close without answering
    const char* reason;
  };
  Result feed(const char* data, size_t len);

 private:
  Head on_message_begin() override;
  int on_headers_complete() override;
  int on_body(const char* at, size_t len) override;
  int on_message_complete() override;

  Limits limits_;
  OnRequest on_request_;
  OnHead on_head_ = nullptr;
  OnBody on_body_ = nullptr;
  void* user_;
  Http1Request req_;
  Http1Headers trailers_;  // of a chunked request: read and dropped
  bool streaming_ = false;  // this request's body goes to on_body_
  bool body_too_large_ = false;
};

}  // namespace sidemux::parsers
