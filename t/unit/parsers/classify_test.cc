#include "parsers/classify.h"

#include <gtest/gtest.h>

#include <string>

namespace sidemux::parsers {
namespace {

Protocol classify_str(std::string_view s) {
  return classify(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

TEST(Classify, EmptyNeedsMore) { EXPECT_EQ(classify(nullptr, 0), Protocol::need_more); }

TEST(Classify, EveryPrefixOfThePrefaceNeedsMoreUntilComplete) {
  for (size_t n = 1; n < kHttp2Preface.size(); ++n)
    EXPECT_EQ(classify_str(kHttp2Preface.substr(0, n)), Protocol::need_more) << "prefix length " << n;
  EXPECT_EQ(classify_str(kHttp2Preface), Protocol::http2);
}

TEST(Classify, PrefaceFollowedByFramesIsHttp2) {
  std::string bytes(kHttp2Preface);
  bytes += std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);  // empty SETTINGS
  EXPECT_EQ(classify_str(bytes), Protocol::http2);
}

TEST(Classify, DivergingFromThePrefaceAtAnyByteIsHttp1) {
  // "PRI * HTTP/1.1" and friends: valid prefixes up to the divergence.
  for (size_t n = 0; n < kHttp2Preface.size(); ++n) {
    std::string bytes(kHttp2Preface.substr(0, n));
    bytes += kHttp2Preface[n] == 'X' ? 'Y' : 'X';
    EXPECT_EQ(classify_str(bytes), Protocol::http1) << "diverging at " << n;
  }
}

TEST(Classify, HttpOneRequestsAtEverySplit) {
  const std::string request = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  for (size_t n = 1; n <= request.size(); ++n)
    EXPECT_EQ(classify_str(request.substr(0, n)), Protocol::http1) << "first " << n << " bytes";
}

TEST(Classify, TlsRecordStart) {
  EXPECT_EQ(classify_str("\x16"), Protocol::tls);
  EXPECT_EQ(classify_str(std::string("\x16\x03\x01\x02\x00", 5)), Protocol::tls);
}

TEST(Classify, BinaryGarbageIsHttp1ForLlhttpToReject) {
  EXPECT_EQ(classify_str(std::string("\x00\xff\x10", 3)), Protocol::http1);
}

}  // namespace
}  // namespace sidemux::parsers
