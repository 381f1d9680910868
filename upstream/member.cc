#include "upstream/member.h"

#include "parsers/grpc.h"
#include "proxy/core/loop_context.h"
#include "proxy/core/metric_names.h"
#include "upstream/cluster.h"
#include "upstream/health_board.h"

namespace sidemux::upstream {

Member::Member(core::LoopContext& context, Cluster& cluster, HealthBoard& board, const conf::Member& conf,
               bool checks)
    : context_(context),
      cluster_(cluster),
      board_(board),
      conf_(conf),
      registry_(context.metrics()),
      shared_(board.state_for(conf)),
      active_streams_(registry_.gauge(metrics::kMemberActiveStreams, {conf.name})),
      connections_(registry_.gauge(metrics::kUpstreamConnectionsActive, {conf.name})),
      duration_(registry_.histogram(metrics::kUpstreamStreamDuration, {conf.name})),
      pool_(context, *this),
      http1_pool_(context, *this) {
  // The retry reasons are known, so their series exist from the start.
  for (std::string_view reason : {"connect_failure", "refused_stream"})
    registry_.counter(metrics::kUpstreamRetries, {conf.name, reason});
  if (checks) {
    health_check_ = std::make_unique<HealthCheck>(context, *this);
    up_ = &registry_.gauge(metrics::kMemberUp, {conf.name});
    up_->set(health() == Health::healthy ? 1 : 0);
    if (context.config()->cluster.kind == conf::ClusterKind::etcd)
      leader_ = &registry_.gauge(metrics::kEtcdLeader, {conf.name});
  }
}

void Member::start() {
  if (health_check_) health_check_->start();
}

void Member::stop() {
  if (health_check_) health_check_->stop();
  for (ConnectionPool* p : pools()) p->shutdown();
}

void Member::retire() {
  if (health_check_) health_check_->stop();
  for (ConnectionPool* p : pools()) p->drain();
  if (up_) up_->set(0);
  if (leader_) leader_->set(0);
  context_.log().info("member retired by reload", {{"member", conf_.name}, {"worker", context_.index()}});
}

void Member::on_health_check(CheckResult result) {
  const auto& hc = context_.config()->cluster.health_check;
  Health next = health();
  std::string reason = shared_->snapshot()->reason;
  if (result.ok) {
    checks_failed_ = 0;
    ++checks_passed_;
    if (next != Health::healthy &&
        (next == Health::unknown || checks_passed_ >= hc.healthy_threshold || !cluster_.any_healthy())) {
      next = Health::healthy;
      reason.clear();
    }
  } else {
    checks_passed_ = 0;
    ++checks_failed_;
    if (next == Health::unhealthy || next == Health::unknown || checks_failed_ >= hc.unhealthy_threshold) {
      next = Health::unhealthy;
      reason = std::move(result.reason);
    }
  }
  // The first check that finds the member down without a leader ends its
  // streams, whether it goes down now or went down earlier for another
  // reason (a check that timed out on a loaded member, say).
  bool lost_leader = next == Health::unhealthy && result.lost_leader && !leaderless_;
  leaderless_ = next == Health::unhealthy && (leaderless_ || result.lost_leader);
  bool leader = result.ok && result.etcd && result.etcd->leader != 0 && result.etcd->leader == result.etcd->member_id;
  std::optional<EtcdView> etcd = result.etcd ? std::move(result.etcd) : shared_->snapshot()->etcd;
  publish(next, reason, std::move(etcd), leader);
  if (lost_leader) {
    // Its watches have stopped delivering and its calls would hang: end
    // them on every loop, so that clients resume on a member with a leader.
    board_.broadcast([state = shared_, reason](Cluster& c) {
      for (Member* m : c.members_with(state.get())) m->end_watched(reason);
    });
    end_watched(reason);
  }
}

void Member::set_health(Health h, std::string reason) {
  publish(h, std::move(reason), shared_->snapshot()->etcd, leader());
}

void Member::publish(Health h, std::string reason, std::optional<EtcdView> etcd, bool leader) {
  // The process has one checker, so each transition is logged once.
  if (h != health())
    context_.log().log(h == Health::healthy ? conf::LogLevel::info : conf::LogLevel::warn, "member health changed",
                       {{"member", conf_.name}, {"health", to_string(h)}, {"reason", reason}});
  shared_->publish({h, std::move(reason), std::move(etcd)}, leader);
  if (up_) up_->set(h == Health::healthy ? 1 : 0);
  if (leader_) leader_->set(leader ? 1 : 0);
}

void Member::check_now() {
  if (health_check_) health_check_->run_soon();
}

void Member::on_check_timeout(uint64_t since) {
  constexpr std::string_view kWhy = "member stopped answering (health check timed out)";
  pool_.close_silent(since, kWhy);
  // Every loop's clock is uv_now(), CLOCK_MONOTONIC in milliseconds, so the
  // checker's `since` means the same instant on the workers' loops.
  board_.broadcast([state = shared_, since, kWhy](Cluster& c) {
    for (Member* m : c.members_with(state.get())) m->pool().close_silent(since, kWhy);
  });
}

void Member::watch(MemberWatcher& w) {
  if (w.watch_slot_ != MemberWatcher::kUnwatched) return;
  w.watch_slot_ = watchers_.size();
  watchers_.push_back(&w);
}

void Member::unwatch(MemberWatcher& w) {
  size_t slot = w.watch_slot_;
  if (slot == MemberWatcher::kUnwatched || slot >= watchers_.size() || watchers_[slot] != &w) return;
  // Swap-with-last: O(1) with thousands of streams on a member.
  watchers_[slot] = watchers_.back();
  watchers_[slot]->watch_slot_ = slot;
  watchers_.pop_back();
  w.watch_slot_ = MemberWatcher::kUnwatched;
}

void Member::end_watched(std::string_view reason) {
  // Each watcher leaves the list before it is told, so whatever it unwatches
  // or frees in on_member_lost cannot leave a stale entry here.
  const std::string why(reason);
  while (!watchers_.empty()) {
    MemberWatcher* w = watchers_.back();
    unwatch(*w);
    w->on_member_lost(why);
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

bool Member::ejected() const { return ejected_until_ > uv_now(context_.loop()); }

void Member::record_failure(std::string_view why) {
  const auto& outlier = context_.config()->cluster.outlier;
  if (++consecutive_failures_ < outlier.consecutive_failures) return;
  consecutive_failures_ = 0;
  if (!cluster_.may_eject(*this)) {
    if (!ejection_held_) {
      ejection_held_ = true;
      context_.log().warn("member not ejected: at most half the members may be ejected, never the last eligible one",
                          {{"member", conf_.name}, {"worker", context_.index()}, {"reason", why}});
    }
    return;
  }
  ejection_held_ = false;
  ejected_until_ = uv_now(context_.loop()) + static_cast<uint64_t>(outlier.ejection_time.count());
  // Ejection is each worker's own verdict, so each worker says so.
  context_.log().warn("member ejected", {{"member", conf_.name},
                                        {"worker", context_.index()},
                                        {"ejection_ms", static_cast<int64_t>(outlier.ejection_time.count())},
                                        {"reason", why}});
}

}  // namespace sidemux::upstream
