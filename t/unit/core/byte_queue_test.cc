#include "proxy/core/byte_queue.h"

#include <gtest/gtest.h>

#include <memory_resource>
#include <string>

namespace sidemux::core {
namespace {

const uint8_t* bytes(const char* s) { return reinterpret_cast<const uint8_t*>(s); }
std::string str(const ByteQueue& q) { return std::string(reinterpret_cast<const char*>(q.data()), q.size()); }

TEST(ByteQueue, FifoAcrossCompaction) {
  ByteQueue q;
  q.append(bytes("hello world"), 11);
  q.consume(6);
  EXPECT_EQ(str(q), "world");  // head moved past half: compacted
  q.append(bytes("!"), 1);
  EXPECT_EQ(str(q), "world!");
  q.consume(1);
  EXPECT_EQ(str(q), "orld!");
  q.consume(5);
  EXPECT_TRUE(q.empty());
  q.append(bytes("x"), 1);
  EXPECT_EQ(str(q), "x");
}

TEST(ByteQueue, StreamsManyChunksInOrder) {
  ByteQueue q;
  std::string in, out;
  for (int i = 0; i < 1000; ++i) {
    std::string chunk = std::to_string(i) + ",";
    in += chunk;
    q.append(bytes(chunk.c_str()), chunk.size());
    size_t take = q.size() / 2 + 1;
    out.append(reinterpret_cast<const char*>(q.data()), take);
    q.consume(take);
  }
  out += str(q);
  EXPECT_EQ(in, out);
}

TEST(ByteQueue, TruncateKeepsTheFront) {
  ByteQueue q;
  q.append(bytes("abcdefgh"), 8);
  q.consume(2);
  q.truncate(3);
  EXPECT_EQ(str(q), "cde");
  q.truncate(10);  // longer than the queue: nothing changes
  EXPECT_EQ(str(q), "cde");
  q.truncate(0);
  EXPECT_TRUE(q.empty());
}

TEST(ByteQueue, BurstCapacityFreedWhenDrained) {
  ByteQueue q;
  std::string burst(1 << 20, 'b');
  q.append(bytes(burst.c_str()), burst.size());
  EXPECT_GE(q.capacity(), burst.size());
  q.consume(burst.size() - 1);
  q.consume(1);
  EXPECT_TRUE(q.empty());
  EXPECT_LE(q.capacity(), ByteQueue::kKeepCapacity);
}

TEST(ByteQueue, SmallBufferKeptAcrossDrains) {
  ByteQueue q;
  std::string msg(4096, 'm');
  q.append(bytes(msg.c_str()), msg.size());
  size_t cap = q.capacity();
  q.consume(msg.size());
  EXPECT_EQ(q.capacity(), cap);  // steady small traffic allocates nothing more
}

TEST(ByteQueue, TakesItsBytesFromTheGivenResource) {
  std::byte storage[4096];
  std::pmr::monotonic_buffer_resource memory(storage, sizeof(storage), std::pmr::null_memory_resource());
  ByteQueue q(&memory);
  std::string msg(101, 'u');  // past std::string's inline bytes
  q.append(bytes(msg.c_str()), msg.size());
  EXPECT_EQ(str(q), msg);
  auto* at = reinterpret_cast<const std::byte*>(q.data());
  EXPECT_TRUE(at >= storage && at < storage + sizeof(storage));
}

}  // namespace
}  // namespace sidemux::core
