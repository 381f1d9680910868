#include "proxy/http1_session.h"

#include "proxy/client_connection.h"
#include "proxy/listener.h"
#include "proxy/local_handlers.h"
#include "proxy/worker.h"

namespace sidemux {

namespace {
parsers::Http1Parser::Limits limits_for(const conf::Config& config) {
  parsers::Http1Parser::Limits l;
  l.max_head_bytes = config.limits.max_http1_request_bytes;
  // Local handlers take no body; a small one is read and dropped.
  l.max_body_bytes = config.limits.max_http1_request_bytes;
  return l;
}
}  // namespace

Http1Session::Http1Session(ClientConnection& conn)
    : conn_(conn), parser_(limits_for(*conn.worker().config()), on_request_cb, this) {}

void Http1Session::on_read(const char* data, size_t len) {
  if (closing_) return;
  if (paused_) {
    stash_.append(data, len);
    return;
  }
  parse(data, len);
}

void Http1Session::parse(const char* data, size_t len) {
  auto r = parser_.feed(data, len);
  // A request has classify_timeout to arrive whole, from its first byte.
  if (!parser_.mid_message()) {
    request_deadline_ = 0;
  } else if (request_deadline_ == 0) {
    Worker& w = conn_.worker();
    request_deadline_ = uv_now(w.loop()) + static_cast<uint64_t>(w.config()->limits.classify_timeout.count());
  }
  switch (r.status) {
    case parsers::Http1Parser::Status::ok:
      break;
    case parsers::Http1Parser::Status::paused:
      if (closing_) return;  // the request asked to close: the rest is dropped
      paused_ = true;
      stash_.assign(data + r.consumed, len - r.consumed);
      conn_.transport().pause_reading();
      break;
    case parsers::Http1Parser::Status::error:
      fail(r.http_status, r.reason);
      break;
  }
}

void Http1Session::produce() {
  if (!paused_ || closing_ || conn_.transport().write_buffer_full()) return;
  paused_ = false;
  // parse() may pause again and refill stash_, so parse from a moved copy.
  std::string pending = std::move(stash_);
  stash_.clear();
  parse(pending.data(), pending.size());
  if (!paused_ && !closing_) conn_.transport().resume_reading();
}

bool Http1Session::on_request_cb(void* user, const parsers::Http1Request& req) {
  return static_cast<Http1Session*>(user)->on_request(req);
}

bool Http1Session::on_request(const parsers::Http1Request& req) {
  Worker& w = conn_.worker();
  LocalRequest lreq{req.method, req.target, conn_.peer()};
  LocalResponse resp = handle_local(lreq, w.local_context());
  bool close = !req.keep_alive || draining_;
  write_response(resp.status, &resp, req.method == "HEAD", close);
  if (close) {
    closing_ = true;
    conn_.transport().pause_reading();
    conn_.transport().close_after_flush();
    return false;
  }
  return !conn_.transport().write_buffer_full();
}

void Http1Session::write_response(int status, const LocalResponse* resp, bool head, bool close) {
  std::string_view body = resp ? std::string_view(resp->body) : std::string_view();
  head_.clear();
  head_ += "HTTP/1.1 ";
  head_ += std::to_string(status);
  head_ += ' ';
  head_ += reason_phrase(status);
  head_ += "\r\nContent-Type: ";
  head_ += resp ? resp->content_type : "text/plain; charset=utf-8";
  head_ += "\r\nContent-Length: ";
  head_ += std::to_string(body.size());
  if (status == 405) {
    head_ += "\r\nAllow: ";
    head_ += kAllow;
  }
  if (close) head_ += "\r\nConnection: close";
  head_ += "\r\n\r\n";
  conn_.transport().write(head_);
  if (!head) conn_.transport().write(body);
}

void Http1Session::fail(int status, const char* reason) {
  closing_ = true;
  conn_.transport().pause_reading();
  if (status != 0) {
    conn_.listener().count_rejected("bad_request");
    LocalResponse resp{status, "text/plain; charset=utf-8", std::string(reason) + "\n"};
    write_response(status, &resp, false, true);
  }
  conn_.transport().close_after_flush();
}

void Http1Session::shutdown(bool) {
  draining_ = true;
  if (idle()) {
    closing_ = true;
    conn_.transport().pause_reading();
    conn_.transport().close_after_flush();
  }
}

}  // namespace sidemux
