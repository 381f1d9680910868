// Structured logging: one JSON object (or one human line) per event on
// stderr. Each line is written with a single write(2) so lines from several
// worker threads never interleave.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "conf/config.h"

namespace sidemux::core {

// One key/value of a log line. Holds views: build fields inline in the call.
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

  void append_json(std::string& out) const;
  void append_text(std::string& out) const;

 private:
  enum class Kind { str, num, dbl, boolean };
  std::string_view key_;
  std::string_view str_;
  int64_t num_ = 0;
  double dbl_ = 0;
  Kind kind_;
};

class Logger {
 public:
  explicit Logger(int fd = 2) : fd_(fd) {}

  // Level and format may change on reload while workers log.
  void configure(const conf::Log& log);
  bool enabled(conf::LogLevel level) const { return level >= level_.load(std::memory_order_relaxed); }
  bool access_log() const { return access_log_.load(std::memory_order_relaxed); }

  void log(conf::LogLevel level, std::string_view msg, std::initializer_list<LogField> fields = {}) const;
  void debug(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(conf::LogLevel::debug, msg, f); }
  void info(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(conf::LogLevel::info, msg, f); }
  void warn(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(conf::LogLevel::warn, msg, f); }
  void error(std::string_view msg, std::initializer_list<LogField> f = {}) const { log(conf::LogLevel::error, msg, f); }

 private:
  int fd_;
  std::atomic<conf::LogLevel> level_{conf::LogLevel::info};
  std::atomic<conf::LogFormat> format_{conf::LogFormat::json};
  std::atomic<bool> access_log_{true};
};

// Appends `s` as the body of a JSON string (without quotes).
void append_json_escaped(std::string& out, std::string_view s);

}  // namespace sidemux::core
