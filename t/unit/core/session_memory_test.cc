#include "proxy/core/session_memory.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "proxy/core/h2_common.h"
#include "proxy/core/small_blocks.h"

namespace sidemux::core {
namespace {

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

constexpr size_t kFrameBufferChunk = SessionMemory::kFrameBufferChunk;

TEST(SessionMemory, PageBlockPagesThatHoldBytesAreKept) {
  SessionMemory m;
  auto* p = static_cast<unsigned char*>(m.mem()->malloc(2 * kPage, m.mem()->mem_user_data));
  ASSERT_EQ(m.page_blocks(), 1u);
  std::memset(p, 0, 2 * kPage);
  p[10] = 7;
  EXPECT_EQ(m.resident_bytes(), 2 * kPage);
  // Only the zero page goes, even when the output was all sent: this is
  // not a frame buffer.
  EXPECT_EQ(m.release_pages(true), kPage);
  EXPECT_EQ(m.resident_bytes(), kPage);
  EXPECT_EQ(p[10], 7);
  m.mem()->free(p, m.mem()->mem_user_data);
  EXPECT_EQ(m.page_blocks(), 0u);
}

TEST(SessionMemory, FrameBufferIsKeptUntilItsOutputWasSent) {
  SessionMemory m;
  void* user = m.mem()->mem_user_data;
  auto* p = static_cast<unsigned char*>(m.mem()->realloc(nullptr, kFrameBufferChunk, user));
  std::memset(p, 0xab, kFrameBufferChunk);
  EXPECT_EQ(m.release_pages(false), 0u);
  EXPECT_EQ(p[kFrameBufferChunk - 1], 0xab);
  EXPECT_GT(m.release_pages(true), 4 * kPage);
  EXPECT_EQ(m.resident_bytes(), 0u);
  EXPECT_EQ(p[0], 0);
  m.mem()->free(p, user);
}

TEST(SessionMemory, SmallBlocksAndGrowthKeepTheirBytes) {
  SessionMemory m;
  void* user = m.mem()->mem_user_data;
  auto* small = static_cast<char*>(m.mem()->malloc(100, user));
  EXPECT_EQ(m.page_blocks(), 0u);
  auto* p = static_cast<char*>(m.mem()->calloc(1, kPage, user));
  ASSERT_EQ(m.page_blocks(), 1u);
  EXPECT_EQ(p[kPage - 1], 0);
  std::memcpy(p, "pages", 5);
  p = static_cast<char*>(m.mem()->realloc(p, 3 * kPage, user));
  ASSERT_EQ(m.page_blocks(), 1u);
  EXPECT_EQ(std::memcmp(p, "pages", 5), 0);
  small = static_cast<char*>(m.mem()->realloc(small, 200, user));
  EXPECT_EQ(m.page_blocks(), 1u);
  m.mem()->free(small, user);
  m.mem()->free(p, user);
  EXPECT_EQ(m.page_blocks(), 0u);
}

TEST(SessionMemory, PastItsListBlocksComeFromTheSharedAllocator) {
  SessionMemory m;
  void* user = m.mem()->mem_user_data;
  std::vector<unsigned char*> blocks;
  for (int i = 0; i < 10; ++i) {
    blocks.push_back(static_cast<unsigned char*>(m.mem()->malloc(2 * kPage, user)));
    std::memset(blocks.back(), i + 1, 2 * kPage);
  }
  EXPECT_EQ(m.page_blocks(), 8u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(blocks[i][2 * kPage - 1], i + 1) << i;
  for (unsigned char* b : blocks) m.mem()->free(b, user);
  EXPECT_EQ(m.page_blocks(), 0u);
  m.mem()->free(nullptr, user);
}

// A real session pair: a server on a SessionMemory, a client on the shared
// allocator, bytes moved between them in memory.
struct Exchange {
  static int on_request(nghttp2_session* s, const nghttp2_frame* f, void*) {
    if (f->hd.type == NGHTTP2_HEADERS && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      const nghttp2_nv status[] = {{(uint8_t*)":status", (uint8_t*)"200", 7, 3, NGHTTP2_NV_FLAG_NONE}};
      nghttp2_submit_response(s, f->hd.stream_id, status, 1, nullptr);
    }
    return 0;
  }
  static int on_closed(nghttp2_session*, int32_t, uint32_t error, void* user) {
    if (error == 0) ++static_cast<Exchange*>(user)->answered;
    return 0;
  }

  Exchange() {
    server = new_h2_session(H2Role::server, {.on_frame_recv = on_request}, this, {}, memory.mem());
    client = new_h2_session(H2Role::client, {.on_stream_close = on_closed}, this, {}, h2_memory());
  }
  ~Exchange() {
    nghttp2_session_del(client);
    nghttp2_session_del(server);
  }
  static void move(nghttp2_session* from, nghttp2_session* to) {
    const uint8_t* data;
    for (ssize_t n; (n = nghttp2_session_mem_send(from, &data)) > 0;) {
      ASSERT_EQ(nghttp2_session_mem_recv(to, data, static_cast<size_t>(n)), n);
    }
  }
  void request() {
    const nghttp2_nv head[] = {{(uint8_t*)":method", (uint8_t*)"GET", 7, 3, NGHTTP2_NV_FLAG_NONE},
                               {(uint8_t*)":scheme", (uint8_t*)"http", 7, 4, NGHTTP2_NV_FLAG_NONE},
                               {(uint8_t*)":authority", (uint8_t*)"a", 10, 1, NGHTTP2_NV_FLAG_NONE},
                               {(uint8_t*)":path", (uint8_t*)"/", 5, 1, NGHTTP2_NV_FLAG_NONE}};
    ASSERT_GT(nghttp2_submit_request(client, nullptr, head, 4, nullptr, nullptr), 0);
    for (int i = 0; i < 4; ++i) {
      move(client, server);
      move(server, client);
    }
  }

  SessionMemory memory;
  nghttp2_session* server;
  nghttp2_session* client;
  int answered = 0;
};

TEST(SessionMemory, AnIdleSessionGivesBackItsStreamMapAndFrameBuffer) {
  Exchange x;
  // What nghttp2 1.52 allocates per session at a page or more: its stream
  // map (4 KiB) and its output frame buffer.
  EXPECT_EQ(x.memory.page_blocks(), 2u);
  EXPECT_EQ(x.memory.frame_buffers(), 1u);
  x.request();
  ASSERT_EQ(x.answered, 1);
  EXPECT_GE(x.memory.resident_bytes(), 2 * kPage);
  EXPECT_FALSE(nghttp2_session_want_write(x.server));
  // Both blocks go whole: the map is all zeros with its stream closed.
  EXPECT_GE(x.memory.release_pages(true), 6 * kPage);
  EXPECT_EQ(x.memory.resident_bytes(), 0u);
  // And the session works on, its pages faulted in afresh.
  x.request();
  EXPECT_EQ(x.answered, 2);
  EXPECT_GT(x.memory.resident_bytes(), 0u);
}

}  // namespace
}  // namespace sidemux::core
