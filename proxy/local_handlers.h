// The endpoints sidemux answers itself, free of protocol: the HTTP/1 and
// HTTP/2 sessions turn a LocalRequest into a LocalResponse through here.
#pragma once

#include <chrono>
#include <span>
#include <string>
#include <string_view>

#include "conf/config.h"
#include "proxy/core/metrics.h"
#include "upstream/cluster.h"

struct sockaddr;

namespace sidemux {

struct LocalRequest {
  std::string_view method;
  std::string_view target;  // path with optional query
  const struct sockaddr* peer;
};

struct LocalResponse {
  int status = 200;
  std::string_view content_type = "text/plain; charset=utf-8";
  std::string body;
  bool method_not_allowed() const { return status == 405; }  // then send Allow: kAllow
};

inline constexpr std::string_view kAllow = "GET, HEAD";

// What the handlers read: the worker that owns the connection provides it.
struct LocalContext {
  const conf::Config& config;
  const upstream::Cluster& cluster;
  std::span<const metrics::Registry* const> registries;  // every worker's, for /metrics
  metrics::Registry& registry;                            // this worker's, to count requests
  std::chrono::steady_clock::time_point started;
  bool listening;
  unsigned workers;
};

// True when the path (query ignored) is one of the local endpoints; over
// HTTP/2 every other path is forwarded to a member.
bool is_local_path(std::string_view target);

LocalResponse handle_local(const LocalRequest& req, const LocalContext& ctx);

std::string_view reason_phrase(int status);

}  // namespace sidemux
