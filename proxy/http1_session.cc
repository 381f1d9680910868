#include "proxy/http1_session.h"

#include "proxy/client_connection.h"
#include "proxy/core/uv_time.h"
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
    : conn_(conn), parser_(limits_for(*conn.worker().config()), on_request_cb, this) {
  if (!conn.worker().config()->cluster.http1_forward.empty()) parser_.stream_bodies(on_head_cb, on_body_cb);
}

void Http1Session::on_read(const char* data, size_t len) {
  if (closing_) return;
  if (forward_ && forward_->tunnel() && !upgrading_) {
    forward_->on_tunnel_data(data, len);
    return;
  }
  if (paused_) {
    stash_.append(data, len);
    if (stash_.size() >= stash_limit()) conn_.transport().pause_reading();
    return;
  }
  parse(data, len);
}

bool Http1Session::reading_wanted() const {
  if (closing_) return false;
  if (!paused_) return true;
  // Behind a forwarded request whose answer is under way the client is
  // still read, into a bounded stash: its EOF then ends the request (as
  // nginx does), so an abandoned watch does not hold a member's stream.
  return !upgrading_ && forward_ && forward_->request_complete() && stash_.size() < stash_limit();
}

size_t Http1Session::stash_limit() const { return conn_.worker().config()->limits.max_http1_request_bytes; }

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
      if (!reading_wanted()) conn_.transport().pause_reading();
      break;
    case parsers::Http1Parser::Status::upgraded:
      // What follows is the client's side of the tunnel, held until the
      // member agreed (its 101) or refused (the connection then closes).
      paused_ = upgrading_ = true;
      stash_.assign(data + r.consumed, len - r.consumed);
      conn_.transport().pause_reading();
      break;
    case parsers::Http1Parser::Status::error:
      fail(r.http_status, r.reason);
      break;
  }
}

void Http1Session::produce() {
  if (closing_) return;
  if (forward_ && !produce_forward()) return;
  if (!paused_ || conn_.transport().write_buffer_full()) return;
  paused_ = false;
  // parse() may pause again and refill stash_, so parse from a moved copy.
  std::string pending = std::move(stash_);
  stash_.clear();
  parse(pending.data(), pending.size());
  if (reading_wanted()) conn_.transport().resume_reading();
}

uint64_t Http1Session::request_deadline() const {
  if (!forward_) return request_deadline_;
  if (forward_->request_complete() || !forward_->wants_input()) return 0;
  return body_progress_ + core::ms(conn_.worker().config()->limits.idle_timeout);
}

bool Http1Session::produce_forward() {
  forward_->on_client_writable();
  if (forward_->finished()) {
    bool close = forward_->close_client() || draining_;
    forward_.reset();
    if (close) {
      close_after_flush();
      return false;
    }
    return true;  // on to the next request
  }
  if (forward_->tunnel()) {
    if (upgrading_) {
      upgrading_ = paused_ = false;
      std::string early = std::move(stash_);
      stash_.clear();
      if (!early.empty()) forward_->on_tunnel_data(early.data(), early.size());
      if (forward_->wants_tunnel_input()) conn_.transport().resume_reading();
    }
    return false;
  }
  // Parsing goes on only for the rest of this request's body.
  if (!forward_->wants_input()) return false;
  body_progress_ = uv_now(conn_.worker().loop());
  return true;
}

void Http1Session::wake() { conn_.transport().schedule(); }

void Http1Session::close_after_flush() {
  closing_ = true;
  conn_.transport().pause_reading();
  conn_.transport().close_after_flush();
}

bool Http1Session::on_head_cb(void* user, const parsers::Http1Request& req) {
  return static_cast<Http1Session*>(user)->on_head(req);
}

bool Http1Session::on_head(const parsers::Http1Request& req) {
  if (closing_ || !forwarded_path(*conn_.worker().config(), req.target)) return false;
  forward_ = std::make_unique<ForwardedRequest>(*this, conn_, req);
  body_progress_ = uv_now(conn_.worker().loop());
  forward_->start();
  return true;
}

bool Http1Session::on_body_cb(void* user, const char* data, size_t len) {
  auto* s = static_cast<Http1Session*>(user);
  s->body_progress_ = uv_now(s->conn_.worker().loop());
  // A request answered early (503) and reaped: the rest of its body is dropped.
  return s->forward_ ? s->forward_->on_request_body(data, len) : true;
}

bool Http1Session::on_request_cb(void* user, const parsers::Http1Request& req) {
  return static_cast<Http1Session*>(user)->on_request(req);
}

bool Http1Session::on_request(const parsers::Http1Request& req) {
  if (forward_) {
    // The forwarded request is complete; the next one waits for its answer
    // (an upgrade goes on to the tunnel instead).
    forward_->on_request_end();
    return req.upgrade;
  }
  Worker& w = conn_.worker();
  LocalRequest lreq{req.method, req.target, conn_.peer()};
  LocalResponse resp = handle_local(lreq, w.local_context());
  bool close = !req.keep_alive || draining_;
  write_response(resp.status, &resp, req.method == "HEAD", close);
  if (close) {
    close_after_flush();
    return false;
  }
  return !conn_.transport().write_buffer_full();
}

void Http1Session::write_local_response(const LocalResponse& resp, bool head, bool close) {
  write_response(resp.status, &resp, head, close);
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
  if (status != 0 && forward_) {
    // A forwarded request's head went out already: the member's answer
    // cannot be followed by ours, and the connection ends with it.
    forward_.reset();
    status = 0;
  }
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
  if (idle()) close_after_flush();
}

}  // namespace sidemux
