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

namespace {

// "prefix (m1: unhealthy, why; m2: ...)" over the members.
template <typename Describe>
std::string list_members(const std::vector<std::unique_ptr<Member>>& members, std::string prefix,
                         Describe describe) {
  prefix += " (";
  for (size_t i = 0; i < members.size(); ++i) {
    if (i > 0) prefix += "; ";
    prefix += members[i]->name();
    prefix += ": ";
    describe(*members[i], prefix);
  }
  prefix += ')';
  return prefix;
}

void describe_health(const Member& m, std::string& out) {
  out += to_string(m.health());
  if (!m.health_reason().empty()) {
    out += ", ";
    out += m.health_reason();
  }
}

}  // namespace

Cluster::Verdict Cluster::health() const {
  if (any_healthy()) return {true, ""};
  return {false, list_members(members_, "no healthy member", describe_health)};
}

std::string Cluster::unavailable_reason() const {
  return list_members(members_, "no member can take the stream", [](const Member& m, std::string& out) {
    describe_health(m, out);
    if (m.ejected()) out += ", ejected after consecutive failures";
  });
}

}  // namespace sidemux::upstream
