#include "proxy/core/log.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "proxy/core/log_ring.h"
#include "proxy/core/metric_names.h"

namespace sidemux::core {

namespace {

// The bytes a JSON string cannot hold as they are.
constexpr std::array<bool, 256> kNeedsEscape = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = true;
  t['"'] = t['\\'] = true;
  return t;
}();

}  // namespace

void append_json_escaped(std::string& out, std::string_view s) {
  // Runs of bytes that need no escape go in one append: log values are
  // mostly plain ASCII.
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (!kNeedsEscape[c]) continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      }
    }
  }
  out.append(s.data() + run, s.size() - run);
}

namespace {

void append_number(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_double(std::string& out, double v) {
  // Durations in milliseconds rounded to microseconds (every access line)
  // print as integer digits: the same text as the shortest round-trip form
  // below, for a tenth of its cost. Such a value has at most 12 significant
  // digits, so no shorter decimal names the same double.
  if (v >= 0 && v < 1e9) {
    auto thousandths = static_cast<int64_t>(std::llround(v * 1000));
    if (static_cast<double>(thousandths) / 1000 == v) {
      append_number(out, thousandths / 1000);
      if (int64_t frac = thousandths % 1000) {
        char digits[4] = {'.', static_cast<char>('0' + frac / 100), static_cast<char>('0' + frac / 10 % 10),
                          static_cast<char>('0' + frac % 10)};
        size_t len = sizeof digits;
        while (digits[len - 1] == '0') --len;
        out.append(digits, len);
      }
      return;
    }
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// RFC 3339 UTC with milliseconds, what log shippers parse without help. The
// part up to the seconds is formatted once per second per thread.
void append_timestamp(std::string& out) {
  thread_local time_t cached_secs = -1;
  thread_local char cached[24];  // "2006-01-02T15:04:05."
  thread_local size_t cached_len = 0;
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(ms / 1000);
  if (secs != cached_secs) {
    struct tm tm;
    gmtime_r(&secs, &tm);
    cached_len = std::strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S.", &tm);
    cached_secs = secs;
  }
  out.append(cached, cached_len);
  int frac = static_cast<int>(ms % 1000);
  char tail[4] = {static_cast<char>('0' + frac / 100), static_cast<char>('0' + frac / 10 % 10),
                  static_cast<char>('0' + frac % 10), 'Z'};
  out.append(tail, sizeof tail);
}

// The writer thread: everything queued goes out in as few write(2) calls as
// the reader allows. An error drops the batch: there is nowhere left to
// report it.
void write_out(const std::shared_ptr<LogRing>& ring, int fd) {
  // Signals are for the loops; EINTR here would only cost a retry.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  iovec iov[2];
  while (int n = ring->wait_readable(iov)) {
    size_t total = iov[0].iov_len + iov[1].iov_len;
    iovec* at = iov;
    while (n > 0) {
      ssize_t w = ::writev(fd, at, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      // A short write (a pipe that had less room) resumes where it stopped.
      for (size_t left = static_cast<size_t>(w); n > 0 && left > 0;) {
        size_t step = std::min(left, at->iov_len);
        at->iov_base = static_cast<char*>(at->iov_base) + step;
        at->iov_len -= step;
        left -= step;
        if (at->iov_len == 0) ++at, --n;
      }
    }
    ring->consume(total);
  }
}

// The calling thread's line: cleared, never shrunk, so a steady state formats
// without allocating.
std::string& line_buffer() {
  thread_local std::string line = [] {
    std::string s;
    s.reserve(1024);
    return s;
  }();
  line.clear();
  return line;
}

}  // namespace

void LogField::append_json(std::string& out) const {
  // Keys are identifiers written in the code, never peer data: no escaping.
  out += ",\"";
  out += key_;
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

Logger::Logger(int fd, size_t buffer_bytes) : dropped_(registry_.counter(metrics::kLogLinesDropped)) {
  if (fd < 0) return;
  ring_ = std::make_shared<LogRing>(buffer_bytes);
  writer_ = std::thread(write_out, ring_, fd);
}

Logger::~Logger() {
  if (!ring_) return;
  bool drained = ring_->wait_drained(kFlushStall);
  ring_->close();
  if (drained) {
    writer_.join();
  } else {
    writer_.detach();
  }
}

void Logger::flush() const {
  if (ring_) ring_->wait_drained(kFlushStall);
}

void Logger::configure(const conf::Log& log) {
  level_.store(log.level, std::memory_order_relaxed);
  format_.store(log.format, std::memory_order_relaxed);
  access_log_.store(log.access_log, std::memory_order_relaxed);
}

void Logger::log(conf::LogLevel level, std::string_view msg, std::initializer_list<LogField> fields) const {
  if (!enabled(level) || !ring_) return;
  std::string& line = line_buffer();
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
  if (!ring_->push(line)) dropped_.inc();
}

}  // namespace sidemux::core
