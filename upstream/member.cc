#include "upstream/member.h"

#include "parsers/grpc.h"
#include "proxy/core/loop_context.h"
#include "proxy/core/metric_names.h"
#include "upstream/cluster.h"

namespace sidemux::upstream {

const char* to_string(Health h) {
  switch (h) {
    case Health::unknown: return "unknown";
    case Health::healthy: return "healthy";
    case Health::unhealthy: return "unhealthy";
  }
  return "?";
}

Member::Member(core::LoopContext& context, Cluster& cluster, const conf::Member& conf)
    : context_(context),
      cluster_(cluster),
      conf_(conf),
      registry_(context.metrics()),
      up_(registry_.gauge(metrics::kMemberUp, {conf.name})),
      active_streams_(registry_.gauge(metrics::kMemberActiveStreams, {conf.name})),
      connections_(registry_.gauge(metrics::kUpstreamConnectionsActive, {conf.name})),
      duration_(registry_.histogram(metrics::kUpstreamStreamDuration, {conf.name})),
      pool_(context, *this),
      http1_pool_(context, *this),
      health_check_(context, *this) {
  // The retry reasons are known, so their series exist from the start.
  for (std::string_view reason : {"connect_failure", "refused_stream"})
    registry_.counter(metrics::kUpstreamRetries, {conf.name, reason});
}

void Member::start() { health_check_.start(); }

void Member::stop() {
  health_check_.stop();
  pool_.shutdown();
  http1_pool_.shutdown();
}

void Member::retire() {
  health_check_.stop();
  pool_.drain();
  http1_pool_.drain();
  up_.set(0);
  context_.log().info("member retired by reload", {{"member", conf_.name}, {"worker", context_.index()}});
}

void Member::on_health_check(bool ok, std::string reason) {
  const auto& hc = context_.config()->cluster.health_check;
  if (ok) {
    checks_failed_ = 0;
    ++checks_passed_;
    if (health_ != Health::healthy &&
        (health_ == Health::unknown || checks_passed_ >= hc.healthy_threshold || !cluster_.any_healthy()))
      set_health(Health::healthy, "");
    return;
  }
  checks_passed_ = 0;
  ++checks_failed_;
  if (health_ == Health::unhealthy || health_ == Health::unknown || checks_failed_ >= hc.unhealthy_threshold) {
    set_health(Health::unhealthy, std::move(reason));
  }
}

metrics::Counter& Member::streams_total(int grpc_status) {
  auto status = parsers::grpc::status_name(grpc_status);
  if (grpc_status < 0 || grpc_status >= static_cast<int>(streams_by_status_.size()))
    return registry_.counter(metrics::kUpstreamStreams, {conf_.name, status});
  auto& slot = streams_by_status_[static_cast<size_t>(grpc_status)];
  if (!slot) slot = &registry_.counter(metrics::kUpstreamStreams, {conf_.name, status});
  return *slot;
}

metrics::Counter& Member::http_requests_total(int status) {
  for (auto& [code, counter] : http_by_status_)
    if (code == status) return *counter;
  auto& c = registry_.counter(metrics::kUpstreamHttpRequests, {conf_.name, std::to_string(status)});
  http_by_status_.emplace_back(status, &c);
  return c;
}

void Member::set_health(Health h, std::string reason) {
  if (h != health_ && context_.index() == 0) {
    // One line per transition from the first worker; the others see the same.
    context_.log().log(h == Health::healthy ? conf::LogLevel::info : conf::LogLevel::warn, "member health changed",
                      {{"member", conf_.name}, {"health", to_string(h)}, {"reason", reason}});
  }
  health_ = h;
  health_reason_ = std::move(reason);
  up_.set(h == Health::healthy ? 1 : 0);
}

bool Member::ejected() const { return ejected_until_ > uv_now(context_.loop()); }

void Member::record_failure(std::string_view why) {
  const auto& outlier = context_.config()->cluster.outlier;
  if (++consecutive_failures_ < outlier.consecutive_failures) return;
  consecutive_failures_ = 0;
  ejected_until_ = uv_now(context_.loop()) + static_cast<uint64_t>(outlier.ejection_time.count());
  // Ejection is each worker's own verdict, so each worker says so.
  context_.log().warn("member ejected", {{"member", conf_.name},
                                        {"worker", context_.index()},
                                        {"ejection_ms", static_cast<int64_t>(outlier.ejection_time.count())},
                                        {"reason", why}});
}

}  // namespace sidemux::upstream
