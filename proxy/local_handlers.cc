#include "proxy/local_handlers.h"

#include <array>
#include <cstdio>

#include "proxy/core/log.h"
#include "proxy/core/metric_names.h"
#include "proxy/core/metrics_text.h"
#include "proxy/core/process_stats.h"
#include "proxy/version.h"

namespace sidemux {

namespace {

enum class Endpoint { health, livez, readyz, version, metrics, debug_vars, none };

struct Route {
  std::string_view path;
  Endpoint endpoint;
  bool admin_only;
};

constexpr std::array<Route, 6> kRoutes = {{
    {"/health", Endpoint::health, false},
    {"/livez", Endpoint::livez, false},
    {"/readyz", Endpoint::readyz, false},
    {"/version", Endpoint::version, false},
    {"/metrics", Endpoint::metrics, true},
    {"/debug/vars", Endpoint::debug_vars, true},
}};

// Asked of every request's :path, so the target is not scanned for its
// query first: a route matches when the target starts with it and goes on,
// if at all, with the query or fragment.
const Route* find_route(std::string_view target) {
  for (const auto& r : kRoutes) {
    if (!target.starts_with(r.path)) continue;
    if (target.size() == r.path.size() || target[r.path.size()] == '?' || target[r.path.size()] == '#') return &r;
  }
  return nullptr;
}

LocalResponse text(int status, std::string body) {
  return {status, "text/plain; charset=utf-8", std::move(body)};
}

LocalResponse json(int status, std::string body) {
  return {status, "application/json", std::move(body)};
}

std::string quoted(std::string_view s) {
  std::string out = "\"";
  core::append_json_escaped(out, s);
  out += '"';
  return out;
}

LocalResponse health(const LocalContext& ctx) {
  auto verdict = ctx.cluster.health();
  // etcd's alarms (NOSPACE, CORRUPT) fail /health as etcd's own /health
  // does, but no member: reads and deletes still work (/readyz stays up).
  if (verdict.healthy) verdict.reason = ctx.cluster.alarms();
  if (verdict.healthy && verdict.reason.empty()) return json(200, "{\"health\":\"true\",\"reason\":\"\"}");
  return json(503, "{\"health\":\"false\",\"reason\":" + quoted(verdict.reason) + "}");
}

LocalResponse readyz(const LocalContext& ctx) {
  if (!ctx.listening) return text(503, "not ready: listeners are not bound\n");
  auto verdict = ctx.cluster.health();
  if (!verdict.healthy) return text(503, "not ready: " + verdict.reason + "\n");
  return text(200, "ok");
}

std::string format_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

// Counters print as integers; fractional values keep millisecond precision.
std::string format_number(double v) {
  if (v == static_cast<double>(static_cast<int64_t>(v))) return std::to_string(static_cast<int64_t>(v));
  return format_double(v);
}

// etcd's view of a member from its last Status answer; ids in hex, as
// etcdctl prints them (and exact, which a JSON number past 2^53 is not).
std::string etcd_view_json(const upstream::EtcdView& v) {
  char id[17], leader[17];
  std::snprintf(id, sizeof id, "%llx", static_cast<unsigned long long>(v.member_id));
  std::snprintf(leader, sizeof leader, "%llx", static_cast<unsigned long long>(v.leader));
  std::string out = "{\"member_id\":" + quoted(id) + ",\"leader_id\":" + quoted(leader) +
                    ",\"raft_term\":" + std::to_string(v.raft_term) +
                    ",\"learner\":" + (v.learner ? "true" : "false") + ",\"alarms\":[";
  for (size_t i = 0; i < v.alarms.size(); ++i) out += (i > 0 ? "," : "") + quoted(v.alarms[i]);
  return out + "],\"db_size\":" + std::to_string(v.db_size) + "}";
}

LocalResponse debug_vars(const LocalContext& ctx) {
  auto process = metrics::read_process_stats();
  double uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - ctx.started).count();
  std::string out = "{\"config_generation\":" + std::to_string(ctx.config.generation) +
                    ",\"config_source\":" + quoted(ctx.config.source) +
                    ",\"workers\":" + std::to_string(ctx.workers) +
                    ",\"uptime_seconds\":" + format_double(uptime) +
                    ",\"rss_bytes\":" + std::to_string(process.resident_memory_bytes) +
                    ",\"open_fds\":" + std::to_string(process.open_fds) + ",\"counters\":{";
  bool first = true;
  for (const auto& [series, value] : metrics::snapshot(ctx.registries)) {
    if (!first) out += ',';
    first = false;
    out += quoted(series) + ":" + format_number(value);
  }
  out += "},\"members\":[";
  first = true;
  for (const auto& m : ctx.cluster.members()) {
    if (!first) out += ',';
    first = false;
    auto snapshot = m->health_snapshot();
    out += "{\"name\":" + quoted(m->name()) + ",\"address\":" + quoted(m->address().to_string()) +
           ",\"health\":" + quoted(to_string(snapshot->health)) + ",\"reason\":" + quoted(snapshot->reason) +
           ",\"active_streams\":" + std::to_string(m->active_streams());
    if (snapshot->etcd) out += ",\"leader\":" + std::string(m->leader() ? "true" : "false") +
                               ",\"etcd\":" + etcd_view_json(*snapshot->etcd);
    out += "}";
  }
  out += "]}";
  return json(200, std::move(out));
}

LocalResponse dispatch(const Route& route, const LocalContext& ctx) {
  switch (route.endpoint) {
    case Endpoint::health: return health(ctx);
    case Endpoint::livez: return text(200, "ok");
    case Endpoint::readyz: return readyz(ctx);
    case Endpoint::version: return json(200, version_json());
    case Endpoint::metrics:
      return {200, "text/plain; version=0.0.4; charset=utf-8", metrics::render(ctx.registries)};
    case Endpoint::debug_vars: return debug_vars(ctx);
    case Endpoint::none: break;
  }
  return text(404, "not found\n");
}

LocalResponse route_request(const LocalRequest& req, const LocalContext& ctx) {
  const Route* route = find_route(req.target);
  if (!route) return text(404, "not found\n");
  if (req.method != "GET" && req.method != "HEAD") return text(405, "method not allowed\n");
  if (route->admin_only && !(req.peer && ctx.config.admin.allows(req.peer)))
    return text(403, "forbidden: address not in admin.allow\n");
  return dispatch(*route, ctx);
}

}  // namespace

bool is_local_path(std::string_view target) { return find_route(target) != nullptr; }

LocalResponse handle_local(const LocalRequest& req, const LocalContext& ctx) {
  LocalResponse resp = route_request(req, ctx);
  const Route* route = find_route(req.target);
  // Unknown paths share one label so a scanner cannot grow the series set.
  std::string_view path_label = route ? route->path : "other";
  ctx.registry.counter(metrics::kHttpRequests, {path_label, std::to_string(resp.status)}).inc();
  return resp;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
  }
  return "Unknown";
}

}  // namespace sidemux
