// The header fields of one HTTP/1 message, and how llhttp's pieces of them
// are collected within the head limits. Shared by the request and response
// parsers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sidemux::parsers {

// Names are lower-cased; values are as received (llhttp strips the
// surrounding whitespace). All bytes live in one buffer, so clear() keeps
// every allocation and a keep-alive connection stops allocating after its
// first few messages.
class Http1Headers {
 public:
  size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }
  std::string_view name(size_t i) const { return view(fields_[i].name_at, fields_[i].name_len); }
  std::string_view value(size_t i) const { return view(fields_[i].value_at, fields_[i].value_len); }
  // First value of a header (name in lower case), or empty.
  std::string_view get(std::string_view lower_name) const;
  void clear();

  // Building, for the parsers: a field starts, then its name and value
  // arrive in any number of pieces.
  void start_field();
  void append_name(const char* at, size_t len);
  void append_value(const char* at, size_t len);

 private:
  struct Field {
    uint32_t name_at, name_len, value_at, value_len;
  };
  std::string_view view(uint32_t at, uint32_t len) const { return {bytes_.data() + at, len}; }

  std::string bytes_;
  std::vector<Field> fields_;
};

struct Http1HeadLimits {
  size_t max_head_bytes = 16384;  // start line + header fields, as on the wire
  size_t max_headers = 100;
};

// Feeds llhttp's header callbacks into an Http1Headers within the limits.
// A method returns nullptr, or the reason the head is refused (always a
// size limit: the caller answers 431 or fails the response).
class Http1HeadCollector {
 public:
  explicit Http1HeadCollector(const Http1HeadLimits& limits) : limits_(limits) {}

  // A new head (or trailer section) begins: counts restart.
  void reset(Http1Headers& into);
  // Bytes of the start line (request target, reason phrase).
  const char* on_start_line(size_t len);
  const char* on_field(const char* at, size_t len);
  const char* on_value(const char* at, size_t len);
  void on_field_complete() { in_field_ = false; }

 private:
  const char* count(size_t n);

  Http1HeadLimits limits_;
  Http1Headers* into_ = nullptr;
  size_t bytes_ = 0;
  bool in_field_ = false;
};

}  // namespace sidemux::parsers
