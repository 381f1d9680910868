// The configuration as one immutable generation. A reload builds a whole new
// Config; streams keep the shared_ptr of the generation they started with.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct sockaddr;

namespace sidemux::conf {

using Duration = std::chrono::milliseconds;

// host:port or [v6]:port. host is kept as written (without brackets); for
// listeners it must be an IP literal, members may name a DNS host.
struct HostPort {
  std::string host;
  uint16_t port = 0;
  bool ipv6 = false;  // written in brackets
  std::string to_string() const;  // re-adds brackets for IPv6
};

// An address range of admin.allow, e.g. 127.0.0.0/8 or ::1/128.
struct Cidr {
  bool ipv6 = false;
  std::array<uint8_t, 16> bytes{};  // network order; IPv4 uses the first 4
  uint8_t prefix_len = 0;
  // IPv4-mapped IPv6 peers (::ffff:a.b.c.d) match IPv4 ranges.
  bool contains(const struct sockaddr* addr) const;
};

struct ListenerTls {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // empty: no client certificates asked for
  bool require_tls = true;
};

struct Listener {
  std::string name;
  HostPort address;
  std::optional<ListenerTls> tls;
};

struct Member {
  std::string name;
  HostPort address;
};

enum class Balance { least_request, round_robin };

// grpc: any gRPC servers. etcd: etcd servers, whose Status answers drive
// health and leader routing (SPEC "etcd members").
enum class ClusterKind { grpc, etcd };

struct UpstreamTls {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string server_name;
};

struct HealthCheck {
  Duration interval{std::chrono::seconds(5)};
  Duration timeout{std::chrono::seconds(1)};
  uint32_t unhealthy_threshold = 3;
  uint32_t healthy_threshold = 2;
};

struct Outlier {
  uint32_t consecutive_failures = 5;
  Duration ejection_time{std::chrono::seconds(30)};
};

struct Retry {
  // Extra members for a stream that never reached one. Each attempt takes
  // another member, and a stream remembers the members it tried in fixed
  // room (upstream::TriedMembers), so the count is bounded.
  static constexpr uint32_t kMaxAttempts = 3;
  uint32_t attempts = 2;
};

struct Etcd {
  bool leader_routing = true;  // write methods go to the current leader
};

struct Cluster {
  std::string name = "etcd";
  ClusterKind kind = ClusterKind::grpc;
  std::vector<Member> members;
  Balance balance = Balance::least_request;
  // HTTP/1 request paths starting with one of these go to a member. Absent
  // from the file: none for kind grpc, etcd's gateway prefixes for kind etcd.
  std::vector<std::string> http1_forward;
  std::optional<Etcd> etcd;  // set exactly when kind is etcd (defaults if the block is absent)
  Duration connect_timeout{std::chrono::seconds(2)};
  uint32_t max_streams_per_connection = 100;
  std::optional<UpstreamTls> tls;
  HealthCheck health_check;
  Outlier outlier;
  Retry retry;
};

struct Limits {
  uint32_t max_connections = 10000;
  uint32_t max_concurrent_streams = 256;
  Duration classify_timeout{std::chrono::seconds(10)};
  Duration idle_timeout{std::chrono::minutes(5)};
  uint32_t max_header_list_size = 65536;
  uint32_t max_http1_request_bytes = 16384;
  Duration drain_timeout{std::chrono::seconds(30)};
  Duration keepalive_interval{std::chrono::seconds(30)};
  Duration keepalive_timeout{std::chrono::seconds(10)};
};

struct Reload {
  bool watch = false;  // reload on a change to the file or a file it names
};

struct Admin {
  std::vector<Cidr> allow;  // default: 127.0.0.0/8 and ::1/128
  bool allows(const struct sockaddr* addr) const;
};

enum class LogLevel { debug, info, warn, error };
enum class LogFormat { json, text };

struct Log {
  LogLevel level = LogLevel::info;
  LogFormat format = LogFormat::json;
  bool access_log = true;
};

struct Config {
  std::string source;      // file name the config came from
  uint64_t generation = 0; // 1 for the first load, +1 per successful reload
  std::vector<Listener> listeners;
  unsigned workers = 0;    // "auto" (the default) is resolved to the CPU count at load time
  Cluster cluster;
  Limits limits;
  Reload reload;
  Admin admin;
  Log log;
};

// Either a config or one line "FILE:LINE:COL: KEY: problem" (1-based line and
// column; KEY is the dotted path such as cluster.members[1].address).
struct LoadResult {
  std::shared_ptr<const Config> config;
  std::string error;
  explicit operator bool() const { return config != nullptr; }
};

LoadResult load_file(const std::string& path, uint64_t generation = 1);
// `source` stands in for the file name in errors.
LoadResult load_string(std::string_view yaml, const std::string& source, uint64_t generation = 1);

// Exposed for reuse and unit tests. Each returns false on malformed input.
bool parse_duration(std::string_view text, Duration& out);  // 250ms, 5s, 5m, 1h
bool parse_host_port(std::string_view text, HostPort& out);
bool parse_cidr(std::string_view text, Cidr& out);

const char* to_string(LogLevel level);
const char* to_string(Balance balance);
const char* to_string(ClusterKind kind);

}  // namespace sidemux::conf
