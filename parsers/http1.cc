#include "parsers/http1.h"

namespace sidemux::parsers {

void Http1Request::clear() {
  // clear() keeps capacity, so a keep-alive connection stops allocating
  // after its first few requests.
  method.clear();
  target.clear();
  headers.clear();
  upgrade = chunked = false;
  content_length = 0;
  body_bytes = 0;
}

Http1Parser::Http1Parser(const Limits& limits, OnRequest on_request, void* user)
    : Http1Llhttp(HTTP_REQUEST, limits), limits_(limits), on_request_(on_request), user_(user) {}

Http1Parser::Head Http1Parser::on_message_begin() {
  req_.clear();
  return {req_.target, req_.headers};
}

int Http1Parser::on_headers_complete() {
  req_.method = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
  req_.version_major = parser_.http_major;
  req_.version_minor = parser_.http_minor;
  req_.keep_alive = llhttp_should_keep_alive(&parser_) != 0;
  req_.upgrade = parser_.upgrade != 0;
  req_.chunked = (parser_.flags & F_CHUNKED) != 0;
  req_.content_length = req_.chunked ? 0 : parser_.content_length;
  // A chunked body may end in trailers: limited on their own, and never
  // taken for the request's headers.
  head_.reset(trailers_);
  streaming_ = on_head_ && on_head_(user_, req_);
  return 0;
}

int Http1Parser::on_body(const char* at, size_t len) {
  req_.body_bytes += len;
  if (streaming_) return on_body_(user_, at, len) ? 0 : HPE_PAUSED;
  if (req_.body_bytes > limits_.max_body_bytes) {
    body_too_large_ = true;
    return fail("request body too large");
  }
  return 0;
}

int Http1Parser::on_message_complete() {
  req_.keep_alive = llhttp_should_keep_alive(&parser_) != 0;
  // An upgrade the head hook took ends in HPE_PAUSED_UPGRADE, never paused.
  if (streaming_ && req_.upgrade) {
    on_request_(user_, req_);
    return 0;
  }
  return on_request_(user_, req_) ? 0 : HPE_PAUSED;
}

Http1Parser::Result Http1Parser::feed(const char* data, size_t len) {
  llhttp_errno_t err = llhttp_execute(&parser_, data, len);
  if (err == HPE_OK) return {Status::ok, len, 0, nullptr};
  size_t consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
  if (err == HPE_PAUSED) {
    llhttp_resume(&parser_);
    return {Status::paused, consumed, 0, nullptr};
  }
  if (err == HPE_PAUSED_UPGRADE && streaming_) return {Status::upgraded, consumed, 0, nullptr};
  if (err == HPE_PAUSED_UPGRADE || err == HPE_PAUSED_H2_UPGRADE) {
    // The request was answered without upgrading; what follows is not
    // HTTP/1, so the connection ends after that answer (http_status 0).
    return {Status::error, consumed, 0, "protocol upgrade is not supported"};
  }
  // Our callbacks refuse only what is past a limit: the body, or the head.
  int status = !refused() ? 400 : body_too_large_ ? 413 : 431;
  return {Status::error, consumed, status, reason()};
}

}  // namespace sidemux::parsers
