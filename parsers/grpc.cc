#include "parsers/grpc.h"

#include <algorithm>
#include <array>
#include <limits>

namespace sidemux::parsers::grpc {

std::string_view status_name(int code) {
  static constexpr std::array<std::string_view, 17> kNames = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
      "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  if (code >= 0 && code < static_cast<int>(kNames.size())) return kNames[static_cast<size_t>(code)];
  return "UNKNOWN";
}

bool parse_timeout(std::string_view text, std::chrono::nanoseconds& out) {
  if (text.size() < 2 || text.size() > 9) return false;
  int64_t value = 0;
  for (char c : text.substr(0, text.size() - 1)) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  int64_t unit_ns;
  switch (text.back()) {
    case 'H': unit_ns = 3'600'000'000'000; break;
    case 'M': unit_ns = 60'000'000'000; break;
    case 'S': unit_ns = 1'000'000'000; break;
    case 'm': unit_ns = 1'000'000; break;
    case 'u': unit_ns = 1'000; break;
    case 'n': unit_ns = 1; break;
    default: return false;
  }
  // 99999999H is 11,000 years: past what nanoseconds hold, it means "never".
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  out = std::chrono::nanoseconds(value > kMax / unit_ns ? kMax : value * unit_ns);
  return true;
}

std::string format_timeout(std::chrono::nanoseconds d) {
  constexpr int64_t kMaxValue = 99'999'999;
  struct Unit {
    int64_t ns;
    char suffix;
  };
  static constexpr std::array<Unit, 6> kUnits = {{{1, 'n'},
                                                  {1'000, 'u'},
                                                  {1'000'000, 'm'},
                                                  {1'000'000'000, 'S'},
                                                  {60'000'000'000, 'M'},
                                                  {3'600'000'000'000, 'H'}}};
  int64_t ns = std::max<int64_t>(d.count(), 1);
  for (const Unit& u : kUnits) {
    int64_t value = ns / u.ns + (ns % u.ns != 0);
    if (value <= kMaxValue) return std::to_string(value) + u.suffix;
  }
  return std::to_string(kMaxValue) + 'H';
}

NotGrpc check_request(std::string_view method, std::string_view content_type) {
  if (method != "POST") return {405, "gRPC requests use the POST method"};
  // Media types are case-insensitive (RFC 9110 8.3.1).
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  bool grpc = content_type.size() >= kContentType.size() &&
              std::equal(kContentType.begin(), kContentType.end(), content_type.begin(),
                         [&](char a, char b) { return a == lower(b); });
  if (grpc && content_type.size() > kContentType.size()) {
    char next = content_type[kContentType.size()];
    grpc = next == '+' || next == ';';
  }
  if (!grpc) return {415, "gRPC requests have content-type application/grpc"};
  return {};
}

std::string percent_encode(std::string_view message) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(message.size());
  for (unsigned char c : message) {
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

const char* unary_message(std::span<const uint8_t> body, std::span<const uint8_t>& message) {
  if (body.size() < kMessagePrefixSize) return "response shorter than a message prefix";
  // sidemux sends no grpc-accept-encoding, so a member must not compress.
  if (body[0] != 0) return "compressed response message";
  uint32_t len = static_cast<uint32_t>(body[1]) << 24 | static_cast<uint32_t>(body[2]) << 16 |
                 static_cast<uint32_t>(body[3]) << 8 | body[4];
  if (len > body.size() - kMessagePrefixSize) return "truncated response message";
  if (len < body.size() - kMessagePrefixSize) return "more than one response message";
  message = body.subspan(kMessagePrefixSize, len);
  return nullptr;
}

}  // namespace sidemux::parsers::grpc
