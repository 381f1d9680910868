// What the HTTP/1 request and response parsers share: an llhttp parser whose
// header callbacks feed an Http1HeadCollector, and how a callback refuses.
#pragma once

#include <llhttp.h>

#include "parsers/http1_headers.h"

namespace sidemux::parsers {

class Http1Llhttp {
 public:
  Http1Llhttp(const Http1Llhttp&) = delete;
  Http1Llhttp& operator=(const Http1Llhttp&) = delete;

 protected:
  // The derived parser sets its own callbacks in settings_ afterwards
  // (llhttp keeps a pointer to them).
  Http1Llhttp(llhttp_type_t type, const Http1HeadLimits& limits);
  ~Http1Llhttp() = default;

  template <class Derived>
  static Derived* self(llhttp_t* p) {
    return static_cast<Derived*>(static_cast<Http1Llhttp*>(p->data));
  }
  // A callback refuses the message: llhttp stops, and reason() says why.
  int fail(const char* reason) {
    refusal_ = reason;
    return -1;
  }
  // Ours if a callback refused, else llhttp's.
  const char* reason() const { return refusal_ ? refusal_ : llhttp_get_error_reason(&parser_); }
  bool refused() const { return refusal_ != nullptr; }

  llhttp_settings_t settings_;
  llhttp_t parser_;
  Http1HeadCollector head_;

 private:
  static int on_header_field(llhttp_t* p, const char* at, size_t len);
  static int on_header_field_complete(llhttp_t* p);
  static int on_header_value(llhttp_t* p, const char* at, size_t len);

  const char* refusal_ = nullptr;
};

}  // namespace sidemux::parsers
