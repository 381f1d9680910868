#include "proxy/core/small_blocks.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SIDEMUX_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define SIDEMUX_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define SIDEMUX_POISON(p, n) ((void)(p), (void)(n))
#define SIDEMUX_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace sidemux::core {

namespace {

// Hand-written rather than a std::pmr pool: an intrusive list per size
// class is a handful of instructions where the pmr pools search their chunks
// on every deallocate (see the header).
//
// Blocks of 32, 64, ... 16384 bytes; larger ones are malloc's. nghttp2_mem's
// free() is not told the size, so nghttp2's blocks carry their class in a
// header, which keeps the caller's block at malloc's alignment.
constexpr size_t kHeader = alignof(std::max_align_t);
constexpr size_t kSmallest = 32;
constexpr size_t kClasses = 10;
constexpr size_t kLargest = kSmallest << (kClasses - 1);
// nghttp2's own blocks stop at 1 KiB: above that it allocates per session
// (its 4 KiB stream map, its 16 KiB frame buffer), and with the header a
// class would round each up to twice its size for every idle connection.
// The stream memory's larger blocks are body queues' (ByteQueue), sized to
// the classes, and come and go with the traffic.
constexpr size_t kH2Largest = 1024;
constexpr uint32_t kLargeBlock = UINT32_MAX;

struct alignas(kHeader) Header {
  uint32_t size_class;  // kLargeBlock: from malloc, returned to it
  uint32_t size;        // what the caller asked for (realloc copies that much)
};
static_assert(sizeof(Header) == kHeader);

struct FreeBlock {
  FreeBlock* next;
};

constexpr size_t class_of(size_t total) { return static_cast<size_t>(std::bit_width((total - 1) / kSmallest)); }
constexpr size_t class_size(size_t c) { return kSmallest << c; }
static_assert(class_of(kSmallest) == 0 && class_of(kSmallest + 1) == 1 && class_of(kLargest) == kClasses - 1);

// Trivially destructible, so that it stays usable to the end of its
// thread: a session that a later thread_local destructor frees, or one
// freed during exit() on the main thread, must still find the lists. What
// they cache is freed by ExitDrain instead, which the thread's first
// cached block brings to life.
class ThreadLists {
 public:
  constexpr ThreadLists() = default;
  ThreadLists(const ThreadLists&) = delete;
  ThreadLists& operator=(const ThreadLists&) = delete;

  // At thread exit: everything cached goes, and later frees go to malloc.
  void end() {
    for (size_t c = 0; c < kClasses; ++c) free_blocks(c, lists_[c].count);
    cap_ = 0;
    ended_ = true;
  }

  // A block of class `c` of which the first `bytes` may be touched.
  void* take(size_t c, size_t bytes) {
    List& list = lists_[c];
    void* block = list.head;
    if (block) {
      SIDEMUX_UNPOISON(block, sizeof(FreeBlock));
      list.head = list.head->next;
      --list.count;
      list.low_water = std::min(list.low_water, list.count);
      cached_bytes_ -= class_size(c);
    } else {
      block = std::malloc(class_size(c));
      if (!block) return nullptr;
    }
    SIDEMUX_POISON(block, class_size(c));
    SIDEMUX_UNPOISON(block, bytes);
    return block;
  }

  void give(void* block, size_t c) {
    List& list = lists_[c];
    if (cached_bytes_ + class_size(c) > cap_) {
      if (cap_ == 0 && !ended_) {
        start();  // the thread's first block to keep
      } else {
        SIDEMUX_UNPOISON(block, class_size(c));
        std::free(block);
        return;
      }
    }
    // The link may lie past what the block's last owner could touch.
    SIDEMUX_UNPOISON(block, sizeof(FreeBlock));
    auto* b = static_cast<FreeBlock*>(block);
    b->next = list.head;
    list.head = b;
    ++list.count;
    cached_bytes_ += class_size(c);
    SIDEMUX_POISON(block, class_size(c));
  }

  // Per class: as many blocks as lay unused on its list since the last
  // decay (the list's low-water mark) go; the rest is what the period's
  // traffic drew on.
  size_t decay() {
    size_t before = cached_bytes_;
    for (size_t c = 0; c < kClasses; ++c) {
      free_blocks(c, lists_[c].low_water);
      lists_[c].low_water = lists_[c].count;
    }
    return before - cached_bytes_;
  }

  size_t cached_bytes() const { return cached_bytes_; }

 private:
  struct List {
    FreeBlock* head = nullptr;
    size_t count = 0;
    size_t low_water = 0;  // the least count since the last decay()
  };

  void free_blocks(size_t c, size_t n) {
    List& list = lists_[c];
    for (; n > 0; --n) {
      FreeBlock* b = list.head;
      SIDEMUX_UNPOISON(b, class_size(c));
      list.head = b->next;
      --list.count;
      cached_bytes_ -= class_size(c);
      std::free(b);
    }
    list.low_water = std::min(list.low_water, list.count);
  }

  void start();

  std::array<List, kClasses> lists_;
  size_t cached_bytes_ = 0;
  size_t cap_ = 0;  // kMaxCachedBytes from the first block kept until end()
  bool ended_ = false;
};

constinit thread_local ThreadLists lists;

// Destroyed before every thread_local constructed before the thread's first
// cached block, whose frees then go to malloc.
struct ExitDrain {
  void arm() {}
  ~ExitDrain() { lists.end(); }
};
thread_local ExitDrain exit_drain;

void ThreadLists::start() {
  exit_drain.arm();  // odr-uses it: constructed now, destroyed at thread exit
  cap_ = kMaxCachedBytes;
}

// The memory_resource: deallocate is told the size, so no header; what is
// over-aligned or large is the heap's.
class SmallBlockResource final : public std::pmr::memory_resource {
 private:
  static bool small(size_t bytes, size_t alignment) { return bytes <= kLargest && alignment <= kHeader; }

  void* do_allocate(size_t bytes, size_t alignment) override {
    if (!small(bytes, alignment)) return std::pmr::new_delete_resource()->allocate(bytes, alignment);
    void* p = lists.take(class_of(bytes == 0 ? 1 : bytes), bytes);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void do_deallocate(void* p, size_t bytes, size_t alignment) override {
    if (!small(bytes, alignment)) return std::pmr::new_delete_resource()->deallocate(p, bytes, alignment);
    lists.give(p, class_of(bytes == 0 ? 1 : bytes));
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }
};

SmallBlockResource resource;

}  // namespace

// nghttp2_mem: a header before each block.

void* h2_block_malloc(size_t size, void*) {
  if (size > kH2Largest - kHeader) {
    auto* h = static_cast<Header*>(std::malloc(kHeader + size));
    if (!h) return nullptr;
    h->size_class = kLargeBlock;
    return h + 1;
  }
  size_t c = class_of(kHeader + size);
  auto* h = static_cast<Header*>(lists.take(c, kHeader + size));
  if (!h) return nullptr;
  h->size_class = static_cast<uint32_t>(c);
  h->size = static_cast<uint32_t>(size);
  return h + 1;
}

void h2_block_free(void* p, void*) {
  if (!p) return;
  Header* h = static_cast<Header*>(p) - 1;
  if (h->size_class == kLargeBlock) {
    std::free(h);
  } else {
    lists.give(h, h->size_class);
  }
}

void* h2_block_calloc(size_t n, size_t size, void* user) {
  if (size != 0 && n > SIZE_MAX / size) return nullptr;
  void* p = h2_block_malloc(n * size, user);
  if (p) std::memset(p, 0, n * size);
  return p;
}

void* h2_block_realloc(void* p, size_t size, void* user) {
  if (!p) return h2_block_malloc(size, user);
  Header* h = static_cast<Header*>(p) - 1;
  if (h->size_class == kLargeBlock) {
    auto* grown = static_cast<Header*>(std::realloc(h, kHeader + size));
    return grown ? grown + 1 : nullptr;
  }
  if (kHeader + size <= class_size(h->size_class)) {
    SIDEMUX_POISON(p, class_size(h->size_class) - kHeader);
    SIDEMUX_UNPOISON(p, size);
    h->size = static_cast<uint32_t>(size);
    return p;
  }
  void* moved = h2_block_malloc(size, user);
  if (!moved) return nullptr;
  std::memcpy(moved, p, h->size);
  h2_block_free(p, user);
  return moved;
}

nghttp2_mem* h2_memory() {
  static nghttp2_mem memory{nullptr, h2_block_malloc, h2_block_free, h2_block_calloc, h2_block_realloc};
  return &memory;
}

std::pmr::memory_resource& small_block_resource() { return resource; }

size_t decay_small_blocks() { return lists.decay(); }

size_t small_blocks_cached_bytes() { return lists.cached_bytes(); }

}  // namespace sidemux::core

