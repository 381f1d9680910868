// Active health checking of one member, once for the process (on the
// checker's loop: health_board.h): every health_check.interval
// grpc.health.v1.Health/Check with service "", or for kind etcd
// etcdserverpb.Maintenance/Status (etcd's health service says SERVING even
// without a leader), over the member's pooled HTTP/2 connections, failed
// when no answer came within health_check.timeout. The Member turns results
// into its health with the configured thresholds.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "upstream/shared_health.h"
#include "upstream/stream_handler.h"

namespace sidemux::core {
class LoopContext;
}

namespace sidemux::upstream {

class Member;
class UpstreamSession;

// What one health check found.
struct CheckResult {
  bool ok = false;
  std::string reason;
  bool lost_leader = false;      // etcd: a Status answer naming no leader
  std::optional<EtcdView> etcd;  // etcd: the Status answer, when one came
};

class HealthCheck final : public StreamHandler {
 public:
  HealthCheck(core::LoopContext& context, Member& member);
  ~HealthCheck() override;
  HealthCheck(const HealthCheck&) = delete;
  HealthCheck& operator=(const HealthCheck&) = delete;

  void start();  // the first check runs at once
  void stop();   // cancel a check in flight; the timer closes on a later turn
  // The next check at once, unless one is under way or one went out less
  // than kMinGapMs ago (answers of many streams may ask for it together).
  void run_soon();
  bool closed() const { return closed_; }

  static constexpr uint64_t kMinGapMs = 20;

  // What a check's answer means; exposed for unit tests.
  // grpc-status -1 means the answer carried none. UNIMPLEMENTED counts as
  // healthy: the member answers gRPC but registers no health service.
  static CheckResult judge(int http_status, int grpc_status, std::span<const uint8_t> body);
  // etcd's StatusResponse: passes with a leader and as a voting member.
  static CheckResult judge_etcd(std::string_view member, int http_status, int grpc_status,
                                std::span<const uint8_t> body);

  // StreamHandler, in the order of a check: request out, answer in.
  ssize_t read_request_body(size_t len, uint32_t* data_flags) override;
  core::ByteQueue::Tail request_body_front() const override { return request_.from(request_sent_); }
  void on_request_body_sent(size_t n) override;
  void on_response_header(std::string_view name, std::string_view value, bool trailer) override;
  void on_response_headers_end(bool trailer, bool end_stream) override;
  void on_response_data(const uint8_t* data, size_t len, bool end_stream) override;
  void on_upstream_close(Close kind, uint32_t error_code, std::string_view reason) override;

 private:
  static void on_timer(uv_timer_t* t);
  void run();
  // The next check after `next_ms`, by default health_check.interval.
  void finish(CheckResult verdict, std::optional<uint64_t> next_ms = std::nullopt);
  void arm(uint64_t ms);

  core::LoopContext& context_;
  Member& member_;
  uv_timer_t timer_;  // next check, or the timeout of the one in flight
  UpstreamSession* session_ = nullptr;
  int32_t stream_id_ = -1;
  bool in_flight_ = false;
  uint64_t started_ = 0;  // uv_now() when the check in flight went out
  bool stopped_ = false;
  bool closed_ = false;  // the timer's close callback ran
  size_t request_sent_ = 0;
  int http_status_ = 0;
  int grpc_status_ = -1;
  std::string grpc_message_;
  bool etcd_;  // kind etcd at construction: Maintenance/Status checks
  core::ByteQueue request_;  // the check's request body, for the data provider
  // A HealthCheckResponse is 2 bytes after its 5-byte prefix; a
  // StatusResponse about 100, plus its errors. A longer answer is cut here
  // and fails to decode: a member cannot make a check buffer more.
  std::array<uint8_t, 4096> body_;
  size_t body_len_ = 0;
};

}  // namespace sidemux::upstream
