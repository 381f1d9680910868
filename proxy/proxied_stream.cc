#include "proxy/proxied_stream.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "parsers/grpc.h"
#include "proxy/core/metric_names.h"
#include "proxy/http2_session.h"
#include "proxy/worker.h"
#include "upstream/etcd_routes.h"
#include "upstream/upstream_session.h"

namespace sidemux {

namespace grpc = parsers::grpc;

namespace {
// Request bytes kept for a retry until the member answers. Unary gRPC
// requests are far smaller; a stream whose request outgrows this is no
// longer retried.
constexpr size_t kRetryBufferLimit = 64 * 1024;
// How long a Put that etcd dropped waits before it goes out again. A
// leadership transfer is over within an election round trip, and the Status
// round it started names the new leader by then; sent at once, the retry
// would find a candidate (dropped again) or a follower that forwards it to
// the old leader, which drops it silently (the client waits ~5 s for
// "request timed out").
constexpr uint64_t kDroppedProposalBackoffMs = 100;
}  // namespace

// A one-shot uv timer that outlives the stream until its close callback:
// the stream drops its pointer, the timer frees itself.
class ProxiedStream::StreamTimer {
 public:
  using Fire = void (ProxiedStream::*)();
  StreamTimer(uv_loop_t* loop, ProxiedStream* owner, uint64_t timeout_ms, Fire fire)
      : timer_(new Timer{{}, owner, fire}) {
    uv_timer_init(loop, &timer_->handle);
    timer_->handle.data = timer_;
    uv_timer_start(
        &timer_->handle,
        [](uv_timer_t* t) {
          auto* timer = static_cast<Timer*>(t->data);
          if (timer->owner) (timer->owner->*timer->fire)();
        },
        timeout_ms, 0);
  }
  ~StreamTimer() {
    timer_->owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_->handle),
             [](uv_handle_t* h) { delete static_cast<Timer*>(h->data); });
  }
  StreamTimer(const StreamTimer&) = delete;
  StreamTimer& operator=(const StreamTimer&) = delete;

 private:
  struct Timer {
    uv_timer_t handle;
    ProxiedStream* owner;
    Fire fire;
  };
  Timer* timer_;
};

ProxiedStream::ProxiedStream(Http2Session& session, int32_t id, core::HeaderList request_headers, bool request_ended)
    : down_(session),
      down_id_(id),
      config_(session.worker().config()),
      request_headers_(std::move(request_headers)),
      response_headers_(&session.worker().context().stream_memory()),
      trailers_(&session.worker().context().stream_memory()),
      request_body_(&session.worker().context().stream_memory()),
      response_body_(&session.worker().context().stream_memory()),
      request_ended_(request_ended),
      request_window_(session.request_budget().join()) {
  // gRPC answers carry a handful of headers and two or three trailers.
  response_headers_.reserve(8);
  trailers_.reserve(4);
}

ProxiedStream::~ProxiedStream() {
  // The client connection went away with the stream still open.
  if (!downstream_closed_) on_downstream_close(NGHTTP2_CANCEL);
}

void ProxiedStream::start() {
  // What cannot be gRPC is answered here: a member would reset it, and the
  // client, not the member, is at fault.
  grpc::NotGrpc bad = grpc::check_request(core::find_header(request_headers_, ":method"),
                                          core::find_header(request_headers_, "content-type"));
  if (bad.http_status != 0) {
    respond_not_grpc(bad.http_status, bad.message);
    return;
  }
  std::string_view timeout = core::find_header(request_headers_, "grpc-timeout");
  std::chrono::nanoseconds ns;
  if (!timeout.empty()) {
    if (!grpc::parse_timeout(timeout, ns)) {
      end_with_status(static_cast<int>(grpc::Status::internal), "malformed grpc-timeout: " + std::string(timeout));
      return;
    }
    deadline_at_ = started_ + std::min(ns, std::chrono::nanoseconds(std::chrono::hours(24 * 365)));
    // Rounded up: a deadline must never fire early.
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(ns).count();
    deadline_ = std::make_unique<StreamTimer>(down_.worker().loop(), this, static_cast<uint64_t>(ms),
                                              &ProxiedStream::on_deadline);
  }
  attempts_ = upstream::Attempts(config_->cluster, core::find_header(request_headers_, ":path"));
  attempt("");
}

void ProxiedStream::respond_not_grpc(int http_status, std::string_view message) {
  // An HTTP status for curl users and HTTP tools (what gRPC's HTTP/2
  // protocol prescribes), grpc-status for gRPC clients, a text body to read.
  grpc_status_ = static_cast<int>(grpc::Status::internal);
  core::HeaderList fields = {{":status", std::to_string(http_status)},
                             {"content-type", "text/plain; charset=utf-8"},
                             {"grpc-status", std::to_string(grpc_status_)},
                             {"grpc-message", grpc::percent_encode(message)}};
  if (http_status == 405) fields.push_back({"allow", "POST"});
  std::string body = "sidemux: " + std::string(message) + "\n";
  response_body_.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  response_started_ = response_ended_ = true;
  down_.submit_response(down_id_, fields, true);
}

void ProxiedStream::set_remaining_timeout() {
  // The member gets what is left of the client's deadline, not the whole of
  // it again: time spent here and on earlier attempts is gone.
  auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline_at_ - std::chrono::steady_clock::now());
  for (auto& f : request_headers_)
    if (f.name == "grpc-timeout") f.value = grpc::format_timeout(left);
}

void ProxiedStream::attempt(std::string_view last_failure) {
  auto& cluster = down_.worker().cluster();
  std::string failure(last_failure);
  while (std::shared_ptr<upstream::Member> m = attempts_.next(cluster)) {
    upstream::UpstreamSession* session = m->pool().session_for_new_stream();
    if (session) {
      if (deadline_at_) set_remaining_timeout();
      auto nva = core::to_nv(request_headers_);
      bool has_body = !(request_ended_ && request_body_.empty());
      int32_t id = session->submit(nva.data(), nva.size(), has_body, this);
      if (id > 0) {
        member_ = m;
        up_ = session;
        up_id_ = id;
        // A retry's new stream starts from the initial window again.
        if (response_window_ != 0) down_.response_budget().leave(response_window_);
        response_window_ = down_.response_budget().join();
        m->stream_started();
        m->watch(*this);
        return;
      }
      failure = std::string("cannot open a stream to ") + m->name() + ": " + nghttp2_strerror(id);
    } else {
      failure = "cannot connect to " + m->name() + ": " + m->health_reason();
    }
    member_ = m;
  }
  if (failure.empty()) failure = cluster.unavailable_reason();
  end_with_status(static_cast<int>(grpc::Status::unavailable), failure);
}

void ProxiedStream::on_request_data(const uint8_t* data, size_t len) {
  bytes_in_ += len;
  if (response_ended_ && !up_) {
    // The answer is complete: the rest of the request has nowhere to go.
    down_.consume(down_id_, len);
    return;
  }
  request_body_.append(data, len);
  if (up_) up_->resume_body(up_id_);
}

void ProxiedStream::on_request_end() {
  request_ended_ = true;
  if (up_) up_->resume_body(up_id_);
}

ssize_t ProxiedStream::read_request_body(size_t len, uint32_t* data_flags) {
  size_t unsent = request_body_.size() - request_sent_;
  size_t n = std::min(len, unsent);
  // The client filled half its window and the member takes the bytes: let
  // the client send more at a time, as far as the connection's budget goes.
  if (n > 0 && unsent >= request_window_ / 2) {
    uint32_t grown = down_.request_budget().grow(request_window_);
    if (grown != request_window_) down_.set_window(down_id_, request_window_ = grown);
  }
  if (n == unsent) {
    if (request_ended_) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    } else if (n == 0) {
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

void ProxiedStream::on_request_body_sent(size_t n) {
  request_sent_ += n;
  // The client's window reopens for bytes the member's window took. Bytes
  // re-sent on a retry were consumed the first time.
  if (request_sent_ > request_consumed_) {
    down_.consume(down_id_, request_sent_ - request_consumed_);
    request_consumed_ = request_sent_;
  }
  if (retryable_ && request_body_.size() > kRetryBufferLimit) retryable_ = false;
  if (!retryable_) drop_sent_request();
}

void ProxiedStream::drop_sent_request() {
  request_body_.consume(request_sent_);
  request_consumed_ -= request_sent_;
  request_sent_ = 0;
}

void ProxiedStream::on_response_header(std::string_view name, std::string_view value, bool trailer) {
  if (core::is_hop_by_hop(name)) return;
  (trailer ? trailers_ : response_headers_).emplace_back(name, value);
}

void ProxiedStream::on_response_headers_end(bool trailer, bool end_stream) {
  if (trailer) {
    note_grpc_status(trailers_);
    response_ended_ = true;
    down_.resume_data(down_id_);
    return;
  }
  if (end_stream && retryable_ && !downstream_closed_ && config_->cluster.kind == conf::ClusterKind::etcd &&
      refused_by_etcd()) {
    retry("proposal_dropped", upstream::kDroppedProposal);
    return;
  }
  // The member answered: the request reached it and is never replayed.
  retryable_ = false;
  drop_sent_request();
  if (end_stream) {
    note_grpc_status(response_headers_);
    response_ended_ = true;
  }
  response_started_ = true;
  down_.submit_response(down_id_, response_headers_, !end_stream);
}

void ProxiedStream::on_response_data(const uint8_t* data, size_t len, bool end_stream) {
  if (len > 0) response_body_.append(data, len);
  if (end_stream) response_ended_ = true;
  down_.resume_data(down_id_);
}

ssize_t ProxiedStream::read_response_body(size_t len, uint32_t* data_flags) {
  size_t buffered = response_body_.size();
  size_t n = std::min(len, buffered);
  // The member's window reopens for bytes the client's window took. A
  // member that filled half of it sending to a client that keeps up gets a
  // larger one, as far as the connection's budget goes.
  if (n > 0 && up_) {
    up_->consume(up_id_, n);
    if (buffered >= response_window_ / 2) {
      uint32_t grown = down_.response_budget().grow(response_window_);
      if (grown != response_window_) up_->set_window(up_id_, response_window_ = grown);
    }
  }
  if (n < buffered) return static_cast<ssize_t>(n);
  if (!response_ended_) return n > 0 ? static_cast<ssize_t>(n) : ssize_t{NGHTTP2_ERR_DEFERRED};
  *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  if (!trailers_.empty()) {
    *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    down_.submit_trailer(down_id_, trailers_);
  }
  return static_cast<ssize_t>(n);
}

void ProxiedStream::on_response_body_sent(size_t n) {
  response_body_.for_each(0, n, [this](const uint8_t* data, size_t len) { response_sent_.advance(data, len); });
  response_body_.consume(n);
  bytes_out_ += n;
}

void ProxiedStream::release_upstream() {
  up_ = nullptr;
  member_->unwatch(*this);
  member_->stream_ended();
}

void ProxiedStream::on_member_lost(std::string_view reason) {
  // end_with_status() detaches from the member (cancels its stream) first.
  if (response_ended_) {
    detach_upstream(NGHTTP2_CANCEL);
    return;
  }
  end_with_status(static_cast<int>(grpc::Status::unavailable), reason);
}

void ProxiedStream::on_upstream_close(Close kind, uint32_t error_code, std::string_view reason) {
  release_upstream();
  if (response_ended_) {
    // The whole answer is here (buffered, perhaps): whatever the member did
    // to its stream afterwards changes nothing for the client.
    if (kind == Close::done) member_->record_success();
    return;
  }
  switch (kind) {
    case Close::done:
      // RST_STREAM(NO_ERROR) before the answer ended: the member gave up on
      // the stream without saying why.
      member_->record_failure("member closed the stream before its answer ended");
      if (!response_started_) {
        end_with_status(static_cast<int>(grpc::Status::internal), member_->name() + ": closed the stream early");
      } else {
        down_.reset(down_id_, NGHTTP2_INTERNAL_ERROR);
      }
      return;
    case Close::refused:
      if (retryable_ && !response_started_ && !downstream_closed_) {
        retry(error_code == NGHTTP2_REFUSED_STREAM ? "refused_stream" : "connect_failure", reason);
        return;
      }
      [[fallthrough]];
    case Close::lost:
      // UNAVAILABLE also once the answer started: after the message the
      // client is in, trailers say so (a Watch between events, a stream of
      // messages), so clients retry as they do on any UNAVAILABLE; a bare
      // reset would read as INTERNAL and a cut message as a protocol error.
      end_with_status(static_cast<int>(grpc::Status::unavailable),
                      std::string(member_->name()) + ": " + std::string(reason));
      return;
    case Close::reset:
      member_->record_failure(reason);
      down_.reset(down_id_, error_code);
      return;
    case Close::rejected:
      // The member blamed the request: the client's doing, not the member's.
      down_.reset(down_id_, error_code);
      return;
  }
}

bool ProxiedStream::refused_by_etcd() const {
  std::string_view v = core::find_header(response_headers_, "grpc-status");
  int code;
  return core::parse_int(v, code) &&
         upstream::is_dropped_proposal(code, core::find_header(response_headers_, "grpc-message"));
}

void ProxiedStream::retry(const char* why, std::string_view reason) {
  member_->registry().counter(metrics::kUpstreamRetries, {member_->name(), why}).inc();
  request_sent_ = 0;
  if (up_) {
    // Still attached: etcd answered that it dropped the proposal. Its
    // leader is most likely handing over, so a Status round now names the
    // new one, and the retry waits for it; the member's stream, ended
    // already, is forgotten.
    response_headers_.clear();
    detach_upstream(NGHTTP2_NO_ERROR);
    down_.worker().cluster().request_status_round();
    retry_timer_ = std::make_unique<StreamTimer>(down_.worker().loop(), this, kDroppedProposalBackoffMs,
                                                 &ProxiedStream::on_retry_timer);
    return;
  }
  attempt(std::string(member_->name()) + ": " + std::string(reason));
}

void ProxiedStream::on_retry_timer() {
  // The deadline may have answered the client meanwhile.
  if (!response_started_) attempt(std::string(member_->name()) + ": " + std::string(upstream::kDroppedProposal));
}

void ProxiedStream::detach_upstream(uint32_t error_code) {
  if (!up_) return;
  up_->reset(up_id_, error_code);
  release_upstream();
}

void ProxiedStream::on_deadline() {
  if (response_ended_) return;  // the answer is complete, only the client is still sending
  end_with_status(static_cast<int>(grpc::Status::deadline_exceeded), "deadline exceeded (grpc-timeout)");
}

void ProxiedStream::end_with_status(int grpc_status, std::string_view message) {
  detach_upstream(NGHTTP2_CANCEL);
  grpc_status_ = grpc_status;
  core::HeaderList status = {{"grpc-status", std::to_string(grpc_status)}, {"grpc-message", grpc::percent_encode(message)}};
  if (response_started_) {
    // Headers went out already: the stream ends with trailers carrying the
    // status, after the rest of the message the client is in the middle of
    // (what is buffered beyond it is dropped). A message whose end never
    // arrived cannot be finished, and still the trailers say why: gRPC C
    // clients report their status over the truncated message (UNAVAILABLE,
    // as the SPEC has it), Go ones INTERNAL, both of which etcd's client
    // resumes from. A reset could only say CANCELLED, which makes etcd's
    // client give up a Watch, or REFUSED_STREAM, which invites a replay of
    // a stream the member has seen.
    parsers::grpc::MessageFraming probe = response_sent_;
    size_t rest = 0;
    response_body_.for_each(0, response_body_.size(), [&](const uint8_t* data, size_t len) {
      rest += probe.finish_message(data, len);
    });
    response_body_.truncate(probe.at_boundary() ? rest : 0);
    trailers_ = std::move(status);
    response_ended_ = true;
    down_.resume_data(down_id_);
    return;
  }
  core::HeaderList fields = {{":status", "200"}, {"content-type", std::string(grpc::kContentType)}};
  fields.insert(fields.end(), status.begin(), status.end());
  response_started_ = response_ended_ = true;
  down_.submit_response(down_id_, fields, false);
}

void ProxiedStream::note_grpc_status(const core::HeaderList& fields) {
  std::string_view v = core::find_header(fields, "grpc-status");
  int code;
  if (!v.empty() && core::parse_int(v, code)) grpc_status_ = code;
  // etcd moved its leader: learn the new one now, not at the next interval.
  if (config_->cluster.kind == conf::ClusterKind::etcd &&
      upstream::is_leader_change_error(grpc_status_, core::find_header(fields, "grpc-message")))
    down_.worker().cluster().request_status_round();
}

void ProxiedStream::on_downstream_close(uint32_t error_code) {
  downstream_closed_ = true;
  detach_upstream(NGHTTP2_CANCEL);
  deadline_.reset();
  retry_timer_.reset();
  // The buffers go with the stream, and its windows back to the budgets.
  if (response_window_ != 0) down_.response_budget().leave(response_window_);
  down_.request_budget().leave(request_window_);
  response_window_ = request_window_ = 0;
  if (grpc_status_ < 0)
    grpc_status_ = static_cast<int>(error_code == NGHTTP2_NO_ERROR ? grpc::Status::unknown : grpc::Status::cancelled);
  finish();
}

void ProxiedStream::finish() {
  Worker& w = down_.worker();
  std::string_view member = member_ ? std::string_view(member_->name()) : std::string_view("none");
  std::string_view status = grpc::status_name(grpc_status_);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  if (member_) {
    member_->streams_total(grpc_status_).inc();
    member_->stream_duration().observe(seconds);
  } else {
    // No member was ever picked: rare, so the series is looked up here.
    w.metrics().counter(metrics::kUpstreamStreams, {member, status}).inc();
  }
  if (w.log().access_log()) {
    w.log().info("access", {{"client", down_.peer_string()},
                            {"proto", "h2"},
                            {"path", core::find_header(request_headers_, ":path")},
                            {"member", member},
                            {"grpc_status", status},
                            {"duration_ms", std::round(seconds * 1e6) / 1e3},
                            {"bytes_in", bytes_in_},
                            {"bytes_out", bytes_out_}});
  }
}

}  // namespace sidemux
