// Metrics: one Registry per worker (written only by that worker's thread) plus
// one for the server's main thread. A scrape, on any thread, sums the same
// series across all registries (metrics_text.h renders them).
//
// Values are relaxed atomics so a scrape from another thread is race-free
// without a lock on the hot path; only creating a series takes the registry's
// mutex, so callers look a series up once (per listener, per member) and keep
// the reference, which stays valid for the registry's lifetime.
#pragma once

#include <atomic>
#include <functional>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace sidemux::metrics {

enum class Type { counter, gauge, histogram };
std::string_view type_name(Type type);

// Misuse of the API is a bug in the caller: says so on stderr and aborts.
[[noreturn]] void fail(std::string_view family, std::string_view what);

// A metric family: name, help, type and label names. Families are immutable
// definitions, declared once in proxy/core/metric_names.h.
struct Family {
  std::string_view name;
  std::string_view help;
  Type type;
  std::vector<std::string_view> label_names;
  std::vector<double> buckets = {};  // histogram upper bounds, ascending, without +Inf
};

class Counter {
 public:
  void inc(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void inc(int64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  void dec(int64_t n = 1) { v_.fetch_sub(n, std::memory_order_relaxed); }
  void set(int64_t n) { v_.store(n, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

class Histogram {
 public:
  explicit Histogram(const std::vector<double>& bounds);
  void observe(double v);
  // Non-cumulative count of bucket i; i == bounds.size() is the +Inf bucket.
  uint64_t bucket(size_t i) const { return counts_[i].load(std::memory_order_relaxed); }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double>& bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

class Registry {
 public:
  // Out of line because both destroy series_, and Series is only complete in
  // metrics.cc.
  Registry();
  ~Registry();

  // Finds or creates the series of `family` with these label values (same
  // count and order as family.label_names). The reference stays valid for the
  // lifetime of the registry. `family` must outlive the registry.
  Counter& counter(const Family& family, std::initializer_list<std::string_view> labels = {});
  Gauge& gauge(const Family& family, std::initializer_list<std::string_view> labels = {});
  Histogram& histogram(const Family& family, std::initializer_list<std::string_view> labels = {});

  // Value of one series if it exists, else 0 (tests and /debug/vars).
  uint64_t counter_value(const Family& family, std::initializer_list<std::string_view> labels = {}) const;
  int64_t gauge_value(const Family& family, std::initializer_list<std::string_view> labels = {}) const;

 private:
  friend struct RegistryAccess;
  struct Series;
  using Key = std::pair<const Family*, std::vector<std::string>>;
  Series& find_or_create(const Family& family, std::initializer_list<std::string_view> labels);
  const Series* find(const Family& family, std::initializer_list<std::string_view> labels) const;

  mutable std::mutex mu_;
  std::map<Key, std::unique_ptr<Series>> series_;
};

using Metric = std::variant<Counter, Gauge, Histogram>;

// Visits every series of a registry under its lock (for the scrape).
struct RegistryAccess {
  using Visit = std::function<void(const Family*, const std::vector<std::string>&, const Metric&)>;
  void operator()(const Registry& r, const Visit& fn) const;
};

}  // namespace sidemux::metrics
