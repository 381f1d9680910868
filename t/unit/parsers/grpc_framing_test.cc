#include "parsers/grpc_framing.h"

#include <gtest/gtest.h>

#include <vector>

namespace sidemux::parsers::grpc {
namespace {

std::vector<uint8_t> message(size_t len) {
  std::vector<uint8_t> m = {0, uint8_t(len >> 24), uint8_t(len >> 16), uint8_t(len >> 8), uint8_t(len)};
  m.resize(5 + len, 'x');
  return m;
}

TEST(MessageFraming, BoundariesAcrossChunks) {
  MessageFraming f;
  EXPECT_TRUE(f.at_boundary());
  auto a = message(10);
  f.advance(a.data(), 3);  // inside the prefix
  EXPECT_FALSE(f.at_boundary());
  f.advance(a.data() + 3, 4);  // inside the payload
  EXPECT_FALSE(f.at_boundary());
  f.advance(a.data() + 7, a.size() - 7);
  EXPECT_TRUE(f.at_boundary());
}

TEST(MessageFraming, SeveralMessagesInOneChunk) {
  auto a = message(2), b = message(0), c = message(300);
  std::vector<uint8_t> all(a);
  all.insert(all.end(), b.begin(), b.end());
  all.insert(all.end(), c.begin(), c.end());
  MessageFraming f;
  f.advance(all.data(), all.size() - 1);
  EXPECT_FALSE(f.at_boundary());
  f.advance(all.data() + all.size() - 1, 1);
  EXPECT_TRUE(f.at_boundary());
}

TEST(MessageFraming, FinishMessage) {
  auto a = message(100);
  auto b = message(50);
  MessageFraming f;
  EXPECT_EQ(f.finish_message(a.data(), a.size()), 0u);  // at a boundary: none
  f.advance(a.data(), 40);
  // The rest of a is 65 bytes; b's bytes after it are not part of it.
  std::vector<uint8_t> ahead(a.begin() + 40, a.end());
  ahead.insert(ahead.end(), b.begin(), b.end());
  MessageFraming short_probe = f;
  EXPECT_EQ(short_probe.finish_message(ahead.data(), 64), 64u);
  EXPECT_FALSE(short_probe.at_boundary());
  EXPECT_EQ(f.finish_message(ahead.data(), ahead.size()), 65u);
  EXPECT_TRUE(f.at_boundary());
}

TEST(MessageFraming, FinishMessageOverSpansWithThePrefixSplit) {
  auto a = message(1000);
  auto b = message(10);
  MessageFraming f;
  f.advance(a.data(), 2);  // half the prefix went out
  // The rest comes in spans as a chunked queue holds it, the prefix's end
  // in the first one; b follows in the last.
  std::vector<uint8_t> rest(a.begin() + 2, a.end());
  rest.insert(rest.end(), b.begin(), b.end());
  size_t taken = f.finish_message(rest.data(), 2);
  EXPECT_FALSE(f.at_boundary());
  taken += f.finish_message(rest.data() + 2, 500);
  taken += f.finish_message(rest.data() + 502, rest.size() - 502);
  EXPECT_TRUE(f.at_boundary());
  EXPECT_EQ(taken, a.size() - 2);
}

}  // namespace
}  // namespace sidemux::parsers::grpc
