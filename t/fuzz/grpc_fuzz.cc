// The gRPC helpers against independent restatements of their rules:
// grpc-timeout (digits and a unit, saturating), grpc-message percent-encoding
// (printable, reversible), status names (bounded set), and unframing a unary
// response body. Input: the whole input is each helper's argument.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "parsers/grpc.h"
#include "t/fuzz/fuzz_support.h"

using namespace sidemux::parsers;

namespace {

void check_timeout(std::string_view text) {
  std::chrono::nanoseconds got{};
  bool ok = grpc::parse_timeout(text, got);
  // gRPC over HTTP/2: TimeoutValue is 1 to 8 ASCII digits, then one unit.
  bool valid = text.size() >= 2 && text.size() <= 9;
  for (size_t i = 0; valid && i + 1 < text.size(); ++i) valid = text[i] >= '0' && text[i] <= '9';
  // TimeoutUnit, as nanoseconds per unit.
  static constexpr std::pair<char, int64_t> kUnits[] = {
      {'H', 3600'000'000'000}, {'M', 60'000'000'000}, {'S', 1'000'000'000}, {'m', 1'000'000}, {'u', 1'000}, {'n', 1}};
  const auto* unit = std::find_if(std::begin(kUnits), std::end(kUnits), [&](auto u) { return !text.empty() && u.first == text.back(); });
  valid = valid && unit != std::end(kUnits);
  FUZZ_CHECK(ok == valid);
  if (!ok) return;
  __int128 value = 0;
  for (char c : text.substr(0, text.size() - 1)) value = value * 10 + (c - '0');
  __int128 want = value * unit->second;
  constexpr auto kMax = std::numeric_limits<int64_t>::max();
  if (want > kMax) want = kMax;
  FUZZ_CHECK(got.count() == static_cast<int64_t>(want));
}

int hex(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; }

void check_percent_encoding(std::string_view message) {
  std::string encoded = grpc::percent_encode(message);
  std::string decoded;
  for (size_t i = 0; i < encoded.size(); ++i) {
    char c = encoded[i];
    FUZZ_CHECK(c >= 0x20 && c <= 0x7e);
    if (c != '%') {
      decoded += c;
      continue;
    }
    FUZZ_CHECK(i + 2 < encoded.size());
    int hi = hex(encoded[i + 1]), lo = hex(encoded[i + 2]);
    FUZZ_CHECK(hi >= 0 && lo >= 0);
    decoded += static_cast<char>(hi << 4 | lo);
    i += 2;
  }
  FUZZ_CHECK(decoded == message);
}

void check_status_name(const uint8_t* data, size_t size) {
  int32_t code = 0;
  std::memcpy(&code, data, size < sizeof code ? size : sizeof code);
  std::string_view name = grpc::status_name(code);
  FUZZ_CHECK(!name.empty());
  if (code < 0 || code > 16) FUZZ_CHECK(name == "UNKNOWN");
  for (char c : name) FUZZ_CHECK((c >= 'A' && c <= 'Z') || c == '_');
}

void check_unary_message(const uint8_t* data, size_t size) {
  sidemux::fuzz::Piece body(data, size);
  std::span<const uint8_t> all(reinterpret_cast<const uint8_t*>(body.bytes.get()), size);
  std::span<const uint8_t> message;
  const char* error = grpc::unary_message(all, message);
  // One uncompressed message whose prefix gives exactly the rest's length.
  uint32_t len = size >= grpc::kMessagePrefixSize
                     ? uint32_t{all[1]} << 24 | uint32_t{all[2]} << 16 | uint32_t{all[3]} << 8 | all[4]
                     : 0;
  bool valid = size >= grpc::kMessagePrefixSize && all[0] == 0 && uint64_t{len} + grpc::kMessagePrefixSize == size;
  FUZZ_CHECK((error == nullptr) == valid);
  if (error) return;
  FUZZ_CHECK(message.data() == all.data() + grpc::kMessagePrefixSize);
  FUZZ_CHECK(message.size() == len && len + grpc::kMessagePrefixSize == size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  check_timeout(text);
  check_percent_encoding(text);
  check_status_name(data, size);
  check_unary_message(data, size);
  return 0;
}
