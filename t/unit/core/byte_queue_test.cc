#include "proxy/core/byte_queue.h"

#include <gtest/gtest.h>

#include <memory_resource>
#include <string>

namespace sidemux::core {
namespace {

const uint8_t* bytes(const char* s) { return reinterpret_cast<const uint8_t*>(s); }
const uint8_t* bytes(const std::string& s) { return bytes(s.c_str()); }

std::string str(const ByteQueue& q, size_t offset = 0) {
  std::string out;
  q.for_each(offset, q.size() - offset,
             [&out](const uint8_t* data, size_t len) { out.append(reinterpret_cast<const char*>(data), len); });
  return out;
}

// Counts what the queue holds of a resource, block by block.
class CountingResource final : public std::pmr::memory_resource {
 public:
  size_t live = 0;
  size_t allocations = 0;
  size_t largest = 0;

 private:
  void* do_allocate(size_t bytes, size_t alignment) override {
    ++live;
    ++allocations;
    largest = std::max(largest, bytes);
    return std::pmr::new_delete_resource()->allocate(bytes, alignment);
  }
  void do_deallocate(void* p, size_t bytes, size_t alignment) override {
    --live;
    std::pmr::new_delete_resource()->deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }
};

TEST(ByteQueue, Fifo) {
  ByteQueue q;
  q.append(bytes("hello world"), 11);
  q.consume(6);
  EXPECT_EQ(str(q), "world");
  q.append(bytes("!"), 1);
  EXPECT_EQ(str(q), "world!");
  q.consume(1);
  EXPECT_EQ(str(q), "orld!");
  q.consume(5);
  EXPECT_TRUE(q.empty());
  q.append(bytes("x"), 1);
  EXPECT_EQ(str(q), "x");
}

TEST(ByteQueue, StreamsManyChunksInOrderAcrossBlocks) {
  ByteQueue q;
  std::string in, out;
  for (int i = 0; i < 20000; ++i) {
    std::string chunk = std::to_string(i) + ",";
    in += chunk;
    q.append(bytes(chunk), chunk.size());
    if (i % 7 == 0) {
      size_t take = q.size() / 2 + 1;
      q.for_each(0, take, [&out](const uint8_t* d, size_t n) { out.append(reinterpret_cast<const char*>(d), n); });
      q.consume(take);
    }
  }
  out += str(q);
  EXPECT_EQ(in, out);
}

TEST(ByteQueue, ReadsAtAnOffsetAcrossBlocks) {
  ByteQueue q;
  std::string big;
  for (int i = 0; i < 100000; ++i) big += static_cast<char>('a' + i % 26);
  q.append(bytes(big), big.size());
  EXPECT_GT(q.blocks(), 1u);
  EXPECT_EQ(str(q, 12345), big.substr(12345));
  // A Tail copies out a frame's worth that straddles blocks.
  std::string frame(16384, '\0');
  q.from(ByteQueue::kMaxBlock - 100).copy_to(reinterpret_cast<uint8_t*>(frame.data()), frame.size());
  EXPECT_EQ(frame, big.substr(ByteQueue::kMaxBlock - 100, frame.size()));
}

TEST(ByteQueue, TruncateKeepsTheFront) {
  ByteQueue q;
  q.append(bytes("abcdefgh"), 8);
  q.consume(2);
  q.truncate(3);
  EXPECT_EQ(str(q), "cde");
  q.truncate(10);  // longer than the queue: nothing changes
  EXPECT_EQ(str(q), "cde");
  q.append(bytes("xy"), 2);  // appends after the cut
  EXPECT_EQ(str(q), "cdexy");
  q.truncate(0);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.blocks(), 0u);
}

TEST(ByteQueue, AppendAfterACutDoesNotWriteOverReferencedBytes) {
  ByteQueue q;
  q.append(bytes("abcdef"), 6);
  // A write in flight holds the bytes (Transport::write with a BlockRef).
  std::string_view held;
  ByteQueue::BlockRef ref;
  q.from(0).for_each_block(6, [&](const uint8_t* data, size_t len, ByteQueue::BlockRef r) {
    held = {reinterpret_cast<const char*>(data), len};
    ref = std::move(r);
  });
  q.truncate(2);
  q.append(bytes("XYZW"), 4);
  EXPECT_EQ(held, "abcdef");
  EXPECT_EQ(str(q), "abXYZW");
  EXPECT_EQ(q.blocks(), 2u);
}

TEST(ByteQueue, TruncateFreesTheBlocksPastTheCut) {
  CountingResource memory;
  ByteQueue q(&memory);
  std::string big(100000, 'b');
  q.append(bytes(big), big.size());
  size_t held = memory.live;
  q.truncate(1000);
  EXPECT_EQ(q.size(), 1000u);
  EXPECT_EQ(memory.live, 1u);
  EXPECT_LT(memory.live, held);
  q.append(bytes("end"), 3);
  EXPECT_EQ(str(q), std::string(1000, 'b') + "end");
}

TEST(ByteQueue, ASmallBodyTakesOneSmallBlock) {
  CountingResource memory;
  ByteQueue q(&memory);
  std::string msg(101, 'u');  // a unary call's message
  q.append(bytes(msg), msg.size());
  EXPECT_EQ(str(q), msg);
  EXPECT_EQ(memory.allocations, 1u);
  EXPECT_EQ(memory.largest, ByteQueue::kMinBlock);
}

TEST(ByteQueue, BlocksGrowToTheLargestAndAreFreedAsConsumed) {
  CountingResource memory;
  ByteQueue q(&memory);
  std::string chunk(300, 'c');
  for (int i = 0; i < 1000; ++i) q.append(bytes(chunk), chunk.size());
  EXPECT_EQ(memory.largest, ByteQueue::kMaxBlock);
  // Doubling: a few dozen blocks for 300 KB, not one per append.
  EXPECT_LT(q.blocks(), 30u);
  q.consume(q.size() - 1);
  EXPECT_EQ(memory.live, 1u);  // consumed blocks went back at once
  q.consume(1);
  EXPECT_EQ(memory.live, 0u);  // an empty queue holds nothing
}

TEST(ByteQueue, AQueueThatStaysShortKeepsSmallBlocks) {
  // A Watch whose client is one event behind: never empty, never long.
  CountingResource memory;
  ByteQueue q(&memory);
  std::string event(100, 'e');
  q.append(bytes(event), event.size());
  for (int i = 0; i < 1000; ++i) {
    q.append(bytes(event), event.size());
    q.consume(event.size());
  }
  EXPECT_EQ(q.size(), event.size());
  EXPECT_LE(memory.largest, 256u);
}

TEST(ByteQueue, TakesItsBytesFromTheGivenResource) {
  std::byte storage[4096];
  std::pmr::monotonic_buffer_resource memory(storage, sizeof(storage), std::pmr::null_memory_resource());
  ByteQueue q(&memory);
  std::string msg(101, 'u');
  q.append(bytes(msg), msg.size());
  EXPECT_EQ(str(q), msg);
  q.for_each(0, q.size(), [&](const uint8_t* at, size_t) {
    auto* p = reinterpret_cast<const std::byte*>(at);
    EXPECT_TRUE(p >= storage && p < storage + sizeof(storage));
  });
}

}  // namespace
}  // namespace sidemux::core
