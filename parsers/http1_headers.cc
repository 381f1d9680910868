#include "parsers/http1_headers.h"

#include <cctype>

namespace sidemux::parsers {

std::string_view Http1Headers::get(std::string_view lower_name) const {
  for (size_t i = 0; i < fields_.size(); ++i)
    if (name(i) == lower_name) return value(i);
  return {};
}

void Http1Headers::clear() {
  bytes_.clear();
  fields_.clear();
}

// Offsets are 32-bit: the head limits keep a head far below 4 GiB.
void Http1Headers::start_field() {
  auto at = static_cast<uint32_t>(bytes_.size());
  fields_.push_back({at, 0, at, 0});
}

void Http1Headers::append_name(const char* at, size_t len) {
  // The name is appended before any byte of its value, so it grows in place.
  Field& f = fields_.back();
  for (size_t i = 0; i < len; ++i) bytes_ += static_cast<char>(std::tolower(static_cast<unsigned char>(at[i])));
  f.name_len += static_cast<uint32_t>(len);
  f.value_at = static_cast<uint32_t>(bytes_.size());
}

void Http1Headers::append_value(const char* at, size_t len) {
  bytes_.append(at, len);
  fields_.back().value_len += static_cast<uint32_t>(len);
}

void Http1HeadCollector::reset(Http1Headers& into) {
  into_ = &into;
  into.clear();
  bytes_ = 0;
  in_field_ = false;
}

const char* Http1HeadCollector::count(size_t n) {
  bytes_ += n;
  return bytes_ <= limits_.max_head_bytes ? nullptr : "head too large";
}

const char* Http1HeadCollector::on_start_line(size_t len) { return count(len); }

const char* Http1HeadCollector::on_field(const char* at, size_t len) {
  if (!in_field_) {
    // +4 stands for ": " and CRLF, so the limit tracks bytes on the wire.
    if (const char* e = count(4)) return e;
    if (into_->size() >= limits_.max_headers) return "too many headers";
    into_->start_field();
    in_field_ = true;
  }
  if (const char* e = count(len)) return e;
  into_->append_name(at, len);
  return nullptr;
}

const char* Http1HeadCollector::on_value(const char* at, size_t len) {
  if (const char* e = count(len)) return e;
  if (into_->empty()) return "header value without a name";
  into_->append_value(at, len);
  return nullptr;
}

}  // namespace sidemux::parsers
