#include "proxy/core/metrics_text.h"

#include <charconv>
#include <cmath>
#include <concepts>
#include <limits>
#include <map>
#include <string>
#include <variant>

#include "proxy/core/process_stats.h"

namespace sidemux::metrics {

namespace {

// One series summed over all registries; only the fields of its type are used.
struct Totals {
  uint64_t counter = 0;
  int64_t gauge = 0;
  std::vector<uint64_t> buckets;  // non-cumulative, last one is +Inf
  double sum = 0;

  void add(const Counter& c) { counter += c.value(); }
  void add(const Gauge& g) { gauge += g.value(); }
  void add(const Histogram& h) {
    buckets.resize(h.bounds().size() + 1);
    for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += h.bucket(i);
    sum += h.sum();
  }
};

struct FamilyTotals {
  const Family* family = nullptr;
  std::map<std::vector<std::string>, Totals> series;  // by label values
};

bool same_definition(const Family& a, const Family& b) {
  return a.type == b.type && a.help == b.help && a.label_names == b.label_names && a.buckets == b.buckets;
}

// HELP text escapes backslash and newline; label values also escape '"'.
void append_escaped(std::string& out, std::string_view s, bool quote) {
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

void append_number(std::string& out, std::integral auto v) {
  char buf[24];
  auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  out.append(buf, end);
}

// Shortest round-trip form, so bucket bounds read le="0.005" and not
// 0.0050000000000000001; Prometheus parses both plain and exponent forms.
void append_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
    out.append(buf, end);
  }
}

void append_header(std::string& out, std::string_view name, std::string_view help, Type type) {
  out += "# HELP ";
  out += name;
  out += ' ';
  append_escaped(out, help, false);
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type_name(type);
  out += '\n';
}

// One sample line: name+suffix, the series' labels plus `le` when not empty.
void append_sample(std::string& out, std::string_view name, std::string_view suffix,
                   const std::vector<std::string_view>& label_names, const std::vector<std::string>& label_values,
                   std::string_view le, auto value) {
  out += name;
  out += suffix;
  if (!label_names.empty() || !le.empty()) {
    char sep = '{';
    auto label = [&](std::string_view label_name, std::string_view label_value) {
      out += sep;
      out += label_name;
      out += "=\"";
      append_escaped(out, label_value, true);
      out += '"';
      sep = ',';
    };
    for (size_t i = 0; i < label_names.size(); ++i) label(label_names[i], label_values[i]);
    if (!le.empty()) label("le", le);
    out += '}';
  }
  out += ' ';
  append_number(out, value);
  out += '\n';
}

void append_histogram(std::string& out, const Family& f, const std::vector<std::string>& labels, const Totals& t) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < t.buckets.size(); ++i) {
    cumulative += t.buckets[i];
    std::string le;
    append_number(le, i < f.buckets.size() ? f.buckets[i] : std::numeric_limits<double>::infinity());
    append_sample(out, f.name, "_bucket", f.label_names, labels, le, cumulative);
  }
  append_sample(out, f.name, "_sum", f.label_names, labels, {}, t.sum);
  // _count is the +Inf bucket rather than Histogram::count(): observe() runs
  // concurrently with the scrape, and the format requires the two to agree.
  append_sample(out, f.name, "_count", f.label_names, labels, {}, cumulative);
}

void append_family(std::string& out, const FamilyTotals& ft) {
  const Family& f = *ft.family;
  append_header(out, f.name, f.help, f.type);
  for (const auto& [labels, t] : ft.series) {
    switch (f.type) {
      case Type::counter: append_sample(out, f.name, {}, f.label_names, labels, {}, t.counter); break;
      case Type::gauge: append_sample(out, f.name, {}, f.label_names, labels, {}, t.gauge); break;
      case Type::histogram: append_histogram(out, f, labels, t); break;
    }
  }
}

void append_process_metric(std::string& out, std::string_view name, std::string_view help, Type type,
                           auto value) {
  append_header(out, name, help, type);
  append_sample(out, name, {}, {}, {}, {}, value);
}

void append_process_metrics(std::string& out) {
  ProcessStats ps = read_process_stats();
  append_process_metric(out, "process_resident_memory_bytes", "Resident memory size in bytes.", Type::gauge,
                        ps.resident_memory_bytes);
  append_process_metric(out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                        Type::counter, ps.cpu_seconds);
  append_process_metric(out, "process_open_fds", "Number of open file descriptors.", Type::gauge, ps.open_fds);
  append_process_metric(out, "process_start_time_seconds",
                        "Start time of the process since unix epoch in seconds.", Type::gauge,
                        ps.start_time_seconds);
}

}  // namespace

namespace {

// Every family's series summed across registries, keyed by name so that
// families sort by name and two identical definitions of one family (say, in
// two libraries) merge.
std::map<std::string_view, FamilyTotals> merge(std::span<const Registry* const> registries,
                                               const auto& series_of) {
  std::map<std::string_view, FamilyTotals> families;
  for (const Registry* r : registries) {
    series_of(*r, [&](const Family* family, const std::vector<std::string>& labels, const auto& metric) {
      FamilyTotals& ft = families[family->name];
      if (!ft.family) {
        ft.family = family;
      } else if (ft.family != family && !same_definition(*ft.family, *family)) {
        fail(family->name, "defined twice with different type, help, labels or buckets");
      }
      Totals& t = ft.series[labels];
      std::visit([&t](const auto& m) { t.add(m); }, metric);
    });
  }
  return families;
}

}  // namespace

std::string render(std::span<const Registry* const> registries) {
  std::string out;
  for (const auto& [name, ft] : merge(registries, RegistryAccess{})) append_family(out, ft);
  append_process_metrics(out);
  return out;
}

std::vector<std::pair<std::string, double>> snapshot(std::span<const Registry* const> registries) {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& [name, ft] : merge(registries, RegistryAccess{})) {
    const Family& f = *ft.family;
    if (f.type == Type::histogram) continue;
    for (const auto& [labels, t] : ft.series) {
      // The exposition line without its value is the key.
      std::string line;
      append_sample(line, f.name, {}, f.label_names, labels, {}, 0);
      line.resize(line.rfind(' '));
      out.emplace_back(std::move(line), f.type == Type::counter ? static_cast<double>(t.counter)
                                                                : static_cast<double>(t.gauge));
    }
  }
  return out;
}

}  // namespace sidemux::metrics
