// The allocator every nghttp2 session of sidemux uses (nghttp2_mem): small
// blocks from per-thread free lists, larger ones from malloc.
//
// nghttp2 allocates per stream and per frame (its stream, each outbound
// item, each submitted header block's copy, each received header field's
// rcbuf) and frees them again within the request. Under load these come and
// go in bursts (a read brings ten requests) larger than glibc's per-thread
// cache, so most of them took malloc's slow paths: a third of the proxy's
// allocator time per request. Here a freed block goes onto its thread's list
// for its size class and the next allocation of that class takes it back.
//
// Thread-safety without locks: the lists are thread_local, so a block freed
// on another thread than the one that allocated it only moves to that
// thread's list; each worker loop (one thread) holds its sessions anyway.
// Bounded: a thread's lists keep at most kMaxCachedBytes together and free
// the rest, whatever the load was, and they are freed when the thread ends.
//
// Under AddressSanitizer a cached block is poisoned, so a use after free is
// still reported (though reuse comes sooner than from ASan's quarantine),
// and an allocation is unpoisoned only for the bytes asked for, so an
// overflow into the rest of its size class is reported too.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>

namespace sidemux::core {

// One per process, for nghttp2_session_{client,server}_new3.
nghttp2_mem* h2_memory();

// Bytes cached on the calling thread's lists, for tests.
size_t h2_memory_cached_bytes();

// The cap of a thread's lists. Sized for the bench's 640 streams in flight
// on one worker (64 connections of 10), whose frees come in bursts: 64 KiB
// left a third of the blocks to malloc (45.2k instructions per request
// against 43.8k); 1 MiB is 4096 of the 256-byte blocks most of a stream's
// items take.
inline constexpr size_t kMaxCachedBytes = 1024 * 1024;

}  // namespace sidemux::core
