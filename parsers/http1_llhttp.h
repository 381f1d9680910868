// What the HTTP/1 request and response parsers share: an llhttp parser whose
// callbacks all land here. The head (start line and header fields) is
// collected within limits by an Http1HeadCollector, whether a message is
// under way is tracked here, and the rest of each message goes to the
// derived parser's hooks, so that each parser states only what differs
// between a request and a response (the split Envoy's http1
// ParserCallbacks makes too).
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <string>

#include "parsers/http1_headers.h"

namespace sidemux::parsers {

class Http1Llhttp {
 public:
  Http1Llhttp(const Http1Llhttp&) = delete;
  Http1Llhttp& operator=(const Http1Llhttp&) = delete;

  // Some bytes of a message have been seen but not the whole message.
  bool mid_message() const { return in_message_; }

 protected:
  Http1Llhttp(llhttp_type_t type, const Http1HeadLimits& limits);
  virtual ~Http1Llhttp() = default;

  // Where a message's head goes: the start line's text (the request target,
  // or the reason phrase) and the header fields.
  struct Head {
    std::string& start_line;
    Http1Headers& headers;
  };
  // A message begins: the derived parser forgets the last one.
  virtual Head on_message_begin() = 0;
  // The head is complete. Returns llhttp's answer (0: read a body, 1: no
  // body, 2: no body and the protocol changes) or fail().
  virtual int on_headers_complete() = 0;
  virtual int on_body(const char* at, size_t len) = 0;
  // The message is complete (mid_message() is already false). Returns 0, or
  // HPE_PAUSED to stop feeding after this message.
  virtual int on_message_complete() = 0;

  // A callback refuses the message: llhttp stops, and reason() says why.
  int fail(const char* reason) {
    refusal_ = reason;
    return -1;
  }
  // Ours if a callback refused, else llhttp's.
  const char* reason() const { return refusal_ ? refusal_ : llhttp_get_error_reason(&parser_); }
  bool refused() const { return refusal_ != nullptr; }

  llhttp_t parser_;
  Http1HeadCollector head_;

 private:
  static Http1Llhttp* self(llhttp_t* p) { return static_cast<Http1Llhttp*>(p->data); }
  static int message_begin(llhttp_t* p);
  static int start_line(llhttp_t* p, const char* at, size_t len);
  static int header_field(llhttp_t* p, const char* at, size_t len);
  static int header_field_complete(llhttp_t* p);
  static int header_value(llhttp_t* p, const char* at, size_t len);
  static int headers_complete(llhttp_t* p);
  static int body(llhttp_t* p, const char* at, size_t len);
  static int message_complete(llhttp_t* p);

  llhttp_settings_t settings_;  // llhttp keeps a pointer to these
  std::string* start_line_ = nullptr;
  const char* refusal_ = nullptr;
  bool in_message_ = false;
};

}  // namespace sidemux::parsers
