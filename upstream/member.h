// One cluster member as this worker sees it: address, health, outlier
// state, its pool of connections and its stream counts.
//
// Health comes from active checks (health_check.h): unknown until the first
// check, whose result counts at once; afterwards unhealthy_threshold failed
// checks in a row mark the member down and healthy_threshold passed ones
// bring it back. When no member of the cluster is healthy, one passed check
// is enough: capacity back soon beats protection against flapping.
//
// Outlier ejection is passive: consecutive_failures connect failures, lost
// connections or member resets in a row eject the member for ejection_time.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "conf/config.h"
#include "proxy/core/metrics.h"
#include "upstream/health_check.h"
#include "upstream/http1_pool.h"
#include "upstream/pool.h"

namespace sidemux::core {
class LoopContext;
}

namespace sidemux::upstream {

class Cluster;

enum class Health { unknown, healthy, unhealthy };
const char* to_string(Health h);

class Member {
 public:
  Member(core::LoopContext& context, Cluster& cluster, const conf::Member& conf);
  Member(const Member&) = delete;
  Member& operator=(const Member&) = delete;

  void start();  // health checks (the first one opens a connection)
  void stop();
  // Removed by a reload: no checks, no new streams; connections close as
  // their streams end. Not up any more as far as metrics go.
  void retire();
  // Every handle of the member is closed: it may be freed.
  bool closed() const { return pool_.empty() && http1_pool_.empty() && health_check_.closed(); }

  const std::string& name() const { return conf_.name; }
  const conf::HostPort& address() const { return conf_.address; }
  Health health() const { return health_; }
  const std::string& health_reason() const { return health_reason_; }
  bool ejected() const;
  // May take new streams: not known to be down and not ejected.
  bool eligible() const { return health_ != Health::unhealthy && !ejected(); }

  void on_health_check(bool ok, std::string reason);
  void set_health(Health h, std::string reason);
  // Outcomes of streams and connects, for outlier ejection.
  void record_failure(std::string_view why);
  void record_success() { consecutive_failures_ = 0; }

  Pool& pool() { return pool_; }
  Http1Pool& http1_pool() { return http1_pool_; }
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
  core::LoopContext& context_;
  Cluster& cluster_;
  conf::Member conf_;
  metrics::Registry& registry_;
  Health health_ = Health::unknown;
  std::string health_reason_ = "not checked yet";
  uint32_t checks_passed_ = 0;  // in a row
  uint32_t checks_failed_ = 0;  // in a row
  uint32_t consecutive_failures_ = 0;
  uint64_t ejected_until_ = 0;  // uv_now() milliseconds
  metrics::Gauge& up_;          // merged across workers by max
  metrics::Gauge& active_streams_;
  metrics::Gauge& connections_;
  metrics::Histogram& duration_;
  std::array<metrics::Counter*, 17> streams_by_status_{};  // gRPC codes 0..16
  // Few distinct status codes occur per member: each series is looked up once.
  std::vector<std::pair<int, metrics::Counter*>> http_by_status_;
  Pool pool_;
  Http1Pool http1_pool_;
  HealthCheck health_check_;
};

}  // namespace sidemux::upstream
