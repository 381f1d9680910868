// Structured logging: one JSON object (or one human line) per event on
// stderr. A line is formatted into a buffer of the calling thread, copied
// whole into a bounded LogRing and written out by the logger's own thread, so
// a log line never waits for stderr (a log shipper under backpressure) and
// lines from several threads never interleave. A line that finds the ring
// full is dropped and counted in sidemux_log_lines_dropped_total.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "conf/config.h"
#include "proxy/core/metrics.h"

namespace sidemux::core {

// One key/value of a log line. Holds views: build fields inline in the call.
// The key is an identifier from the code (written as is); values are escaped.
class LogField {
 public:
  LogField(std::string_view key, std::string_view v) : key_(key), str_(v), kind_(Kind::str) {}
  LogField(std::string_view key, const char* v) : LogField(key, std::string_view(v)) {}
  LogField(std::string_view key, const std::string& v) : LogField(key, std::string_view(v)) {}
  LogField(std::string_view key, bool v) : key_(key), num_(v), kind_(Kind::boolean) {}
  LogField(std::string_view key, int v) : key_(key), num_(v), kind_(Kind::num) {}
  LogField(std::string_view key, long v) : key_(key), num_(v), kind_(Kind::num) {}
  LogField(std::string_view key, long long v) : key_(key), num_(v), kind_(Kind::num) {}
  LogField(std::string_view key, unsigned v) : key_(key), num_(v), kind_(Kind::num) {}
  LogField(std::string_view key, unsigned long v) : key_(key), num_(static_cast<int64_t>(v)), kind_(Kind::num) {}
  LogField(std::string_view key, unsigned long long v) : key_(key), num_(static_cast<int64_t>(v)), kind_(Kind::num) {}
  LogField(std::string_view key, double v) : key_(key), dbl_(v), kind_(Kind::dbl) {}

  // The most bytes write_json() or write_text() may write.
  size_t max_size() const;
  // Write the field (with its leading separator) at `p`, which has
  // max_size() bytes of room; return the end.
  char* write_json(char* p) const;
  char* write_text(char* p) const;

 private:
  enum class Kind { str, num, dbl, boolean };
  std::string_view key_;
  std::string_view str_;
  int64_t num_ = 0;
  double dbl_ = 0;
  Kind kind_;
};

class LogRing;

class Logger {
 public:
  // A quarter of a second of access lines at 4k requests per second: enough
  // to ride out the writer's scheduling and a short stall of the reader;
  // longer stalls lose lines (counted) rather than memory or the loop.
  static constexpr size_t kBufferBytes = 256 << 10;
  // How long the exit flush waits for a reader that takes no bytes at all.
  static constexpr std::chrono::milliseconds kFlushStall{2000};

  // Starts the writer thread; lines logged from here on are queued. fd < 0
  // discards every line (tests that need no log).
  explicit Logger(int fd = 2, size_t buffer_bytes = kBufferBytes);
  // Flushes (see flush()) and joins the writer. A writer still blocked on a
  // reader that took nothing for kFlushStall is left behind: the process is
  // exiting, and it owns what it uses.
  ~Logger();
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  // Level and format may change on reload while workers log.
  void configure(const conf::Log& log);
  bool enabled(conf::LogLevel level) const { return level >= level_.load(std::memory_order_relaxed); }
  bool access_log() const { return access_log_.load(std::memory_order_relaxed); }

  void log(conf::LogLevel level, std::string_view msg, std::initializer_list<LogField> fields = {}) const;
  void debug(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(conf::LogLevel::debug, msg, f); }
  void info(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(conf::LogLevel::info, msg, f); }
  void warn(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(conf::LogLevel::warn, msg, f); }
  void error(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(conf::LogLevel::error, msg, f); }

  // Waits until every line logged before the call is written, or until the
  // reader took nothing for kFlushStall. For exits that skip ~Logger (abort).
  void flush() const;

  uint64_t lines_dropped() const { return dropped_.value(); }
  // Holds sidemux_log_lines_dropped_total, for /metrics and /debug/vars.
  const metrics::Registry& metrics() const { return registry_; }

 private:
  metrics::Registry registry_;
  metrics::Counter& dropped_;
  std::shared_ptr<LogRing> ring_;  // shared with the writer thread, which may outlive us
  std::thread writer_;
  std::atomic<conf::LogLevel> level_{conf::LogLevel::info};
  std::atomic<conf::LogFormat> format_{conf::LogFormat::json};
  std::atomic<bool> access_log_{true};
};

// Appends `s` as the body of a JSON string (without quotes).
void append_json_escaped(std::string& out, std::string_view s);

}  // namespace sidemux::core
