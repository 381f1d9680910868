#include "proxy/heap_trim.h"

#include <gtest/gtest.h>

namespace sidemux {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;

// A quiet process: no connections, nothing freed, 10 MiB resident.
HeapTrim::Sample at(uint64_t now_ms, uint32_t open = 0, uint64_t freed = 0, uint64_t rss = 10 * kMiB) {
  return {now_ms, open, freed, rss};
}

// The first check trims (it sets what later growth is measured from).
HeapTrim after_first_trim() {
  HeapTrim t;
  EXPECT_TRUE(t.due(at(0)));
  t.trimmed(at(0), 10 * kMiB);
  return t;
}

TEST(HeapTrim, QuietProcessIsNotTrimmedAgain) {
  HeapTrim t = after_first_trim();
  for (uint64_t s = 1; s < 600; ++s) EXPECT_FALSE(t.due(at(s * 1000))) << s;
}

TEST(HeapTrim, CrowdThatLeftIsTrimmed) {
  HeapTrim t = after_first_trim();
  EXPECT_FALSE(t.due(at(40'000, 1000)));
  EXPECT_FALSE(t.due(at(41'000, 600)));
  EXPECT_TRUE(t.due(at(42'000, 500)));
}

TEST(HeapTrim, FewConnectionsComingAndGoingAreNoCrowd) {
  HeapTrim t = after_first_trim();
  for (uint64_t s = 31; s < 100; ++s) EXPECT_FALSE(t.due(at(s * 1000, s % 2 ? 200 : 0))) << s;
}

TEST(HeapTrim, BlocksTheWorkersGaveBackAreTrimmed) {
  HeapTrim t = after_first_trim();
  EXPECT_FALSE(t.due(at(40'000, 0, kMiB - 1)));
  EXPECT_TRUE(t.due(at(41'000, 0, kMiB)));
}

TEST(HeapTrim, GrowthOverWhatTheLastTrimLeftIsTrimmed) {
  HeapTrim t = after_first_trim();
  EXPECT_FALSE(t.due(at(40'000, 0, 0, 12 * kMiB - 1)));
  EXPECT_TRUE(t.due(at(41'000, 0, 0, 12 * kMiB)));
  // Measured from what that trim left, and by a tenth of it once that is more.
  t.trimmed(at(41'000), 100 * kMiB);
  EXPECT_FALSE(t.due(at(80'000, 0, 0, 110 * kMiB - 1)));
  EXPECT_TRUE(t.due(at(81'000, 0, 0, 110 * kMiB)));
}

TEST(HeapTrim, AtMostOneTrimPerGap) {
  HeapTrim t = after_first_trim();
  uint64_t grown = 50 * kMiB;
  EXPECT_FALSE(t.due(at(HeapTrim::kGapMs - 1, 1000, 100 * kMiB, grown)));
  EXPECT_TRUE(t.due(at(HeapTrim::kGapMs, 400, 100 * kMiB, grown)));
}

}  // namespace
}  // namespace sidemux
