#include "upstream/member.h"

#include "proxy/metric_names.h"

namespace sidemux::upstream {

const char* to_string(Health h) {
  switch (h) {
    case Health::unknown: return "unknown";
    case Health::healthy: return "healthy";
    case Health::unhealthy: return "unhealthy";
  }
  return "?";
}

Member::Member(const conf::Member& conf, metrics::Registry& registry)
    : conf_(conf), active_streams_(registry.gauge(metrics::kMemberActiveStreams, {conf.name})) {}

void Member::set_health(Health h, std::string reason) {
  health_ = h;
  health_reason_ = std::move(reason);
}

}  // namespace sidemux::upstream
