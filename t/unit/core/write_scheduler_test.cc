#include "proxy/core/write_scheduler.h"

#include <gtest/gtest.h>

#include "t/unit/support/test_transport.h"

namespace sidemux::core {
namespace {

using unit::TransportPair;

TEST(WriteScheduler, ProducesEachScheduledTransportOncePerPass) {
  TransportPair p;
  p.a->transport.schedule();
  p.a->transport.schedule();  // twice in one turn: one produce
  p.b->transport.schedule();
  p.turn();
  EXPECT_EQ(p.a->owner.produced, 1);
  EXPECT_EQ(p.b->owner.produced, 1);
  p.turn();  // nothing scheduled since
  EXPECT_EQ(p.a->owner.produced, 1);
}

TEST(WriteScheduler, ATransportClosedBeforeItsTurnIsSkipped) {
  TransportPair p;
  p.a->transport.schedule();
  p.b->transport.schedule();
  p.a->transport.close();  // unscheduled outside the walk
  p.turn();
  EXPECT_EQ(p.a->owner.produced, 0);
  EXPECT_EQ(p.b->owner.produced, 1);
}

TEST(WriteScheduler, ATransportClosedDuringTheWalkIsSkipped) {
  TransportPair p;
  // a produces first (scheduled first) and closes b, which waits in the
  // same pass: b must not be produced after its close.
  p.a->owner.on_produce = [&] { p.b->transport.close(); };
  p.a->transport.schedule();
  p.b->transport.schedule();
  p.turn();
  EXPECT_EQ(p.a->owner.produced, 1);
  EXPECT_EQ(p.b->owner.produced, 0);
}

TEST(WriteScheduler, ATransportRescheduledInTheWalkThenClosedIsSkipped) {
  TransportPair p;
  // a is produced, schedules itself for the next pass, then b (later in the
  // same pass) closes it: a's new entry is dropped, its old slot is not
  // mistaken for it.
  p.a->owner.on_produce = [&] { p.a->transport.schedule(); };
  p.b->owner.on_produce = [&] { p.a->transport.close(); };
  p.a->transport.schedule();
  p.b->transport.schedule();
  p.turn();
  EXPECT_EQ(p.a->owner.produced, 1);
  EXPECT_EQ(p.b->owner.produced, 1);
  p.b->owner.on_produce = nullptr;
  p.b->transport.schedule();
  p.turn();
  EXPECT_EQ(p.a->owner.produced, 1);
  EXPECT_EQ(p.b->owner.produced, 2);
}

TEST(WriteScheduler, ProducePassesPerTurnAreBounded) {
  TransportPair p;
  // A transport that always has more to do is produced a bounded number of
  // times per turn, and the loop does not block between turns meanwhile.
  p.a->owner.on_produce = [&] { p.a->transport.schedule(); };
  p.a->transport.schedule();
  p.turn();
  EXPECT_EQ(p.a->owner.produced, 16);
  p.turn();
  EXPECT_EQ(p.a->owner.produced, 32);
  p.a->owner.on_produce = nullptr;
  p.turn();
  EXPECT_EQ(p.a->owner.produced, 33);
}

}  // namespace
}  // namespace sidemux::core
