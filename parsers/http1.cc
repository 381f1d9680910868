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
    : Http1Llhttp(HTTP_REQUEST, limits), limits_(limits), on_request_(on_request), user_(user) {
  settings_.on_message_begin = on_message_begin;
  settings_.on_url = on_url;
  settings_.on_headers_complete = on_headers_complete;
  settings_.on_body = on_body;
  settings_.on_message_complete = on_message_complete;
}

int Http1Parser::on_message_begin(llhttp_t* p) {
  auto* s = self<Http1Parser>(p);
  s->req_.clear();
  s->head_.reset(s->req_.headers);
  s->in_message_ = true;
  return 0;
}

int Http1Parser::on_url(llhttp_t* p, const char* at, size_t len) {
  auto* s = self<Http1Parser>(p);
  if (const char* e = s->head_.on_start_line(len)) return s->fail(e);
  s->req_.target.append(at, len);
  return 0;
}

int Http1Parser::on_headers_complete(llhttp_t* p) {
  auto* s = self<Http1Parser>(p);
  s->req_.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
  s->req_.version_major = p->http_major;
  s->req_.version_minor = p->http_minor;
  s->req_.keep_alive = llhttp_should_keep_alive(p) != 0;
  s->req_.upgrade = p->upgrade != 0;
  s->req_.chunked = (p->flags & F_CHUNKED) != 0;
  s->req_.content_length = s->req_.chunked ? 0 : p->content_length;
  // A chunked body may end in trailers: limited on their own, and never
  // taken for the request's headers.
  s->head_.reset(s->trailers_);
  s->streaming_ = s->on_head_ && s->on_head_(s->user_, s->req_);
  return 0;
}

int Http1Parser::on_body(llhttp_t* p, const char* at, size_t len) {
  auto* s = self<Http1Parser>(p);
  s->req_.body_bytes += len;
  if (s->streaming_) return s->on_body_(s->user_, at, len) ? 0 : HPE_PAUSED;
  if (s->req_.body_bytes > s->limits_.max_body_bytes) {
    s->body_too_large_ = true;
    return s->fail("request body too large");
  }
  return 0;
}

int Http1Parser::on_message_complete(llhttp_t* p) {
  auto* s = self<Http1Parser>(p);
  s->req_.keep_alive = llhttp_should_keep_alive(p) != 0;
  s->in_message_ = false;
  // An upgrade the head hook took ends in HPE_PAUSED_UPGRADE, never paused.
  if (s->streaming_ && s->req_.upgrade) {
    s->on_request_(s->user_, s->req_);
    return 0;
  }
  return s->on_request_(s->user_, s->req_) ? 0 : HPE_PAUSED;
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
