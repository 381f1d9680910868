// One cluster member as one loop sees it: address, health, outlier state,
// its pool of connections and its stream counts.
//
// Health is the process's (shared_health.h): the checker's Member (the one
// Cluster made with checks on, on the server's main loop) runs the active
// checks (health_check.h) and publishes the verdict; every worker's Member
// reads it. Health is unknown until the first
// check, whose result counts at once; afterwards unhealthy_threshold failed
// checks in a row mark the member down and healthy_threshold passed ones
// bring it back. When no member of the cluster is healthy, one passed check
// is enough: capacity back soon beats protection against flapping.
//
// Outlier ejection is passive and stays per worker: consecutive_failures
// connect failures, lost connections or member resets in a row, on this
// worker's own connections, eject the member for ejection_time. Only
// failures the member caused count (a request the member rejects as
// malformed does not: StreamHandler::Close::rejected), and the Cluster caps
// ejection at half its members, never the last eligible one. Like all
// outlier state, the cap holds per worker: each worker ejects on its own.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "conf/config.h"
#include "proxy/core/metrics.h"
#include "upstream/health_check.h"
#include "upstream/http1_pool.h"
#include "upstream/pool.h"
#include "upstream/shared_health.h"

namespace sidemux::core {
class LoopContext;
}

namespace sidemux::upstream {

class Cluster;
class HealthBoard;

// Something open on a member that must end when the member is marked down
// for a reason the open streams share (etcd: the member lost its leader, so
// its watches stop delivering and its calls hang): a ProxiedStream, a
// forwarded HTTP/1 request. Register with Member::watch() while attached
// to the member; on_member_lost() is called once, after the watcher was
// unregistered, on the member's loop; it must end what it holds (gRPC:
// UNAVAILABLE with `reason`; HTTP/1: close the client connection).
class MemberWatcher {
 public:
  virtual ~MemberWatcher() = default;
  virtual void on_member_lost(std::string_view reason) = 0;

 private:
  friend class Member;
  size_t watch_slot_ = kUnwatched;
  static constexpr size_t kUnwatched = static_cast<size_t>(-1);
};

class Member {
 public:
  // `checks`: this is the checker's Member, which runs health checks and
  // publishes the verdict into the board; else it only reads it.
  Member(core::LoopContext& context, Cluster& cluster, HealthBoard& board, const conf::Member& conf, bool checks);
  Member(const Member&) = delete;
  Member& operator=(const Member&) = delete;

  void start();  // health checks (the first one opens a connection)
  void stop();
  // Removed by a reload: no checks, no new streams; connections close as
  // their streams end. Not up any more as far as metrics go.
  void retire();
  // Every handle of the member is closed: it may be freed.
  bool closed() const { return pool_.empty() && http1_pool_.empty() && (!health_check_ || health_check_->closed()); }

  const std::string& name() const { return conf_.name; }
  const conf::HostPort& address() const { return conf_.address; }
  Health health() const { return shared_->health(); }
  // Copies: the snapshot may be swapped by the checker's thread at any time.
  std::string health_reason() const { return shared_->snapshot()->reason; }
  std::shared_ptr<const HealthSnapshot> health_snapshot() const { return shared_->snapshot(); }
  const SharedHealth* shared() const { return shared_.get(); }
  // etcd: the last Status round named this member the leader.
  bool leader() const { return shared_->leader(); }
  bool ejected() const;
  // May take new streams: not known to be down and not ejected.
  bool eligible() const { return health() != Health::unhealthy && !ejected(); }

  // The checker's Member only.
  void on_health_check(CheckResult result);
  void on_health_check(bool ok, std::string reason) { on_health_check(CheckResult{ok, std::move(reason)}); }
  void set_health(Health h, std::string reason);
  // Run a check now unless one is under way (a Status round on demand).
  void check_now();
  // The check that went out at uv_now() `since` timed out: close the
  // connections, on every loop, that heard nothing since.
  void on_check_timeout(uint64_t since);

  // Any loop's Member.
  void watch(MemberWatcher& w);
  void unwatch(MemberWatcher& w);
  // Every watcher's on_member_lost(reason).
  void end_watched(std::string_view reason);
  // Outcomes of streams and connects, for outlier ejection.
  void record_failure(std::string_view why);
  void record_success() {
    consecutive_failures_ = 0;
    ejection_held_ = false;
  }

  Pool& pool() { return pool_; }
  Http1Pool& http1_pool() { return http1_pool_; }
  std::array<ConnectionPool*, 2> pools() { return {&pool_, &http1_pool_}; }
  int64_t active_streams() const { return active_streams_.value(); }
  void stream_started() { active_streams_.inc(); }
  void stream_ended() { active_streams_.dec(); }
  metrics::Gauge& connections_gauge() { return connections_; }
  metrics::Histogram& stream_duration() { return duration_; }
  // sidemux_upstream_streams_total{member, grpc_status}, looked up once per status.
  metrics::Counter& streams_total(int grpc_status);
  // sidemux_upstream_http_requests_total{member, code} (forwarded HTTP/1).
  metrics::Counter& http_requests_total(int status);

  // Per-member series, looked up once.
  metrics::Registry& registry() { return registry_; }

 private:
  void publish(Health h, std::string reason, std::optional<EtcdView> etcd, bool leader);

  core::LoopContext& context_;
  Cluster& cluster_;
  HealthBoard& board_;
  conf::Member conf_;
  metrics::Registry& registry_;
  std::shared_ptr<SharedHealth> shared_;
  uint32_t checks_passed_ = 0;  // in a row
  uint32_t checks_failed_ = 0;  // in a row
  uint32_t consecutive_failures_ = 0;
  bool ejection_held_ = false;  // the cap stopped an ejection (logged once)
  bool leaderless_ = false;     // down, and a check found it without a leader
  uint64_t ejected_until_ = 0;  // uv_now() milliseconds
  metrics::Gauge* up_ = nullptr;      // the checker's Member: one series for the process
  metrics::Gauge* leader_ = nullptr;  // the checker's Member, kind etcd
  metrics::Gauge& active_streams_;
  metrics::Gauge& connections_;
  metrics::Histogram& duration_;
  std::array<metrics::Counter*, 17> streams_by_status_{};  // gRPC codes 0..16
  // Few distinct status codes occur per member: each series is looked up once.
  std::vector<std::pair<int, metrics::Counter*>> http_by_status_;
  std::vector<MemberWatcher*> watchers_;
  Pool pool_;
  Http1Pool http1_pool_;
  std::unique_ptr<HealthCheck> health_check_;  // the checker's Member only
};

}  // namespace sidemux::upstream
