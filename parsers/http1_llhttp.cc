#include "parsers/http1_llhttp.h"

namespace sidemux::parsers {

Http1Llhttp::Http1Llhttp(llhttp_type_t type, const Http1HeadLimits& limits) : head_(limits) {
  llhttp_settings_init(&settings_);
  settings_.on_message_begin = message_begin;
  // llhttp calls on_url for a request and on_status for a response.
  settings_.on_url = start_line;
  settings_.on_status = start_line;
  settings_.on_header_field = header_field;
  settings_.on_header_field_complete = header_field_complete;
  settings_.on_header_value = header_value;
  settings_.on_headers_complete = headers_complete;
  settings_.on_body = body;
  settings_.on_message_complete = message_complete;
  llhttp_init(&parser_, type, &settings_);
  parser_.data = this;
}

int Http1Llhttp::message_begin(llhttp_t* p) {
  auto* s = self(p);
  const Head head = s->on_message_begin();
  s->head_.reset(head.headers);
  s->start_line_ = &head.start_line;
  s->in_message_ = true;
  return 0;
}

int Http1Llhttp::start_line(llhttp_t* p, const char* at, size_t len) {
  auto* s = self(p);
  if (const char* e = s->head_.on_start_line(len)) return s->fail(e);
  s->start_line_->append(at, len);
  return 0;
}

int Http1Llhttp::header_field(llhttp_t* p, const char* at, size_t len) {
  auto* s = self(p);
  const char* e = s->head_.on_field(at, len);
  return e ? s->fail(e) : 0;
}

int Http1Llhttp::header_field_complete(llhttp_t* p) {
  self(p)->head_.on_field_complete();
  return 0;
}

int Http1Llhttp::header_value(llhttp_t* p, const char* at, size_t len) {
  auto* s = self(p);
  const char* e = s->head_.on_value(at, len);
  return e ? s->fail(e) : 0;
}

int Http1Llhttp::headers_complete(llhttp_t* p) { return self(p)->on_headers_complete(); }

int Http1Llhttp::body(llhttp_t* p, const char* at, size_t len) { return self(p)->on_body(at, len); }

int Http1Llhttp::message_complete(llhttp_t* p) {
  auto* s = self(p);
  s->in_message_ = false;
  return s->on_message_complete();
}

}  // namespace sidemux::parsers
