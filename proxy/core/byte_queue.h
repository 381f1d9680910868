// A FIFO of bytes in a chain of blocks: appended at the back, consumed from
// the front, read out at an offset (a request body is kept from its start
// until the member answered, for a retry).
//
// Blocks rather than one contiguous buffer: consuming the front of a
// contiguous buffer moves what is left down, and growing it copies it all,
// which together cost more than the one copy in (a 1 MiB message up and
// down made three copies of every byte, memmove and regrowth two of them).
// Here a byte is copied in once, and a large DATA frame takes its payload
// from the blocks without a copy (Tail::for_each_block: the transport
// holds a reference to each block until the bytes are written, so a block
// outlives its queue or its consumption as long as the write needs it). A
// new block is sized to what is queued, up to kMaxBlock: a 101-byte unary
// body takes one 128-byte block, a large transfer 16 KiB ones, and a Watch
// a message behind small ones. Blocks come from the given memory resource
// (the loop's stream memory, whose free lists recycle them, as far as
// their cap goes) and go back to it as soon as they are consumed and no
// write holds them: an idle stream holds none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory_resource>
#include <utility>

namespace sidemux::core {

class ByteQueue {
  struct Block;

 public:
  // Block sizes, their header included: powers of two, the free lists'
  // size classes, so that none is rounded up.
  static constexpr size_t kMinBlock = 128;
  static constexpr size_t kMaxBlock = 16 * 1024;

  // A share of a block: the block is freed when its queue and every
  // reference let go of it. One thread's: the count is not atomic.
  class BlockRef {
   public:
    BlockRef() = default;
    BlockRef(BlockRef&& o) noexcept : b_(std::exchange(o.b_, nullptr)), memory_(o.memory_) {}
    BlockRef& operator=(BlockRef&& o) noexcept {
      std::swap(b_, o.b_);
      std::swap(memory_, o.memory_);
      return *this;
    }
    ~BlockRef() {
      if (b_) release(b_, memory_);
    }

   private:
    friend class ByteQueue;
    BlockRef(Block* b, std::pmr::memory_resource* memory) : b_(b), memory_(memory) { ++b->refs; }
    Block* b_ = nullptr;
    std::pmr::memory_resource* memory_ = nullptr;
  };

  // The bytes from an offset on, for a DATA frame of the body in the queue.
  class Tail {
   public:
    Tail(const ByteQueue& queue, size_t offset) : queue_(&queue), offset_(offset) {}
    // fn(const uint8_t* data, size_t len) for the next n bytes in order, in
    // as many spans as they lie in blocks.
    template <class Fn>
    void for_each(size_t n, Fn fn) const {
      queue_->for_each(offset_, n, fn);
    }
    // fn(const uint8_t* data, size_t len, BlockRef ref): the same spans, each
    // with a reference that keeps its bytes as they are.
    template <class Fn>
    void for_each_block(size_t n, Fn fn) const {
      queue_->for_each_block(offset_, n,
                             [this, &fn](const uint8_t* data, size_t len, Block* b) {
                               fn(data, len, BlockRef(b, queue_->memory_));
                             });
    }
    void copy_to(uint8_t* to, size_t n) const {
      for_each(n, [&to](const uint8_t* data, size_t len) {
        std::memcpy(to, data, len);
        to += len;
      });
    }

   private:
    const ByteQueue* queue_;
    size_t offset_;
  };

  ByteQueue() : ByteQueue(std::pmr::get_default_resource()) {}
  explicit ByteQueue(std::pmr::memory_resource* memory) : memory_(memory) {}
  ByteQueue(const ByteQueue&) = delete;
  ByteQueue& operator=(const ByteQueue&) = delete;
  ~ByteQueue() { clear(); }

  void append(const uint8_t* data, size_t len);
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Blocks held, for tests.
  size_t blocks() const;

  // Drops the first n bytes (at most size()).
  void consume(size_t n);
  // Keeps the first n bytes, drops the rest.
  void truncate(size_t n);
  void clear() { truncate(0); }

  Tail from(size_t offset) const { return Tail(*this, offset); }

  // fn(const uint8_t* data, size_t len) for the bytes [offset, offset + n),
  // which must lie within the queue, in order.
  template <class Fn>
  void for_each(size_t offset, size_t n, Fn fn) const {
    for_each_block(offset, n, [&fn](const uint8_t* data, size_t len, Block*) { fn(data, len); });
  }

 private:
  // Bytes before `begin` were consumed and bytes up to `end` appended: a
  // reference only ever reads bytes between the two as they were when it
  // was taken, and appends only write past `end` (after truncate() cut a
  // block that a reference holds, they go to a new block instead).
  struct Block {
    Block* next;
    uint32_t capacity;  // the bytes after the header
    uint32_t begin;
    uint32_t end;
    uint32_t refs;  // the queue's (until consumed or cut off) and BlockRefs
    size_t used() const { return end - begin; }
    uint8_t* data() { return reinterpret_cast<uint8_t*>(this + 1); }
    const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(this + 1); }
  };

  // fn(data, len, Block*) for the bytes [offset, offset + n).
  template <class Fn>
  void for_each_block(size_t offset, size_t n, Fn fn) const {
    if (n == 0) return;
    Block* b = head_;
    while (offset >= b->used()) {
      offset -= b->used();
      b = b->next;
    }
    while (n > 0) {
      size_t len = b->used() - offset;
      if (len > n) len = n;
      fn(b->data() + b->begin + offset, len, b);
      n -= len;
      offset = 0;
      b = b->next;
    }
  }

  Block* add_block(size_t wanted);
  static void release(Block* b, std::pmr::memory_resource* memory);
  void release(Block* b) { release(b, memory_); }

  std::pmr::memory_resource* memory_;
  Block* head_ = nullptr;
  Block* tail_ = nullptr;
  bool tail_sealed_ = false;  // truncate() cut the tail under a reference
  size_t size_ = 0;
};

}  // namespace sidemux::core
