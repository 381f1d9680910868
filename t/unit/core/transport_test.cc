#include "proxy/core/transport.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "proxy/core/byte_queue.h"
#include "proxy/core/tls.h"
#include "t/unit/support/test_tls.h"
#include "t/unit/support/test_transport.h"

namespace sidemux::core {
namespace {

using unit::TransportPair;

TEST(Transport, WritesOfOneTurnGoOutTogetherAtItsEnd) {
  TransportPair p;
  p.b->transport.resume_reading();
  p.a->transport.write("one ");
  p.a->transport.write("two ");
  p.a->transport.write("three");
  // Buffered until the prepare phase: nothing was written yet.
  EXPECT_TRUE(p.a->transport.write_pending());
  EXPECT_EQ(p.a->bytes_out.value(), 0u);
  p.turn();
  EXPECT_EQ(p.a->bytes_out.value(), 13u);
  ASSERT_TRUE(p.run_until([&] { return p.b->owner.read.size() == 13; }));
  EXPECT_EQ(p.b->owner.read, "one two three");
  EXPECT_EQ(p.b->bytes_in.value(), 13u);
}

TEST(Transport, IdleBuffersAreReleasedOnlyWithNothingToWrite) {
  TransportPair p;
  p.b->transport.resume_reading();
  const std::string queued(1000, 'q');
  p.a->transport.write(queued);
  // Pending bytes stay: the release waits for a quiet transport.
  p.a->transport.release_idle_buffers();
  EXPECT_TRUE(p.a->transport.write_pending());
  p.turn();
  ASSERT_TRUE(p.run_until([&] { return p.b->owner.read == queued; }));
  ASSERT_FALSE(p.a->transport.write_pending());
  // Written, the batch kept its room for the next turn; released, it has
  // none beyond what a std::string holds inline.
  EXPECT_GE(p.a->transport.buffer_capacity(), queued.size());
  p.a->transport.release_idle_buffers();
  EXPECT_LT(p.a->transport.buffer_capacity(), 100u);
  p.a->transport.write(" and after");
  p.turn();
  ASSERT_TRUE(p.run_until([&] { return p.b->owner.read == queued + " and after"; }));
}

TEST(Transport, BlocksGoOutInPlaceAndOutliveTheirQueue) {
  TransportPair p;
  p.b->transport.resume_reading();
  std::string body(40000, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);
  std::string want;
  {
    ByteQueue queue;
    queue.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
    ASSERT_GT(queue.blocks(), 1u);
    // Owned bytes and the queue's blocks interleaved, as frame headers and
    // payloads are.
    p.a->transport.write("head:");
    queue.from(0).for_each_block(body.size(), [&](const uint8_t* data, size_t len, ByteQueue::BlockRef ref) {
      p.a->transport.write(data, len, std::move(ref));
      p.a->transport.write("|");
      want.append(reinterpret_cast<const char*>(data), len).append("|");
    });
    EXPECT_EQ(p.a->transport.write_buffered(), 5 + body.size() + queue.blocks());
    // The queue lets go of everything before the write even started (a
    // stream that ended): the references keep the bytes.
    queue.consume(queue.size());
  }
  p.a->transport.write(":tail");
  p.turn();
  EXPECT_EQ(p.a->bytes_out.value(), 5 + want.size() + 5);
  ASSERT_TRUE(p.run_until([&] { return p.b->owner.read.size() == 5 + want.size() + 5; }));
  EXPECT_EQ(p.b->owner.read, "head:" + want + ":tail");
}

TEST(Transport, ProduceStopsAtTheHighWaterMarkAndResumesAsThePeerReads) {
  TransportPair p;
  // a produces 16 KiB whenever asked and is asked every turn (as reads on
  // its connection would); b does not read at first, so the socket fills
  // and a write stays in flight.
  const std::string chunk(16 * 1024, 'x');
  p.a->owner.on_produce = [&] { p.a->transport.write(chunk); };
  auto stalled = [&] {
    p.a->transport.schedule();
    return p.a->transport.write_buffer_full();
  };
  ASSERT_TRUE(p.run_until(stalled));
  int produced = p.a->owner.produced;
  for (int i = 0; i < 50; ++i) {
    p.a->transport.schedule();
    p.turn();
  }
  // What waits behind the write in flight stays below the high-water mark
  // plus one produce's worth.
  EXPECT_EQ(p.a->owner.produced, produced) << "produced past the high-water mark";
  EXPECT_TRUE(p.a->transport.write_buffer_full());

  p.b->transport.resume_reading();
  size_t before = p.b->owner.read.size();
  ASSERT_TRUE(p.run_until([&] { return p.a->owner.produced > produced; }));
  EXPECT_GT(p.b->owner.read.size(), before);
}

TEST(Transport, CloseDuringAWriteReportsOnlyTheClose) {
  TransportPair p;
  // More than the socketpair takes, so the uv_write stays pending.
  p.a->transport.write(std::string(4 * 1024 * 1024, 'y'));
  p.turn();
  ASSERT_TRUE(p.a->transport.write_pending());
  p.a->transport.close();
  EXPECT_TRUE(p.a->transport.closing());
  p.a->transport.write("ignored");  // dropped, not an error
  ASSERT_TRUE(p.run_until([&] { return p.a->owner.closed == 1; }));
  EXPECT_EQ(p.a->owner.errors, 0);
  EXPECT_EQ(p.a->owner.produced, 0);
}

TEST(Transport, PeerCloseIsAnEofError) {
  TransportPair p;
  p.a->transport.resume_reading();
  p.b->transport.close();
  ASSERT_TRUE(p.run_until([&] { return p.a->owner.errors > 0; }));
  EXPECT_EQ(p.a->owner.last_error, UV_EOF);
}

TEST(Transport, CloseAfterFlushSendsWhatIsBufferedFirst) {
  TransportPair p;
  p.b->transport.resume_reading();
  p.a->transport.write("last words");
  p.a->transport.close_after_flush();
  ASSERT_TRUE(p.run_until([&] { return p.a->owner.closed == 1 && p.b->owner.errors > 0; }));
  EXPECT_EQ(p.b->owner.read, "last words");
  EXPECT_EQ(p.b->owner.last_error, UV_EOF);
}

TEST(Transport, TlsBothWaysWithWritesBeforeTheHandshake) {
  TransportPair p;
  unit::TestTlsContexts tls;
  p.a->transport.resume_reading();
  p.b->transport.resume_reading();
  p.a->transport.start_tls(TlsEndpoint::client(tls.client, "127.0.0.1", true));
  p.b->transport.start_tls(TlsEndpoint::server(tls.server));
  // Plaintext written before the handshake waits for it.
  p.a->transport.write("hello over tls");
  ASSERT_TRUE(p.run_until([&] { return p.b->owner.read.size() == 14; }));
  EXPECT_EQ(p.b->owner.read, "hello over tls");
  EXPECT_EQ(p.a->owner.secure, 1);
  EXPECT_EQ(p.b->owner.secure, 1);
  EXPECT_EQ(p.b->transport.tls()->alpn(), "h2");
  // Ciphertext on the wire, not the plaintext.
  EXPECT_GT(p.a->bytes_out.value(), 14u);

  std::string big(200 * 1024, 'z');  // many records, more than one read
  p.b->transport.write(big);
  ASSERT_TRUE(p.run_until([&] { return p.a->owner.read.size() == big.size(); }));
  EXPECT_EQ(p.a->owner.read, big);
  EXPECT_EQ(p.a->owner.errors, 0);
  EXPECT_EQ(p.b->owner.errors, 0);

  // Quiet, both ends give their BIOs' buffers back (the sender's held a
  // batch of ciphertext, the reader's a socket read) and go on.
  ASSERT_TRUE(p.run_until([&] { return !p.b->transport.write_pending(); }));
  EXPECT_GE(p.a->transport.buffer_capacity(), 16u * 1024);
  EXPECT_GE(p.b->transport.buffer_capacity(), 16u * 1024);
  p.a->transport.release_idle_buffers();
  p.b->transport.release_idle_buffers();
  EXPECT_LT(p.a->transport.buffer_capacity(), 100u);
  EXPECT_LT(p.b->transport.buffer_capacity(), 100u);
  p.b->transport.write(big);
  p.a->transport.write("and back");
  ASSERT_TRUE(p.run_until([&] { return p.a->owner.read.size() == 2 * big.size() && p.b->owner.read.size() == 22; }));
  EXPECT_EQ(p.b->owner.read, "hello over tlsand back");
  EXPECT_EQ(p.a->owner.errors, 0);
  EXPECT_EQ(p.b->owner.errors, 0);
}

TEST(Transport, TlsHandshakeFailureIsAProtocolError) {
  TransportPair p;
  unit::TestTlsContexts tls;
  p.a->transport.resume_reading();
  p.b->transport.resume_reading();
  // The certificate is for 127.0.0.1, not this address.
  p.a->transport.start_tls(TlsEndpoint::client(tls.client, "10.9.9.9", true));
  p.b->transport.start_tls(TlsEndpoint::server(tls.server));
  ASSERT_TRUE(p.run_until([&] { return p.a->owner.errors > 0; }));
  EXPECT_EQ(p.a->owner.last_error, UV_EPROTO);
  EXPECT_NE(p.a->transport.tls()->error().find("certificate"), std::string::npos) << p.a->transport.tls()->error();
  EXPECT_EQ(p.a->owner.secure, 0);
}

}  // namespace
}  // namespace sidemux::core
