#include "parsers/http1_llhttp.h"

namespace sidemux::parsers {

Http1Llhttp::Http1Llhttp(llhttp_type_t type, const Http1HeadLimits& limits) : head_(limits) {
  llhttp_settings_init(&settings_);
  settings_.on_header_field = on_header_field;
  settings_.on_header_field_complete = on_header_field_complete;
  settings_.on_header_value = on_header_value;
  llhttp_init(&parser_, type, &settings_);
  parser_.data = this;
}

int Http1Llhttp::on_header_field(llhttp_t* p, const char* at, size_t len) {
  auto* s = self<Http1Llhttp>(p);
  const char* e = s->head_.on_field(at, len);
  return e ? s->fail(e) : 0;
}

int Http1Llhttp::on_header_field_complete(llhttp_t* p) {
  self<Http1Llhttp>(p)->head_.on_field_complete();
  return 0;
}

int Http1Llhttp::on_header_value(llhttp_t* p, const char* at, size_t len) {
  auto* s = self<Http1Llhttp>(p);
  const char* e = s->head_.on_value(at, len);
  return e ? s->fail(e) : 0;
}

}  // namespace sidemux::parsers
