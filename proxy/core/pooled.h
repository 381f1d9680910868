// Objects and map nodes that come and go with every stream, taken from the
// loop's stream memory (LoopContext::stream_memory(), small blocks from the
// thread's free lists: small_blocks.h) instead of the heap: in steady state
// a stream's bookkeeping reuses the blocks its predecessors freed.
#pragma once

#include <memory>
#include <memory_resource>
#include <new>
#include <utility>

namespace sidemux::core {

template <class T>
struct PoolDelete {
  std::pmr::memory_resource* pool = nullptr;
  void operator()(T* p) const {
    p->~T();
    pool->deallocate(p, sizeof(T), alignof(T));
  }
};

template <class T>
using Pooled = std::unique_ptr<T, PoolDelete<T>>;

template <class T, class... Args>
Pooled<T> make_pooled(std::pmr::memory_resource& pool, Args&&... args) {
  void* p = pool.allocate(sizeof(T), alignof(T));
  try {
    return Pooled<T>(new (p) T(std::forward<Args>(args)...), PoolDelete<T>{&pool});
  } catch (...) {
    pool.deallocate(p, sizeof(T), alignof(T));
    throw;
  }
}

}  // namespace sidemux::core
