#include "upstream/cluster.h"

namespace sidemux::upstream {

Cluster::Cluster(Worker& worker, const conf::Cluster& conf) : balancer_(conf.balance) {
  members_.reserve(conf.members.size());
  for (const auto& m : conf.members) members_.push_back(std::make_unique<Member>(worker, *this, m));
}

void Cluster::start() {
  for (auto& m : members_) m->start();
}

void Cluster::shutdown() {
  for (auto& m : members_) m->stop();
}

bool Cluster::any_healthy() const {
  for (const auto& m : members_)
    if (m->health() == Health::healthy) return true;
  return false;
}

size_t Cluster::index_of(const Member& m) const {
  for (size_t i = 0; i < members_.size(); ++i)
    if (members_[i].get() == &m) return i;
  return members_.size();
}

Cluster::Verdict Cluster::health() const {
  std::string reason = "no healthy member (";
  for (size_t i = 0; i < members_.size(); ++i) {
    const Member& m = *members_[i];
    if (m.health() == Health::healthy) return {true, ""};
    if (i > 0) reason += "; ";
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
