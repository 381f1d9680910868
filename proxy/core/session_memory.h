// One nghttp2 session's allocator (its nghttp2_mem), for client
// connections: small blocks come from the thread's free lists
// (small_blocks.h), and blocks of a page or more are page-aligned heap
// blocks of its own, whose pages it can give back while the connection
// idles. Member connections (a pool holds a few) use h2_memory().
//
// Why: an idle HTTP/2 connection held about 18 KiB, and half of it was two
// page-sized buffers that nghttp2 allocates per session and never shrinks,
// holding nothing between uses: the stream map (4 KiB of buckets,
// all zero once its last stream closed) and the output frame buffer (a
// 16 KiB frame plus header, of which the frames it once packed touched the
// first pages). nghttp2 1.52 has no call to shrink or park a session, and
// both are live members of it; but their pages can be handed back with
// madvise(MADV_DONTNEED), after which they read as zeros and are faulted in
// afresh when next written. That is right for a page that is all zeros
// already, and for a frame buffer whose bytes were all sent. Envoy and
// nghttpx leave these buffers resident; nginx frees its per-connection
// buffers between requests, which this comes closest to.
//
// A page block lives in the heap (aligned_alloc), so no mmap per session;
// only whole pages inside the block are released, never the allocator's
// own bookkeeping around it.
#pragma once

#include <nghttp2/nghttp2.h>

#include <array>
#include <cstddef>
#include <cstdint>

namespace sidemux::core {

class SessionMemory {
 public:
  SessionMemory();
  // nghttp2 keeps a copy of mem() that points back here: outlives the
  // session, and stays where it is.
  SessionMemory(const SessionMemory&) = delete;
  SessionMemory& operator=(const SessionMemory&) = delete;

  // For nghttp2_session_{client,server}_new3.
  nghttp2_mem* mem() { return &mem_; }

  // Gives back the pages of the session's page blocks that hold nothing:
  // every all-zero page, and with `output_sent` (nghttp2 has nothing left
  // to send: nghttp2_session_want_write() is 0, so no frame is half
  // handed out) every page of its frame buffers. Returns the bytes given
  // back. A syscall per block: for a connection that went quiet, not per
  // request.
  size_t release_pages(bool output_sent);

  // nghttp2 1.52 makes each chunk of its output frame buffer (nghttp2_bufs)
  // with realloc(NULL, NGHTTP2_FRAMEBUF_CHUNKLEN): a frame header, a pad
  // length byte and the largest payload. Nothing else a session allocates
  // starts as a realloc of that exact size (header fields are malloc'd
  // rcbufs; the other reallocs from nothing, its priority queues', start at
  // 32 bytes), which is how a chunk is told from blocks whose bytes are
  // live. session_memory_test checks that a new session makes exactly one,
  // so a library that allocates otherwise fails it.
  static constexpr size_t kFrameBufferChunk = 9 + 1 + 16384;

  // For tests: how many blocks it holds as page blocks, how many of them
  // are frame buffers, and how many of their bytes are resident (mincore).
  size_t page_blocks() const { return count_; }
  size_t frame_buffers() const;
  size_t resident_bytes() const;

 private:
  struct PageBlock {
    void* data;
    uint32_t size;  // a whole number of pages
    bool frame_buffer;
  };

  static void* malloc(size_t size, void* self);
  static void free(void* p, void* self);
  static void* calloc(size_t n, size_t size, void* self);
  static void* realloc(void* p, size_t size, void* self);

  void* allocate_pages(size_t size);
  [[gnu::noinline]] void free_aligned(void* p);
  PageBlock* find(void* p);
  void forget(PageBlock* b);

  nghttp2_mem mem_;
  // A session holds one frame buffer chunk (up to four while a header
  // block larger than a frame goes out: nghttp2's 64 KiB bound on one), one
  // stream map, and for a moment an inbound frame's buffer; past this
  // many, blocks are small blocks'.
  std::array<PageBlock, 8> blocks_{};
  uint8_t count_ = 0;
};

}  // namespace sidemux::core
