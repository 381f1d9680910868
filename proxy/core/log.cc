#include "proxy/core/log.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
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

char* put(char* p, std::string_view s) {
  return std::copy(s.begin(), s.end(), p);
}

// The line is formatted by pointer into room reserved for its longest
// form (LogField::max_size()), then cut to what was written: an access line
// is some forty pieces, and appending each to a std::string (a capacity
// check and a call apiece) cost as much as the rest of the line together.

// Writes `s` as the body of a JSON string; at most 6 bytes per byte of `s`.
char* put_json_escaped(char* p, std::string_view s) {
  // Runs of bytes that need no escape go in one copy: log values are
  // mostly plain ASCII.
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (!kNeedsEscape[c]) continue;
    p = put(p, s.substr(run, i - run));
    run = i + 1;
    *p++ = '\\';
    switch (c) {
      case '"': *p++ = '"'; break;
      case '\\': *p++ = '\\'; break;
      case '\n': *p++ = 'n'; break;
      case '\r': *p++ = 'r'; break;
      case '\t': *p++ = 't'; break;
      default: {
        static constexpr char kHex[] = "0123456789abcdef";
        p = put(p, "u00");
        *p++ = kHex[c >> 4];
        *p++ = kHex[c & 0xf];
      }
    }
  }
  return put(p, s.substr(run));
}

constexpr size_t kNumberRoom = 24;  // an int64_t, a double's shortest form

char* put_number(char* p, int64_t v) { return std::to_chars(p, p + kNumberRoom, v).ptr; }

char* put_double(char* p, double v) {
  // Durations in milliseconds rounded to microseconds (every access line)
  // print as integer digits: the same text as the shortest round-trip form
  // below, for a tenth of its cost. Such a value has at most 12 significant
  // digits, so no shorter decimal names the same double.
  if (v >= 0 && v < 1e9) {
    auto thousandths = static_cast<int64_t>(std::llround(v * 1000));
    if (static_cast<double>(thousandths) / 1000 == v) {
      p = put_number(p, thousandths / 1000);
      if (int64_t frac = thousandths % 1000) {
        char digits[4] = {'.', static_cast<char>('0' + frac / 100), static_cast<char>('0' + frac / 10 % 10),
                          static_cast<char>('0' + frac % 10)};
        size_t len = sizeof digits;
        while (digits[len - 1] == '0') --len;
        p = put(p, {digits, len});
      }
      return p;
    }
  }
  return std::to_chars(p, p + kNumberRoom, v).ptr;
}

// RFC 3339 UTC with milliseconds, what log shippers parse without help. The
// part up to the seconds is formatted once per second per thread.
constexpr size_t kTimestampRoom = 24;  // "2006-01-02T15:04:05.000Z"

char* put_timestamp(char* p) {
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
  p = put(p, {cached, cached_len});
  int frac = static_cast<int>(ms % 1000);
  char tail[4] = {static_cast<char>('0' + frac / 100), static_cast<char>('0' + frac / 10 % 10),
                  static_cast<char>('0' + frac % 10), 'Z'};
  return put(p, {tail, sizeof tail});
}

}  // namespace

void append_json_escaped(std::string& out, std::string_view s) {
  size_t at = out.size();
  out.resize(at + 6 * s.size());
  out.resize(static_cast<size_t>(put_json_escaped(out.data() + at, s) - out.data()));
}

namespace {

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
    size_t unwritten = iov[0].iov_len + iov[1].iov_len;
    iovec* at = iov;
    while (n > 0) {
      ssize_t w = ::writev(fd, at, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      // Room goes back as bytes are written, not once the whole batch is:
      // under a slow reader, lines find it sooner instead of being dropped.
      ring->consume(static_cast<size_t>(w));
      unwritten -= static_cast<size_t>(w);
      // A short write (a pipe that had less room) resumes where it stopped.
      for (size_t left = static_cast<size_t>(w); n > 0 && left > 0;) {
        size_t step = std::min(left, at->iov_len);
        at->iov_base = static_cast<char*>(at->iov_base) + step;
        at->iov_len -= step;
        left -= step;
        if (at->iov_len == 0) ++at, --n;
      }
    }
    ring->consume(unwritten);  // an error drops the rest of the batch
  }
}

// The calling thread's line: cleared, and kept up to kKeepLine, so a steady
// state formats without allocating and a rare long line (its room is six
// times its strings) does not hold its size for good.
constexpr size_t kKeepLine = 16 * 1024;

std::string& line_buffer() {
  thread_local std::string line;
  if (line.capacity() > kKeepLine) std::string().swap(line);
  line.clear();
  return line;
}

}  // namespace

size_t LogField::max_size() const {
  // `,"key":` and the value: quoted and escaped, or a number.
  size_t value = kind_ == Kind::str ? 2 + 6 * str_.size() : kNumberRoom;
  return 4 + key_.size() + value;
}

char* LogField::write_json(char* p) const {
  // Keys are identifiers written in the code, never peer data: no escaping.
  p = put(p, ",\"");
  p = put(p, key_);
  p = put(p, "\":");
  switch (kind_) {
    case Kind::str:
      *p++ = '"';
      p = put_json_escaped(p, str_);
      *p++ = '"';
      break;
    case Kind::num: p = put_number(p, num_); break;
    case Kind::dbl: p = put_double(p, dbl_); break;
    case Kind::boolean: p = put(p, num_ ? "true" : "false"); break;
  }
  return p;
}

char* LogField::write_text(char* p) const {
  *p++ = ' ';
  p = put(p, key_);
  *p++ = '=';
  switch (kind_) {
    case Kind::str: p = put(p, str_); break;
    case Kind::num: p = put_number(p, num_); break;
    case Kind::dbl: p = put_double(p, dbl_); break;
    case Kind::boolean: p = put(p, num_ ? "true" : "false"); break;
  }
  return p;
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
  std::string_view level_name = conf::to_string(level);
  // The JSON form's timestamp, its 30 bytes of punctuation and keys, its
  // message escaped and each field at its longest: the text form takes no
  // more.
  size_t room = kTimestampRoom + 32 + level_name.size() + 6 * msg.size();
  for (const auto& f : fields) room += f.max_size();
  std::string& line = line_buffer();
  line.resize(room);
  char* p = line.data();
  if (format_.load(std::memory_order_relaxed) == conf::LogFormat::json) {
    p = put(p, "{\"ts\":\"");
    p = put_timestamp(p);
    p = put(p, "\",\"level\":\"");
    p = put(p, level_name);
    p = put(p, "\",\"msg\":\"");
    p = put_json_escaped(p, msg);
    *p++ = '"';
    for (const auto& f : fields) p = f.write_json(p);
    p = put(p, "}\n");
  } else {
    p = put_timestamp(p);
    *p++ = ' ';
    p = put(p, level_name);
    *p++ = ' ';
    p = put(p, msg);
    for (const auto& f : fields) p = f.write_text(p);
    *p++ = '\n';
  }
  if (!ring_->push({line.data(), static_cast<size_t>(p - line.data())})) dropped_.inc();
}

}  // namespace sidemux::core
