// One member's health as the whole process sees it. The health checker (one
// per process, on the server's main loop: see health_board.h) is its only
// writer; every worker's Member reads it.
//
// The hand-off is lock-free on the hot path: the balancer reads the health
// word and the leader flag (relaxed atomics: a stale value for one loop turn
// is harmless) for every stream; what only /health, /debug/vars and error
// messages need (the reason, etcd's view of the member) is an immutable
// snapshot swapped in whole through an atomic shared_ptr, once per check.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sidemux::upstream {

enum class Health : uint8_t { unknown, healthy, unhealthy };
const char* to_string(Health h);

// What the member's last etcdserverpb.Maintenance/Status answer said.
struct EtcdView {
  uint64_t member_id = 0;
  uint64_t leader = 0;  // 0: the member knows no leader
  uint64_t raft_term = 0;
  bool learner = false;
  int64_t db_size = 0;
  std::vector<std::string> alarms;  // StatusResponse.errors other than "no leader"
};

struct HealthSnapshot {
  Health health = Health::unknown;
  std::string reason = "not checked yet";
  std::optional<EtcdView> etcd;  // kind etcd, once a Status answer came
};

class SharedHealth {
 public:
  SharedHealth() : snapshot_(std::make_shared<const HealthSnapshot>()) {}

  Health health() const { return static_cast<Health>(health_.load(std::memory_order_relaxed)); }
  // The last Status round named this member the leader, and it passed.
  bool leader() const { return leader_.load(std::memory_order_relaxed); }
  std::shared_ptr<const HealthSnapshot> snapshot() const { return snapshot_.load(std::memory_order_acquire); }

  // The checker's thread only.
  void publish(HealthSnapshot next, bool leader) {
    health_.store(static_cast<uint8_t>(next.health), std::memory_order_relaxed);
    leader_.store(leader, std::memory_order_relaxed);
    snapshot_.store(std::make_shared<const HealthSnapshot>(std::move(next)), std::memory_order_release);
  }

 private:
  std::atomic<uint8_t> health_{static_cast<uint8_t>(Health::unknown)};
  std::atomic<bool> leader_{false};
  std::atomic<std::shared_ptr<const HealthSnapshot>> snapshot_;
};

}  // namespace sidemux::upstream
