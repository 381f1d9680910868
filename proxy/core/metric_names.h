// The metric families of the SPEC. Their names and labels are part of the
// external contract: change them only together with ../shared/SPEC.md.
#pragma once

#include "proxy/core/metrics.h"

namespace sidemux::metrics {

// One family per line: name, help, type, labels (and buckets).
inline const Family kConnectionsAccepted{"sidemux_connections_accepted_total", "Client connections accepted and classified.", Type::counter, {"listener", "protocol", "tls"}};
inline const Family kConnectionsActive{"sidemux_connections_active", "Classified client connections currently open.", Type::gauge, {"listener", "protocol", "tls"}};
inline const Family kConnectionsRejected{"sidemux_connections_rejected_total", "Client connections closed before or while being classified.", Type::counter, {"listener", "reason"}};
inline const Family kHttpRequests{"sidemux_http_requests_total", "Requests answered by the local handlers.", Type::counter, {"path", "code"}};
inline const Family kStreamsActive{"sidemux_streams_active", "HTTP/2 streams open on client connections.", Type::gauge, {}};
inline const Family kUpstreamStreams{"sidemux_upstream_streams_total", "Proxied streams by member and final grpc-status.", Type::counter, {"member", "grpc_status"}};
inline const Family kUpstreamStreamDuration{"sidemux_upstream_stream_duration_seconds", "Duration of proxied streams.", Type::histogram, {"member"}, {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600}};
inline const Family kUpstreamRetries{"sidemux_upstream_retries_total", "Streams retried on another member.", Type::counter, {"member", "reason"}};
inline const Family kUpstreamHttpRequests{"sidemux_upstream_http_requests_total", "Forwarded HTTP/1 requests by member and response status.", Type::counter, {"member", "code"}};
inline const Family kUpstreamConnectionsActive{"sidemux_upstream_connections_active", "Open connections to a member (HTTP/2, and HTTP/1.1 for forwarded HTTP/1).", Type::gauge, {"member"}};
inline const Family kMemberUp{"sidemux_member_up", "1 when the member is healthy, else 0 (one health checker per process).", Type::gauge, {"member"}};
inline const Family kMemberActiveStreams{"sidemux_member_active_streams", "Streams open to a member.", Type::gauge, {"member"}};
inline const Family kConfigReloads{"sidemux_config_reloads_total", "Config reloads by result.", Type::counter, {"result"}};
inline const Family kConfigGeneration{"sidemux_config_generation", "Generation number of the config in force.", Type::gauge, {}};
inline const Family kBytes{"sidemux_bytes_total", "Bytes moved, by side and direction.", Type::counter, {"side", "direction"}};
inline const Family kEtcdLeader{"sidemux_etcd_leader", "1 for the member the last Status round named leader (kind etcd).", Type::gauge, {"member"}};
inline const Family kEtcdRouted{"sidemux_etcd_routed_total", "Write streams by where they went: the leader, or the balancer (kind etcd).", Type::counter, {"route"}};
inline const Family kLogLinesDropped{"sidemux_log_lines_dropped_total", "Log lines dropped because the log buffer was full.", Type::counter, {}};

}  // namespace sidemux::metrics
