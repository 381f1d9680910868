#include "proxy/window_budget.h"

#include <gtest/gtest.h>

#include <vector>

namespace sidemux {
namespace {

using core::kInitialStreamWindow;
using core::kStreamWindow;

TEST(WindowBudget, WindowsDoubleUpToTheStreamWindow) {
  WindowBudget b(kInitialStreamWindow, 64 * kStreamWindow);
  uint32_t w = b.join();
  EXPECT_EQ(w, kInitialStreamWindow);
  for (int i = 0; i < 20; ++i) w = b.grow(w);
  EXPECT_EQ(w, kStreamWindow);
  EXPECT_EQ(b.granted(), kStreamWindow);
  b.leave(w);
  EXPECT_EQ(b.granted(), 0u);
}

TEST(WindowBudget, SumStaysWithinTheLimitWhateverTheStreamCount) {
  const uint64_t limit = 1 << 20;
  WindowBudget b(kInitialStreamWindow, limit);
  std::vector<uint32_t> windows;
  for (int i = 0; i < 256; ++i) windows.push_back(b.join());  // 256 x 4 KiB: the whole budget
  for (int round = 0; round < 10; ++round)
    for (auto& w : windows) w = b.grow(w);
  uint64_t sum = 0;
  for (auto w : windows) sum += w;
  EXPECT_EQ(sum, b.granted());
  EXPECT_LE(sum, limit);
  for (auto w : windows) EXPECT_EQ(w, kInitialStreamWindow);  // no room: nobody grew
}

TEST(WindowBudget, RoomFreedByAStreamGoesToTheNextThatMoves) {
  WindowBudget b(kInitialStreamWindow, 8 * kStreamWindow);
  uint32_t big = b.join();
  while (big < kStreamWindow) big = b.grow(big);
  std::vector<uint32_t> others;
  for (int i = 0; i < 7; ++i) {
    uint32_t w = b.join();
    while (w < kStreamWindow) w = b.grow(w);
    others.push_back(w);
  }
  uint32_t late = b.join();
  EXPECT_EQ(b.grow(late), late) << "budget spent: the late stream keeps its initial window";
  b.leave(big);
  EXPECT_EQ(b.grow(late), 2 * late);
  EXPECT_LE(b.granted(), 8 * uint64_t{kStreamWindow});
}

}  // namespace
}  // namespace sidemux
