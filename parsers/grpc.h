// gRPC over HTTP/2 helpers: status codes, grpc-timeout, grpc-message encoding.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace sidemux::parsers::grpc {

enum class Status : uint8_t {
  ok = 0, cancelled = 1, unknown = 2, invalid_argument = 3, deadline_exceeded = 4,
  not_found = 5, already_exists = 6, permission_denied = 7, resource_exhausted = 8,
  failed_precondition = 9, aborted = 10, out_of_range = 11, unimplemented = 12,
  internal = 13, unavailable = 14, data_loss = 15, unauthenticated = 16,
};

// "OK", "CANCELLED", ... as used in the sidemux_upstream_streams_total label;
// codes outside the table are "UNKNOWN" (as gRPC maps them), so a member
// cannot grow the label set.
std::string_view status_name(int code);

// grpc-timeout: 1 to 8 ASCII digits followed by H, M, S, m, u or n.
bool parse_timeout(std::string_view text, std::chrono::nanoseconds& out);
// The reverse, in the finest unit whose value fits 8 digits, rounded up (as
// gRPC clients encode it); at least "1n", at most "99999999H".
std::string format_timeout(std::chrono::nanoseconds d);

// Why a request cannot be gRPC at all, with the HTTP status gRPC's HTTP/2
// protocol gives the answer: 405 for a method other than POST, 415 for a
// content-type that is not application/grpc, application/grpc+<subtype> or
// application/grpc;<params>. http_status 0: the request may be gRPC.
struct NotGrpc {
  int http_status = 0;
  std::string_view message;
};
NotGrpc check_request(std::string_view method, std::string_view content_type);

// grpc-message is percent-encoded (gRPC over HTTP/2 spec): bytes outside
// 0x20..0x7e and '%' itself become %XX.
std::string percent_encode(std::string_view message);

inline constexpr std::string_view kContentType = "application/grpc";

// A message on a gRPC stream is prefixed by a compressed-flag byte and a
// 4-byte big-endian length ("Length-Prefixed-Message").
inline constexpr size_t kMessagePrefixSize = 5;
// An empty message, prefixed: a HealthCheckRequest for service "", etcd's
// StatusRequest.
inline constexpr std::array<uint8_t, kMessagePrefixSize> kEmptyMessage = {0, 0, 0, 0, 0};

// The one uncompressed message of a unary response body. Returns nullptr
// and sets `message` (a view into `body`), or says why the body is not that.
const char* unary_message(std::span<const uint8_t> body, std::span<const uint8_t>& message);

}  // namespace sidemux::parsers::grpc
