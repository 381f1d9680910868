#include "proxy/http1_forward.h"

#include <uv.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "proxy/client_connection.h"
#include "proxy/core/address.h"
#include "proxy/core/log.h"
#include "proxy/core/metric_names.h"
#include "proxy/http1_session.h"
#include "proxy/local_handlers.h"
#include "proxy/worker.h"
#include "upstream/etcd_routes.h"

namespace sidemux {

namespace {

// The client's address without its port, for X-Forwarded-For.
std::string client_ip(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET) {
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(sa), buf, sizeof buf);
  } else if (sa->sa_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(sa), buf, sizeof buf);
  }
  return buf;
}

// The shape of etcd's gateway errors, with gRPC's UNAVAILABLE as the code.
std::string unavailable_json(std::string_view message) {
  std::string out = "{\"error\":\"";
  core::append_json_escaped(out, message);
  out += "\",\"code\":14}";
  return out;
}

}  // namespace

bool forwarded_path(const conf::Config& config, std::string_view target) {
  for (const std::string& prefix : config.cluster.http1_forward)
    if (target.starts_with(prefix)) return !is_local_path(target);
  return false;
}

ForwardedRequest::ForwardedRequest(Http1Session& session, ClientConnection& conn, const parsers::Http1Request& req)
    : session_(session), conn_(conn), config_(conn.worker().config()), request_(req) {
  build_forward_request_head(request_, client_ip(conn.peer()), request_head_);
  attempts_ = upstream::Attempts(config_->cluster, request_.target);
}

ForwardedRequest::~ForwardedRequest() {
  // The client connection went away first: the member connection cannot
  // be reused in the middle of an exchange.
  if (up_) {
    up_->detach();
    release_upstream();
  }
  if (!finished_) account();  // the client left before the answer ended
}

void ForwardedRequest::release_upstream() {
  up_ = nullptr;
  member_->unwatch(*this);
  member_->stream_ended();
}

void ForwardedRequest::start() { attempt(""); }

void ForwardedRequest::attempt(std::string_view last_failure) {
  auto& cluster = conn_.worker().cluster();
  std::string failure(last_failure);
  while (std::shared_ptr<upstream::Member> m = attempts_.next(cluster)) {
    member_ = m;
    if (upstream::Http1Connection* c = m->http1_pool().acquire()) {
      up_ = c;
      m->stream_started();
      m->watch(*this);
      c->start(*this, request_.method == "HEAD");
      flush_request();
      return;
    }
    failure = "cannot connect to " + m->name() + ": " + m->health_reason();
  }
  if (failure.empty()) failure = cluster.unavailable_reason();
  respond_error(503, failure);
}

bool ForwardedRequest::on_request_body(const char* data, size_t len) {
  bytes_in_ += len;
  // finished: answered already, the rest is dropped. An empty span (llhttp
  // has them) must not become a chunk: "0" is the last one.
  if (finished_ || len == 0) return true;
  if (request_.chunked) {
    std::string size_line;
    append_chunk_header(len, size_line);
    pending_body_.append(reinterpret_cast<const uint8_t*>(size_line.data()), size_line.size());
    pending_body_.append(reinterpret_cast<const uint8_t*>(data), len);
    pending_body_.append(reinterpret_cast<const uint8_t*>(kChunkEnd.data()), kChunkEnd.size());
  } else {
    pending_body_.append(reinterpret_cast<const uint8_t*>(data), len);
  }
  flush_request();
  return wants_input();
}

void ForwardedRequest::on_request_end() {
  request_ended_ = true;
  flush_request();
}

void ForwardedRequest::flush_request() {
  if (!up_ || !up_->writable()) return;
  if (!head_sent_) {
    up_->write(request_head_);
    head_sent_ = true;
  }
  if (!pending_body_.empty()) {
    pending_body_.for_each(0, pending_body_.size(), [this](const uint8_t* data, size_t len) {
      up_->write({reinterpret_cast<const char*>(data), len});
    });
    pending_body_.clear();
  }
  if (request_ended_ && !request_end_sent_ && !tunnel_) {
    if (request_.chunked) up_->write(kLastChunk);
    request_end_sent_ = true;
    up_->request_done();
  }
}

void ForwardedRequest::on_upstream_writable() {
  flush_request();
  if (tunnel_) {
    conn_.transport().resume_reading();
  } else if (wants_input()) {
    session_.wake();
  }
}

void ForwardedRequest::on_upstream_informational(const parsers::Http1Response& head) {
  // 100 Continue answers the client's Expect, which went to the member
  // unchanged; other interim answers (103) are dropped, and an HTTP/1.0
  // client gets none (RFC 9110 15.2).
  bool http11 = request_.version_major == 1 && request_.version_minor >= 1;
  if (head.status == 100 && http11 && !response_started_) conn_.transport().write("HTTP/1.1 100 Continue\r\n\r\n");
}

void ForwardedRequest::on_upstream_head(const parsers::Http1Response& head) {
  status_ = head.status;
  close_after_ = !request_.keep_alive || conn_.worker().draining();
  if (head.upgrade) {
    if (!is_websocket_upgrade(request_)) {
      // A 101 to a request that asked for nothing sidemux tunnels.
      up_->close("member switched protocols unasked", true);
      return;
    }
    tunnel_ = true;
  }
  framing_ = client_framing(head, request_);
  build_client_response_head(head, framing_, close_after_, response_head_);
  response_started_ = true;
  conn_.transport().write(response_head_);
}

void ForwardedRequest::on_upstream_body(std::span<const char> bytes) {
  bytes_out_ += bytes.size();
  if (status_ >= 400 && config_->cluster.kind == conf::ClusterKind::etcd)
    error_start_.append(bytes.data(), std::min(bytes.size(), upstream::kGatewayErrorPeek - error_start_.size()));
  core::Transport& t = conn_.transport();
  if (framing_ == ClientFraming::chunked) {
    response_head_.clear();
    append_chunk_header(bytes.size(), response_head_);
    t.write(response_head_);
    t.write({bytes.data(), bytes.size()});
    t.write(kChunkEnd);
  } else {
    t.write({bytes.data(), bytes.size()});
  }
  if (t.write_buffer_full() && up_) up_->pause_reading();
}

void ForwardedRequest::on_upstream_tunnel(const char* data, size_t len) {
  bytes_out_ += len;
  conn_.transport().write({data, len});
  if (conn_.transport().write_buffer_full() && up_) up_->pause_reading();
}

void ForwardedRequest::on_tunnel_data(const char* data, size_t len) {
  bytes_in_ += len;
  if (!up_) return;
  up_->write({data, len});
  if (!up_->writable()) conn_.transport().pause_reading();
}

void ForwardedRequest::on_client_writable() {
  if (up_ && !conn_.transport().write_buffer_full()) up_->resume_reading();
}

void ForwardedRequest::on_upstream_end() {
  // etcd moved its leader: learn the new one now, as for gRPC answers.
  if (upstream::is_gateway_leader_change(status_, error_start_)) conn_.worker().cluster().request_status_round();
  release_upstream();
  if (framing_ == ClientFraming::chunked) conn_.transport().write(kLastChunk);
  // A request whose body is still coming cannot leave the connection in a
  // state the next request could start from.
  finish(close_after_ || framing_ == ClientFraming::until_close || !request_ended_);
}

void ForwardedRequest::on_member_lost(std::string_view reason) {
  // Already unwatched by the member; the connection goes without a callback.
  conn_.worker().log().debug("forwarded request ended", {{"member", member_->name()}, {"reason", reason}});
  if (upstream::Http1Connection* c = std::exchange(up_, nullptr)) c->detach();
  member_->stream_ended();
  if (!finished_) finish(true);
}

void ForwardedRequest::on_upstream_close(Close kind, std::string_view reason) {
  release_upstream();
  if (finished_) return;
  std::string why = member_->name() + ": " + std::string(reason);
  switch (kind) {
    case Close::refused:
      member_->registry().counter(metrics::kUpstreamRetries, {member_->name(), "connect_failure"}).inc();
      attempt(why);
      return;
    case Close::lost:
      if (!response_started_) {
        respond_error(502, why);
        return;
      }
      break;
    case Close::ended:
      break;
  }
  // Part of the answer went out (or the tunnel ended, or sidemux ended the
  // request): closing the client connection is the only way to say so.
  finish(true);
}

void ForwardedRequest::respond_error(int status, std::string_view message) {
  status_ = status;
  LocalResponse resp{status, "application/json", unavailable_json(message)};
  bool close = !request_.keep_alive || !request_ended_ || conn_.worker().draining();
  session_.write_local_response(resp, request_.method == "HEAD", close);
  response_started_ = true;
  finish(close);
}

void ForwardedRequest::finish(bool close_client) {
  finished_ = true;
  // An upgrade the member declined leaves the client speaking the new
  // protocol, or waiting to: the connection cannot carry another request.
  close_client_ = close_client || request_.upgrade;
  account();
  session_.wake();
}

void ForwardedRequest::account() {
  Worker& w = conn_.worker();
  std::string_view member = member_ ? std::string_view(member_->name()) : std::string_view("none");
  if (member_) {
    member_->http_requests_total(status_).inc();
  } else {
    w.metrics().counter(metrics::kUpstreamHttpRequests, {member, std::to_string(status_)}).inc();
  }
  if (w.log().access_log()) {
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    w.log().info("access", {{"client", core::format_peer(conn_.peer())},
                            {"proto", "http1"},
                            {"path", std::string_view(request_.target)},
                            {"member", member},
                            {"status", static_cast<int64_t>(status_)},
                            {"duration_ms", std::round(seconds * 1e6) / 1e3},
                            {"bytes_in", bytes_in_},
                            {"bytes_out", bytes_out_}});
  }
}

}  // namespace sidemux
