#include "upstream/health_check.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "parsers/etcd_status.h"
#include "parsers/grpc.h"
#include "parsers/protobuf_wire.h"
#include "proxy/core/header_list.h"
#include "proxy/core/loop_context.h"
#include "upstream/member.h"
#include "upstream/upstream_session.h"

namespace sidemux::upstream {

namespace {

// An empty HealthCheckRequest (service "") or StatusRequest.
constexpr auto& kRequest = parsers::grpc::kEmptyMessage;
// HealthCheckResponse.status is field 1, a varint; SERVING is 1.
constexpr uint32_t kStatusField = 1;
constexpr uint64_t kServing = 1;

int to_int(std::string_view v, int fallback) {
  int n;
  return core::parse_int(v, n) ? n : fallback;
}

}  // namespace

HealthCheck::HealthCheck(core::LoopContext& context, Member& member)
    : context_(context),
      member_(member),
      etcd_(context.config()->cluster.kind == conf::ClusterKind::etcd),
      request_(&context.stream_memory()) {
  uv_timer_init(context.loop(), &timer_);
  timer_.data = this;
}

HealthCheck::~HealthCheck() = default;

void HealthCheck::start() { arm(0); }

void HealthCheck::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (session_) session_->reset(stream_id_, NGHTTP2_CANCEL);
  session_ = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_),
           [](uv_handle_t* h) { static_cast<HealthCheck*>(h->data)->closed_ = true; });
}

void HealthCheck::run_soon() {
  if (stopped_ || in_flight_) return;
  uint64_t since = uv_now(context_.loop()) - started_;
  arm(since >= kMinGapMs ? 0 : kMinGapMs - since);
}

void HealthCheck::arm(uint64_t ms) { uv_timer_start(&timer_, on_timer, ms, 0); }

void HealthCheck::on_timer(uv_timer_t* t) {
  auto* self = static_cast<HealthCheck*>(t->data);
  if (self->in_flight_) {
    // The next check goes out at once: a member that stopped answering is
    // down after interval + unhealthy_threshold x timeout, not after
    // threshold intervals. (Refused connects fail at once, so only a
    // timeout may skip the interval without spinning.)
    self->finish({false, "health check timed out"}, 0);
    // Connections, here and on every worker, that heard nothing since the
    // check went out are dead (a stopped member, a dropped network), and
    // streams on them would hang.
    self->member_.on_check_timeout(self->started_);
  } else {
    self->run();
  }
}

void HealthCheck::run() {
  const auto& hc = context_.config()->cluster.health_check;
  in_flight_ = true;
  started_ = uv_now(context_.loop());
  request_.clear();
  request_.append(kRequest.data(), kRequest.size());
  request_sent_ = 0;
  http_status_ = 0;
  grpc_status_ = -1;
  grpc_message_.clear();
  body_len_ = 0;
  arm(static_cast<uint64_t>(hc.timeout.count()));
  session_ = member_.pool().session_for_new_stream();
  if (!session_) {
    finish({false, "health check: no connection: " + member_.pool().last_failure()});
    return;
  }
  std::string authority = member_.address().to_string();
  core::HeaderList fields = {{":method", "POST"},
                       {":scheme", context_.config()->cluster.tls ? "https" : "http"},
                       {":authority", authority},
                       {":path", etcd_ ? "/etcdserverpb.Maintenance/Status" : "/grpc.health.v1.Health/Check"},
                       {"content-type", "application/grpc"},
                       {"te", "trailers"},
                       {"user-agent", "sidemux-health-check"}};
  auto nva = core::to_nv(fields);
  stream_id_ = session_->submit(nva.data(), nva.size(), true, this);
  if (stream_id_ < 0) {
    session_ = nullptr;
    finish({false, std::string("health check: ") + nghttp2_strerror(stream_id_)});
  }
}

ssize_t HealthCheck::read_request_body(size_t len, uint32_t* data_flags) {
  size_t n = std::min(len, kRequest.size() - request_sent_);
  if (request_sent_ + n == kRequest.size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

void HealthCheck::on_request_body_sent(size_t n) { request_sent_ += n; }

void HealthCheck::on_response_header(std::string_view name, std::string_view value, bool) {
  if (name == ":status") http_status_ = to_int(value, 0);
  if (name == "grpc-status") grpc_status_ = to_int(value, -1);
  if (name == "grpc-message") grpc_message_ = value;
}

void HealthCheck::on_response_headers_end(bool, bool) {}

void HealthCheck::on_response_data(const uint8_t* data, size_t len, bool) {
  size_t n = std::min(len, body_.size() - body_len_);
  std::memcpy(body_.data() + body_len_, data, n);
  body_len_ += n;
  if (session_ && len > 0) session_->consume(stream_id_, len);
}

void HealthCheck::on_upstream_close(Close kind, uint32_t, std::string_view reason) {
  session_ = nullptr;
  if (!in_flight_) return;
  if (kind != Close::done) {
    finish({false, "health check: " + std::string(reason)});
    return;
  }
  CheckResult v = etcd_ ? judge_etcd(member_.name(), http_status_, grpc_status_, {body_.data(), body_len_})
                        : judge(http_status_, grpc_status_, {body_.data(), body_len_});
  if (!v.ok && !grpc_message_.empty()) v.reason += ": " + grpc_message_;
  finish(std::move(v));
}

CheckResult HealthCheck::judge(int http_status, int grpc_status, std::span<const uint8_t> body) {
  if (http_status != 200) return {false, "health check: HTTP status " + std::to_string(http_status)};
  if (grpc_status == static_cast<int>(parsers::grpc::Status::unimplemented)) return {true, ""};
  if (grpc_status != 0) {
    return {false, "health check: grpc-status " + std::string(parsers::grpc::status_name(grpc_status))};
  }
  std::span<const uint8_t> message;
  if (const char* why = parsers::grpc::unary_message(body, message))
    return {false, std::string("health check: ") + why};
  // Absent, the status is UNKNOWN (0); the last occurrence wins.
  uint64_t status = 0;
  parsers::protowire::Reader reader(message);
  for (parsers::protowire::Field f; reader.next(f);)
    if (f.number == kStatusField && f.type == parsers::protowire::WireType::varint) status = f.value;
  if (reader.error()) return {false, std::string("health check: ") + reader.error()};
  if (status != kServing) return {false, "health check: member is not SERVING"};
  return {true, ""};
}

CheckResult HealthCheck::judge_etcd(std::string_view member, int http_status, int grpc_status,
                                    std::span<const uint8_t> body) {
  if (http_status != 200) return {false, "health check: HTTP status " + std::to_string(http_status)};
  if (grpc_status != 0)
    return {false, "health check: Status grpc-status " + std::string(parsers::grpc::status_name(grpc_status))};
  std::span<const uint8_t> message;
  if (const char* why = parsers::grpc::unary_message(body, message))
    return {false, std::string("health check: Status answer: ") + why};
  parsers::etcd::StatusResponse status;
  if (const char* why = parsers::etcd::decode_status_response(message, status))
    return {false, std::string("health check: Status answer: ") + why};
  CheckResult result;
  EtcdView& view = result.etcd.emplace();
  view.member_id = status.member_id;
  view.leader = status.leader;
  view.raft_term = status.raft_term;
  view.learner = status.is_learner;
  view.db_size = status.db_size;
  for (std::string_view e : status.errors())
    if (e != "etcdserver: no leader") view.alarms.emplace_back(e);
  if (!status.has_leader()) {
    result.reason = "member " + std::string(member) + " has no leader";
    result.lost_leader = true;
  } else if (status.is_learner) {
    result.reason = "member " + std::string(member) + " is a learner";
  } else {
    result.ok = true;
  }
  return result;
}

void HealthCheck::finish(CheckResult verdict, std::optional<uint64_t> next_ms) {
  in_flight_ = false;
  if (session_) {
    session_->reset(stream_id_, NGHTTP2_CANCEL);
    session_ = nullptr;
  }
  member_.on_health_check(std::move(verdict));
  if (!stopped_)
    arm(next_ms.value_or(static_cast<uint64_t>(context_.config()->cluster.health_check.interval.count())));
}

}  // namespace sidemux::upstream
