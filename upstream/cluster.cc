#include "upstream/cluster.h"

namespace sidemux::upstream {

Cluster::Cluster(const conf::Cluster& conf, metrics::Registry& registry) {
  members_.reserve(conf.members.size());
  for (const auto& m : conf.members) members_.push_back(std::make_unique<Member>(m, registry));
}

Cluster::Verdict Cluster::health() const {
  std::string reason = "no healthy member (";
  for (size_t i = 0; i < members_.size(); ++i) {
    const Member& m = *members_[i];
    if (m.health() == Health::healthy) return {true, ""};
    if (i > 0) reason += ", ";
    reason += m.name();
    reason += ": ";
    reason += to_string(m.health());
    reason += ", ";
    reason += m.health_reason();
  }
  reason += ')';
  return {false, std::move(reason)};
}

}  // namespace sidemux::upstream
