#include "parsers/http1_response.h"

namespace sidemux::parsers {

void Http1Response::clear() {
  status = 0;
  version_major = 1;
  version_minor = 1;
  reason.clear();
  headers.clear();
  framing = Http1BodyFraming::none;
  content_length = 0;
  keep_alive = false;
  upgrade = false;
}

namespace {

// on_headers_complete answers (llhttp.h): go on, no body, no body and the
// connection changes protocol (llhttp_execute returns HPE_PAUSED_UPGRADE).
constexpr int kReadBody = 0;
constexpr int kNoBody = 1;
constexpr int kUpgrade = 2;

}  // namespace

Http1ResponseParser::Http1ResponseParser(const Limits& limits, Handler& handler)
    : Http1Llhttp(HTTP_RESPONSE, limits), handler_(handler) {}

Http1ResponseParser::Head Http1ResponseParser::on_message_begin() {
  response_.clear();
  trailers_.clear();
  return {response_.reason, response_.headers};
}

int Http1ResponseParser::on_headers_complete() {
  Http1Response& r = response_;
  r.status = parser_.status_code;
  r.version_major = parser_.http_major;
  r.version_minor = parser_.http_minor;
  // llhttp takes any three digits; RFC 9110 section 15 starts at 100.
  if (r.status < 100) return fail("invalid status code");
  // Whatever follows the head now is trailers, limited on their own.
  head_.reset(trailers_);

  if (r.status == 101) {
    // The tunnel starts right after this head, with or without the Upgrade
    // and Connection headers that llhttp would otherwise insist on.
    r.upgrade = true;
    head_request_ = false;
    handler_.on_head(r);
    return kUpgrade;
  }
  // RFC 9112 section 6.3: these never have a body, whatever Content-Length
  // says (a 304 repeats the representation's length; llhttp alone would
  // wait for those bytes).
  bool no_body = head_request_ || r.status / 100 == 1 || r.status == 204 || r.status == 304;
  if (no_body) {
    r.framing = Http1BodyFraming::none;
  } else if (parser_.flags & F_CHUNKED) {
    r.framing = Http1BodyFraming::chunked;
  } else if (parser_.flags & F_TRANSFER_ENCODING) {
    // A coding other than chunked last: read until close (RFC 9112 6.3).
    r.framing = Http1BodyFraming::until_close;
  } else if (parser_.flags & F_CONTENT_LENGTH) {
    r.content_length = parser_.content_length;
    r.framing = r.content_length ? Http1BodyFraming::content_length : Http1BodyFraming::none;
  } else {
    r.framing = Http1BodyFraming::until_close;
  }
  if (r.informational()) {
    handler_.on_informational(r);
  } else {
    head_request_ = false;
    handler_.on_head(r);
  }
  return no_body ? kNoBody : kReadBody;
}

int Http1ResponseParser::on_body(const char* at, size_t len) {
  // llhttp ends an until-close body with an empty span at whatever pointer
  // finish() passed; a handler gets bytes only.
  if (len > 0) handler_.on_body({at, len});
  return 0;
}

int Http1ResponseParser::on_message_complete() {
  // A 101 ends in the tunnel, an interim answer in the final one.
  if (response_.upgrade || response_.informational()) return 0;
  response_.keep_alive = llhttp_should_keep_alive(&parser_) != 0;
  return handler_.on_end(response_, trailers_) ? 0 : HPE_PAUSED;
}

Http1ResponseParser::Result Http1ResponseParser::result(llhttp_errno_t err, const char* data, size_t len) {
  if (err == HPE_OK) return {Status::ok, len, nullptr};
  size_t consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
  switch (err) {
    case HPE_PAUSED:
      llhttp_resume(&parser_);
      return {Status::paused, consumed, nullptr};
    case HPE_PAUSED_UPGRADE:
      return {Status::upgraded, consumed, nullptr};
    default:
      return {Status::error, consumed, reason()};
  }
}

Http1ResponseParser::Result Http1ResponseParser::feed(const char* data, size_t len) {
  if (response_.upgrade) return {Status::error, 0, "the connection was upgraded"};
  return result(llhttp_execute(&parser_, data, len), data, len);
}

Http1ResponseParser::Result Http1ResponseParser::finish() {
  if (response_.upgrade) return {Status::ok, 0, nullptr};
  // After a pause in on_end llhttp has not yet left that message (it would
  // on the next byte), and would call the connection cut short. Zero bytes
  // take it to the state between messages.
  static constexpr char kNothing = 0;
  llhttp_errno_t err = llhttp_execute(&parser_, &kNothing, 0);
  if (err != HPE_OK) return {Status::error, 0, reason()};
  err = llhttp_finish(&parser_);
  if (err == HPE_OK || err == HPE_PAUSED) return {Status::ok, 0, nullptr};
  if (err == HPE_INVALID_EOF_STATE) return {Status::error, 0, "the member closed the connection mid-response"};
  return {Status::error, 0, reason()};
}

}  // namespace sidemux::parsers
