#include "upstream/http1_connection.h"

#include <uv.h>

#include "proxy/core/loop_context.h"
#include "proxy/core/uv_time.h"
#include "upstream/http1_pool.h"
#include "upstream/member.h"

namespace sidemux::upstream {

namespace {

parsers::Http1ResponseParser::Limits limits_for(const conf::Config& config) {
  // A member's head is bounded like a client's header list.
  parsers::Http1ResponseParser::Limits l;
  l.max_head_bytes = config.limits.max_header_list_size;
  return l;
}

// ALPN for TLS towards a member: this connection speaks HTTP/1.1 whatever
// the cluster's context offers for HTTP/2 (wire format).
constexpr std::string_view kHttp1Alpn{"\x08http/1.1", 9};

}  // namespace

Http1Connection::Http1Connection(core::LoopContext& context, Http1Pool& pool, Member& member)
    : MemberConnection(context, member, kHttp1Alpn), pool_(pool), parser_(limits_for(*context.config()), *this) {}

Http1Connection::~Http1Connection() = default;

void Http1Connection::on_transport_secure() {
  open_ = true;
  stop_timer();
  if (state_ == State::connecting) set_state(exchange_ ? State::active : State::idle);
  transport_.schedule();
}

void Http1Connection::start(Http1Exchange& exchange, bool head_request) {
  exchange_ = &exchange;
  reached_ = request_done_ = response_ended_ = false;
  parser_.expect_head_response(head_request);
  if (state_ == State::idle) {
    stop_timer();
    set_state(State::active);
    transport_.resume_reading();
    transport_.schedule();
  }
}

void Http1Connection::write(std::string_view bytes) {
  if (!open_ || state_ == State::closed) return;
  reached_ = true;
  transport_.write(bytes);
}

void Http1Connection::resume_reading() {
  if (state_ != State::closed && open_) transport_.resume_reading();
}

void Http1Connection::detach() {
  exchange_ = nullptr;
  if (state_ != State::idle) close("request abandoned", false);
}

void Http1Connection::set_state(State s) {
  State old = state_;
  state_ = s;
  if (s == State::idle) pool_.on_idle(*this);
  if (old == State::idle) pool_.on_busy(*this);
}

void Http1Connection::close(std::string_view reason, bool failure, Http1Exchange::Close kind) {
  if (state_ == State::closed) return;
  const std::string why(reason);
  cancel_dial();
  if (failure) member_.record_failure(why);
  set_state(State::closed);
  member_.connections_gauge().dec();
  close_handles();
  if (Http1Exchange* x = exchange_) {
    exchange_ = nullptr;
    // Nothing handed to the socket: the request never reached the member.
    if (kind == Http1Exchange::Close::lost && !reached_) kind = Http1Exchange::Close::refused;
    x->on_upstream_close(kind, why);
  }
}

void Http1Connection::on_timer() {
  if (state_ == State::connecting) {
    close("connect: timed out", true);
  } else if (state_ == State::idle) {
    close("idle", false);
  }
}

void Http1Connection::on_handles_closed() { pool_.on_closed(*this); }

void Http1Connection::on_transport_error(int status) {
  if (state_ == State::idle) {
    // The member closed a pooled connection (its own idle timeout).
    close("member closed an idle connection", false);
    return;
  }
  if (status == UV_EOF && state_ == State::active && exchange_) {
    // An until-close body ends here; a response cut short fails below.
    auto r = parser_.finish();
    if (r.status != parsers::Http1ResponseParser::Status::error && response_ended_) return;
  }
  if (state_ == State::tunnel && status == UV_EOF) {
    close("member closed the tunnel", false, Http1Exchange::Close::ended);
  } else {
    close(transport_failure(status), true);
  }
}

void Http1Connection::on_transport_read(const char* data, size_t len) {
  if (state_ == State::tunnel) {
    if (exchange_) exchange_->on_upstream_tunnel(data, len);
    return;
  }
  if (state_ != State::active || !exchange_) {
    // Bytes nobody asked for (after a response, or on an idle connection):
    // the connection's framing cannot be trusted any more.
    close("member sent bytes outside a response", true);
    return;
  }
  auto r = parser_.feed(data, len);
  if (state_ == State::closed) return;  // the exchange gave up on the answer
  using S = parsers::Http1ResponseParser::Status;
  switch (r.status) {
    case S::ok:
    case S::paused:
      // paused: on_end returned false, the connection is idle or closed; any
      // bytes after a response were caught above on the next read or here.
      if (r.status == S::paused && r.consumed < len && state_ != State::closed)
        close("member sent bytes after its response", true);
      break;
    case S::upgraded:
      set_state(State::tunnel);
      if (exchange_ && r.consumed < len) exchange_->on_upstream_tunnel(data + r.consumed, len - r.consumed);
      break;
    case S::error:
      close(std::string("bad response from member: ") + r.reason, true);
      break;
  }
}

void Http1Connection::on_transport_produce() {
  if (open_ && exchange_ && (state_ == State::active || state_ == State::tunnel)) exchange_->on_upstream_writable();
}

void Http1Connection::on_informational(const parsers::Http1Response& head) {
  if (exchange_) exchange_->on_upstream_informational(head);
}

void Http1Connection::on_head(const parsers::Http1Response& head) {
  if (exchange_) exchange_->on_upstream_head(head);
}

void Http1Connection::on_body(std::span<const char> bytes) {
  if (exchange_) exchange_->on_upstream_body(bytes);
}

bool Http1Connection::on_end(const parsers::Http1Response& head, const parsers::Http1Headers&) {
  response_ended_ = true;
  // A whole answer, not a connect, is what clears the member's failure
  // count: a member that accepts and then breaks every answer must still
  // reach outlier.consecutive_failures.
  member_.record_success();
  Http1Exchange* x = exchange_;
  exchange_ = nullptr;
  bool reuse = head.keep_alive && request_done_;
  if (reuse) {
    set_state(State::idle);
    // The pool may have closed it (drained or shut down) instead of keeping it.
    if (state_ == State::idle) start_timer(core::ms(context_.config()->limits.idle_timeout));
  } else {
    close("response ended without keep-alive", false);
  }
  if (x) x->on_upstream_end();
  return false;  // one response per request: whatever follows is unsolicited
}

}  // namespace sidemux::upstream
