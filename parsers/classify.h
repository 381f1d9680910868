// Classification of a new connection from the bytes seen so far. Pure and
// incremental: call again with the longer prefix when more bytes arrive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sidemux::parsers {

inline constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum class Protocol {
  need_more,  // a strict prefix of the HTTP/2 preface: wait for more bytes
  tls,        // a TLS handshake record starts here
  http2,      // the whole preface is here
  http1,      // anything else: llhttp decides whether it is valid HTTP/1
};

Protocol classify(const uint8_t* data, size_t len);

}  // namespace sidemux::parsers
