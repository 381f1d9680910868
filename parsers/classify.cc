#include "parsers/classify.h"

#include <algorithm>
#include <cstring>

namespace sidemux::parsers {

namespace {
// TLS record content type "handshake"; no HTTP method starts with it.
constexpr uint8_t kTlsHandshake = 0x16;
}  // namespace

Protocol classify(const uint8_t* data, size_t len) {
  if (len == 0) return Protocol::need_more;
  if (data[0] == kTlsHandshake) return Protocol::tls;
  size_t n = std::min(len, kHttp2Preface.size());
  if (std::memcmp(data, kHttp2Preface.data(), n) != 0) return Protocol::http1;
  return n == kHttp2Preface.size() ? Protocol::http2 : Protocol::need_more;
}

}  // namespace sidemux::parsers
