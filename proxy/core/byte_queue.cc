#include "proxy/core/byte_queue.h"

#include <algorithm>
#include <bit>

namespace sidemux::core {

ByteQueue::Block* ByteQueue::add_block(size_t wanted) {
  // As large as what is queued (the append included): a queue that grows
  // doubles its blocks, fewer of them to walk and free, and one that stays
  // short keeps small ones.
  size_t total = std::clamp(std::bit_ceil(sizeof(Block) + std::max(wanted, size_)), kMinBlock, kMaxBlock);
  auto* b = static_cast<Block*>(memory_->allocate(total, alignof(Block)));
  b->next = nullptr;
  b->capacity = static_cast<uint32_t>(total - sizeof(Block));
  b->begin = b->end = 0;
  b->refs = 1;
  (tail_ ? tail_->next : head_) = b;
  tail_ = b;
  tail_sealed_ = false;
  return b;
}

void ByteQueue::release(Block* b, std::pmr::memory_resource* memory) {
  if (--b->refs == 0) memory->deallocate(b, sizeof(Block) + b->capacity, alignof(Block));
}

void ByteQueue::append(const uint8_t* data, size_t len) {
  size_ += len;
  while (len > 0) {
    Block* b = tail_ && !tail_sealed_ && tail_->end < tail_->capacity ? tail_ : add_block(len);
    size_t n = std::min(len, size_t{b->capacity - b->end});
    std::memcpy(b->data() + b->end, data, n);
    b->end += static_cast<uint32_t>(n);
    data += n;
    len -= n;
  }
}

size_t ByteQueue::blocks() const {
  size_t n = 0;
  for (const Block* b = head_; b; b = b->next) ++n;
  return n;
}

void ByteQueue::consume(size_t n) {
  size_ -= n;
  while (n > 0) {
    Block* b = head_;
    size_t take = std::min(n, b->used());
    b->begin += static_cast<uint32_t>(take);
    n -= take;
    if (b->used() > 0) break;
    head_ = b->next;
    if (!head_) tail_ = nullptr;
    release(b);
  }
}

void ByteQueue::truncate(size_t n) {
  if (n >= size_) return;
  size_ = n;
  Block** link = &head_;
  Block* last = nullptr;
  while (*link && n > 0) {
    Block* b = *link;
    if (b->used() >= n) {
      b->end = static_cast<uint32_t>(b->begin + n);
      // Appends would write where a reference still reads: they go to a
      // new block.
      tail_sealed_ = b->refs > 1;
      n = 0;
    } else {
      n -= b->used();
    }
    last = b;
    link = &b->next;
  }
  for (Block* b = *link; b;) {
    Block* next = b->next;
    release(b);
    b = next;
  }
  *link = nullptr;
  tail_ = last;
}

}  // namespace sidemux::core
