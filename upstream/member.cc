#include "upstream/member.h"

#include "proxy/metric_names.h"
#include "proxy/worker.h"

namespace sidemux::upstream {

const char* to_string(Health h) {
  switch (h) {
    case Health::unknown: return "unknown";
    case Health::healthy: return "healthy";
    case Health::unhealthy: return "unhealthy";
  }
  return "?";
}

Member::Member(Worker& worker, const conf::Member& conf)
    : worker_(worker),
      conf_(conf),
      registry_(worker.metrics()),
      up_(registry_.gauge(metrics::kMemberUp, {conf.name})),
      active_streams_(registry_.gauge(metrics::kMemberActiveStreams, {conf.name})),
      connections_(registry_.gauge(metrics::kUpstreamConnectionsActive, {conf.name})),
      duration_(registry_.histogram(metrics::kUpstreamStreamDuration, {conf.name})),
      pool_(worker, *this) {
  // The retry reasons are known, so their series exist from the start.
  for (std::string_view reason : {"connect_failure", "refused_stream"})
    registry_.counter(metrics::kUpstreamRetries, {conf.name, reason});
}

void Member::set_health(Health h, std::string reason) {
  if (h != health_ && worker_.index() == 0) {
    // One line per transition from the first worker; the others see the same.
    worker_.log().log(h == Health::healthy ? conf::LogLevel::info : conf::LogLevel::warn, "member health changed",
                      {{"member", conf_.name}, {"health", to_string(h)}, {"reason", reason}});
  }
  health_ = h;
  health_reason_ = std::move(reason);
  up_.set(h == Health::healthy ? 1 : 0);
}

}  // namespace sidemux::upstream
