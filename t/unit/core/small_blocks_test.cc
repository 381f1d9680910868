#include "proxy/core/small_blocks.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory_resource>
#include <thread>
#include <vector>

namespace sidemux::core {
namespace {

void* alloc(size_t n) { return h2_memory()->malloc(n, nullptr); }
void release(void* p) { h2_memory()->free(p, nullptr); }

TEST(H2Memory, FreedSmallBlockIsReusedForItsClass) {
  void* a = alloc(150);
  release(a);
  // 150 and 200 bytes share a class: the block comes back.
  void* b = alloc(200);
  EXPECT_EQ(a, b);
  release(b);
}

TEST(H2Memory, BlocksKeepMallocAlignment) {
  for (size_t n : {1, 17, 100, 1000, 5000}) {
    void* p = alloc(n);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignof(std::max_align_t), 0u) << n;
    release(p);
  }
}

TEST(H2Memory, CallocZeroesAReusedBlock) {
  auto* p = static_cast<unsigned char*>(alloc(64));
  std::memset(p, 0xab, 64);
  release(p);
  auto* q = static_cast<unsigned char*>(h2_memory()->calloc(8, 8, nullptr));
  for (int i = 0; i < 64; ++i) ASSERT_EQ(q[i], 0) << i;
  release(q);
}

TEST(H2Memory, CallocOverflowFails) {
  EXPECT_EQ(h2_memory()->calloc(SIZE_MAX / 2, 4, nullptr), nullptr);
}

TEST(H2Memory, ReallocKeepsTheBytesAcrossClassesAndIntoMalloc) {
  auto* p = static_cast<char*>(alloc(10));
  std::memcpy(p, "0123456789", 10);
  for (size_t n : {12, 100, 900, 4000, 20000, 50}) {
    p = static_cast<char*>(h2_memory()->realloc(p, n, nullptr));
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(std::memcmp(p, "0123456789", 10), 0) << n;
  }
  release(p);
}

// The thread's cached blocks are freed when it ends: LSan checks that in
// the sanitizer tree.
TEST(H2Memory, CacheIsBoundedPerThread) {
  size_t cached = 0;
  std::thread t([&] {
    // Many more blocks of one class than a list keeps.
    std::vector<void*> blocks;
    for (size_t i = 0; i < 2 * kMaxCachedBytes / 256; ++i) blocks.push_back(alloc(200));
    for (void* p : blocks) release(p);
    cached = small_blocks_cached_bytes();
  });
  t.join();
  EXPECT_EQ(cached, kMaxCachedBytes);
}

// Made on a thread before its lists keep a block, so destroyed after they
// ended: its free comes too late for them, and it says what they hold then.
size_t cached_after_late_free = SIZE_MAX;
struct FreesAtThreadExit {
  void* block = nullptr;
  ~FreesAtThreadExit() {
    release(block);
    cached_after_late_free = small_blocks_cached_bytes();
  }
};
thread_local FreesAtThreadExit late_free;

// The lists were emptied at the thread's exit and the late block went to
// malloc; LSan (sanitizer tree) sees both freed.
TEST(H2Memory, BlockFreedAfterTheThreadsListsEndedGoesToMalloc) {
  std::thread t([] {
    late_free.block = alloc(100);
    release(alloc(100));  // the first block kept: the lists' drain at exit
  });
  t.join();
  EXPECT_EQ(cached_after_late_free, 0u);
}

// Blocks of 200 bytes take the class of 256 with the header.
void churn(size_t n) {
  std::vector<void*> blocks;
  for (size_t i = 0; i < n; ++i) blocks.push_back(alloc(200));
  for (void* p : blocks) release(p);
}

TEST(H2Memory, DecayGivesBackWhatAPeriodLeftUnused) {
  std::vector<size_t> freed;
  std::vector<size_t> cached;
  std::thread t([&] {
    auto period_ends = [&] {
      freed.push_back(decay_small_blocks());
      cached.push_back(small_blocks_cached_bytes());
    };
    churn(1000);  // a peak
    period_ends();
    churn(10);  // steady traffic after it
    period_ends();
    churn(10);
    period_ends();
    period_ends();  // no traffic
  });
  t.join();
  // The peak's period drew on every block it cached; the next one used 10,
  // and the rest went; steady traffic keeps its 10; an idle period frees them.
  EXPECT_EQ(freed, (std::vector<size_t>{0, 990 * 256, 0, 10 * 256}));
  EXPECT_EQ(cached, (std::vector<size_t>{1000 * 256, 10 * 256, 10 * 256, 0}));
}

#if defined(__SANITIZE_ADDRESS__)
// A cached block stays poisoned: a use after free is still reported.
TEST(H2MemoryDeathTest, UseAfterFreeIsReportedUnderAsan) {
  EXPECT_DEATH(
      {
        auto* p = static_cast<volatile char*>(alloc(100));
        release(const_cast<char*>(p));
        p[0] = 1;
      },
      "use-after-poison");
}
#endif

TEST(SmallBlockResource, SharesTheListsAndSendsTheRestToTheHeap) {
  std::pmr::memory_resource& r = small_block_resource();
  void* a = r.allocate(200, 8);
  r.deallocate(a, 200, 8);
  // Same class (256 bytes, no header here): the block comes back.
  void* b = r.allocate(256, 16);
  EXPECT_EQ(a, b);
  r.deallocate(b, 256, 16);
  // Over-aligned and large blocks are the heap's, and work.
  void* aligned = r.allocate(64, 64);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(aligned) % 64, 0u);
  r.deallocate(aligned, 64, 64);
  void* large = r.allocate(100000, 8);
  std::memset(large, 1, 100000);
  r.deallocate(large, 100000, 8);
  std::pmr::vector<int> v(&r);
  for (int i = 0; i < 1000; ++i) v.push_back(i);
  EXPECT_EQ(v[999], 999);
}

}  // namespace
}  // namespace sidemux::core
