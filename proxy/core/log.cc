#include "proxy/core/log.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace sidemux::core {

void append_json_escaped(std::string& out, std::string_view s) {
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
}

namespace {

void append_number(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_double(std::string& out, double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// RFC 3339 UTC with milliseconds, what log shippers parse without help.
void append_timestamp(std::string& out) {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms % 1000));
  out += buf;
}

}  // namespace

void LogField::append_json(std::string& out) const {
  out += ",\"";
  append_json_escaped(out, key_);
  out += "\":";
  switch (kind_) {
    case Kind::str:
      out += '"';
      append_json_escaped(out, str_);
      out += '"';
      break;
    case Kind::num: append_number(out, num_); break;
    case Kind::dbl: append_double(out, dbl_); break;
    case Kind::boolean: out += num_ ? "true" : "false"; break;
  }
}

void LogField::append_text(std::string& out) const {
  out += ' ';
  out += key_;
  out += '=';
  switch (kind_) {
    case Kind::str: out += str_; break;
    case Kind::num: append_number(out, num_); break;
    case Kind::dbl: append_double(out, dbl_); break;
    case Kind::boolean: out += num_ ? "true" : "false"; break;
  }
}

void Logger::configure(const conf::Log& log) {
  level_.store(log.level, std::memory_order_relaxed);
  format_.store(log.format, std::memory_order_relaxed);
  access_log_.store(log.access_log, std::memory_order_relaxed);
}

void Logger::log(conf::LogLevel level, std::string_view msg, std::initializer_list<LogField> fields) const {
  if (!enabled(level)) return;
  std::string line;
  line.reserve(256);
  if (format_.load(std::memory_order_relaxed) == conf::LogFormat::json) {
    line += "{\"ts\":\"";
    append_timestamp(line);
    line += "\",\"level\":\"";
    line += conf::to_string(level);
    line += "\",\"msg\":\"";
    append_json_escaped(line, msg);
    line += '"';
    for (const auto& f : fields) f.append_json(line);
    line += "}\n";
  } else {
    append_timestamp(line);
    line += ' ';
    line += conf::to_string(level);
    line += ' ';
    line += msg;
    for (const auto& f : fields) f.append_text(line);
    line += '\n';
  }
  // stderr is normally a pipe to the container runtime; a short write there
  // is retried, an error is dropped (there is nowhere left to report it).
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace sidemux::core
