// Small blocks from per-thread free lists, larger ones from malloc: the
// allocator of every nghttp2 session (nghttp2_mem) and the loop's stream
// memory (a std::pmr::memory_resource, LoopContext::stream_memory()).
//
// nghttp2 allocates per stream and per frame (its stream, each outbound
// item, each submitted header block's copy, each received header field's
// rcbuf), sidemux per stream (its stream objects, header lists, body
// queues, map nodes), and all of it is freed again within the request.
// Under load these come and go in bursts (a read brings ten requests)
// larger than glibc's per-thread cache, so most took malloc's slow paths;
// std::pmr::unsynchronized_pool_resource, which held the stream memory
// before, costs about as much, searching its chunks on every deallocate, and
// never gave back what a peak took. Here a freed block goes onto its
// thread's list for its size class and the next allocation of that class
// takes it back.
//
// Thread-safety without locks: the lists are thread_local, so a block freed
// on another thread than the one that allocated it only moves to that
// thread's list; each worker loop (one thread) holds its sessions and
// streams anyway.
// Bounded: a thread's lists keep at most kMaxCachedBytes together and free
// the rest, whatever the load was; blocks that lay unused for a whole
// decay period go back to malloc (decay_small_blocks), so that the heap
// pages a peak's blocks pin can be returned; and the lists are freed when
// the thread ends, after which its frees go to malloc.
//
// Under AddressSanitizer a cached block is poisoned, so a use after free is
// still reported (though reuse comes sooner than from ASan's quarantine),
// and an allocation is unpoisoned only for the bytes asked for, so an
// overflow into the rest of its size class is reported too.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <memory_resource>

namespace sidemux::core {

// One per process, for nghttp2_session_{client,server}_new3: these four
// functions (`user` unused), which session_memory.h builds on.
nghttp2_mem* h2_memory();
void* h2_block_malloc(size_t size, void* user);
void h2_block_free(void* p, void* user);
void* h2_block_calloc(size_t n, size_t size, void* user);
void* h2_block_realloc(void* p, size_t size, void* user);

// One per process; its blocks are the calling thread's.
std::pmr::memory_resource& small_block_resource();

// Frees the calling thread's blocks that no allocation drew on since its
// last call (the low-water mark of its lists) and returns their bytes.
// Called once a period, it keeps what the period's traffic used, bursts
// included, and gives back what a peak left: a flood's thousands of
// streams, or a crowd of connections that came and went, fill the lists to
// their cap, and steady traffic after them never empties them.
size_t decay_small_blocks();

// Bytes cached on the calling thread's lists, for tests.
size_t small_blocks_cached_bytes();

// The cap of a thread's lists. Sized for the bench's 640 streams in flight
// on one worker (64 connections of 10), whose frees come in bursts of
// whole streams (about 6 KiB each, both sides). Body queues' blocks of up
// to 16 KiB share it: a worker's large transfers may fill it, after which
// frees go to malloc until the next decay. With nghttp2's blocks
// alone, 64 KiB per size class left a third of them to malloc (46.1k
// instructions per request against 44.4k with 1 MiB); with the stream
// memory too, 1 MiB left it 12 mallocs per request (44.4k against 39.6k).
inline constexpr size_t kMaxCachedBytes = 4 * 1024 * 1024;

}  // namespace sidemux::core
