#include "upstream/cluster.h"

#include <algorithm>

#include "proxy/core/loop_context.h"
#include "proxy/core/metric_names.h"
#include "upstream/etcd_routes.h"

namespace sidemux::upstream {

namespace {
// How often retired members are checked for their drain deadline and end.
constexpr uint64_t kSweepMs = 250;
}  // namespace

Cluster::Cluster(core::LoopContext& context, const conf::Cluster& conf, HealthBoard& board, bool checks)
    : context_(context),
      board_(board),
      checks_(checks),
      kind_(conf.kind),
      routed_leader_(context.metrics().counter(metrics::kEtcdRouted, {"leader"})),
      routed_balanced_(context.metrics().counter(metrics::kEtcdRouted, {"balanced"})),
      balancer_(conf.balance) {
  uv_timer_init(context.loop(), &sweep_timer_);
  sweep_timer_.data = this;
  members_.reserve(conf.members.size());
  for (const auto& m : conf.members) members_.push_back(std::make_shared<Member>(context, *this, board, m, checks));
}

void Cluster::start() {
  for (auto& m : members_) m->start();
}

void Cluster::shutdown() {
  for (auto& m : members_) m->stop();
  for (auto& r : retired_) r.member->stop();
  uv_close(reinterpret_cast<uv_handle_t*>(&sweep_timer_), nullptr);
}

bool Cluster::any_healthy() const {
  for (const auto& m : members_)
    if (m->health() == Health::healthy) return true;
  return false;
}

bool Cluster::may_eject(const Member& candidate) const {
  size_t ejected = 0;
  bool listed = false;
  bool another_eligible = false;
  for (const auto& m : members_) {
    if (m.get() == &candidate) {
      listed = true;
    } else if (m->ejected()) {
      ++ejected;
    } else if (m->eligible()) {
      another_eligible = true;
    }
  }
  // A retired member takes no new streams anyway.
  if (!listed) return true;
  return another_eligible && ejected + 1 <= members_.size() / 2;
}

std::shared_ptr<Member> Cluster::pick(TriedMembers& tried, Route route) {
  if (route == Route::leader) {
    const auto& etcd = context_.config()->cluster.etcd;
    if (etcd && etcd->leader_routing) {
      for (const auto& m : members_) {
        if (m->leader() && m->eligible() && !tried.contains(m.get())) {
          routed_leader_.inc();
          tried.add(m);
          return m;
        }
      }
      routed_balanced_.inc();
    }
  }
  size_t i = balancer_.pick(members_, tried);
  if (i == Balancer::kNone) return nullptr;
  tried.add(members_[i]);
  return members_[i];
}

void Cluster::apply(const conf::Cluster& next) {
  balancer_ = Balancer(next.balance);
  // A member's kind is fixed when it is made (its health check, its leader
  // gauge): a new kind makes every member anew, and the old ones drain as
  // removed members do.
  bool same_kind = next.kind == kind_;
  kind_ = next.kind;
  std::vector<std::shared_ptr<Member>> kept;
  kept.reserve(next.members.size());
  for (const auto& conf : next.members) {
    auto same = [&](const std::shared_ptr<Member>& m) {
      return same_kind && m->name() == conf.name && m->address().to_string() == conf.address.to_string();
    };
    if (auto it = std::find_if(members_.begin(), members_.end(), same); it != members_.end()) {
      kept.push_back(std::move(*it));
      members_.erase(it);
    } else {
      kept.push_back(std::make_shared<Member>(context_, *this, board_, conf, checks_));
      kept.back()->start();
    }
  }
  uint64_t deadline = uv_now(context_.loop()) + static_cast<uint64_t>(context_.config()->limits.drain_timeout.count());
  for (auto& gone : members_) {
    gone->retire();
    retired_.push_back({std::move(gone), deadline});
  }
  members_ = std::move(kept);
  if (!retired_.empty() && !uv_is_active(reinterpret_cast<uv_handle_t*>(&sweep_timer_)))
    uv_timer_start(&sweep_timer_, on_sweep, kSweepMs, kSweepMs);
}

std::vector<Member*> Cluster::members_with(const SharedHealth* state) {
  std::vector<Member*> out;
  for (auto& m : members_)
    if (m->shared() == state) out.push_back(m.get());
  for (auto& r : retired_)
    if (r.member->shared() == state) out.push_back(r.member.get());
  return out;
}

void Cluster::check_now() {
  for (auto& m : members_) m->check_now();
}

void Cluster::on_sweep(uv_timer_t* t) {
  auto* c = static_cast<Cluster*>(t->data);
  uint64_t now = uv_now(c->context_.loop());
  for (auto& r : c->retired_)
    if (now >= r.deadline) r.member->stop();
  // Freed here once nothing of it is open; streams may still hold it.
  std::erase_if(c->retired_, [](const Retired& r) { return r.member->closed(); });
  if (c->retired_.empty()) uv_timer_stop(t);
}

namespace {

// "prefix (m1: unhealthy, why; m2: ...)" over the members.
template <typename Describe>
std::string list_members(const std::vector<std::shared_ptr<Member>>& members, std::string prefix,
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
  auto snapshot = m.health_snapshot();
  out += to_string(snapshot->health);
  if (!snapshot->reason.empty()) {
    out += ", ";
    out += snapshot->reason;
  }
}

}  // namespace

Cluster::HealthSummary Cluster::health() const {
  if (any_healthy()) return {true, ""};
  return {false, list_members(members_, "no healthy member", describe_health)};
}

std::string Cluster::alarms() const {
  // Alarms are the cluster's (raft carries them to every member), so the
  // first member that reports any speaks for all.
  for (const auto& m : members_) {
    auto snapshot = m->health_snapshot();
    if (!snapshot->etcd || snapshot->etcd->alarms.empty()) continue;
    std::string out = "alarm reported by " + m->name() + ": ";
    for (size_t i = 0; i < snapshot->etcd->alarms.size(); ++i) {
      if (i > 0) out += "; ";
      out += snapshot->etcd->alarms[i];
    }
    return out;
  }
  return "";
}

std::string Cluster::unavailable_reason() const {
  return list_members(members_, "no member can take the stream", [](const Member& m, std::string& out) {
    describe_health(m, out);
    if (m.ejected()) out += ", ejected after consecutive failures";
  });
}

Attempts::Attempts(const conf::Cluster& conf, std::string_view path)
    : route_(conf.kind == conf::ClusterKind::etcd && is_leader_route(path) ? Route::leader : Route::balanced),
      left_(1 + conf.retry.attempts) {}

std::shared_ptr<Member> Attempts::next(Cluster& cluster) {
  if (left_ == 0) return nullptr;
  std::shared_ptr<Member> m = cluster.pick(tried_, route_);
  if (m) --left_;
  return m;
}

}  // namespace sidemux::upstream
