// Copyright 2026 The Eventide Authors.
//
// Memory for large arrays: the timer heap's entry array, slot records and
// payloads. Arrays of 2 MB and more are placed on 2 MB boundaries, sized
// in whole 2 MB units, and advised as candidates for transparent huge
// pages (madvise MADV_HUGEPAGE). That takes effect where THP is enabled as
// "madvise" (Debian's default) or "always"; with "never", or on a kernel
// without THP, the advice is ignored and the memory is ordinary.
//
// What it buys, measured (timerbench and timer_heap_benchmark at a million
// timers, pinned; numbers in timerheap/README.md): page faults. glibc's
// malloc serves arrays this large from fresh mappings, returned to the
// kernel when freed, until its mmap threshold has risen past their size,
// so growing a heap to a million entries faulted its arrays in 4 KB at a
// time: about 23,000 of timerbench's 64,000 page faults per repetition, at
// a microsecond or more each on a VM. On huge pages they fault in 2 MB at
// a time. Fewer TLB misses on random access did not show: with malloc
// told to keep its memory (so that the arrays are reused and nothing
// faults), the builds with and without this were level.
//
// The event loop's 96-byte slots were tried on huge pages too and left off:
// AddTimer swung between 38 and 85 ns from run to run where the heap
// arrays alone gave a steady 30-32 (this VM).
//
// The price: with THP's defrag setting at "madvise" (the default), a fault
// in an advised region may compact memory synchronously when no free 2 MB
// page is at hand. Here that happens only while a heap grows past 2 MB,
// inside a reallocation that copies the whole array anyway. On the
// machine these numbers come from, /proc/vmstat's compact_stall stayed 0
// through 23,000 huge page faults. A process that wants none of it turns
// THP off for itself with prctl(PR_SET_THP_DISABLE), which this advice
// respects.
//
// Smaller arrays come from operator new as before: a huge page would commit
// up to 2 MB for them at the first touch.
//
// Header-only, and depends on nothing but the C++ standard library and, on
// Linux, <sys/mman.h>, so that //timerheap stays a leaf.

#ifndef EVENTIDE_TIMERHEAP_HUGE_PAGES_H_
#define EVENTIDE_TIMERHEAP_HUGE_PAGES_H_

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace eventide {
namespace huge_pages {

// A transparent huge page with 4 KB base pages (x86-64, and arm64 kernels
// with 4 KB pages).
inline constexpr size_t kPageSize = size_t{2} << 20;

// Whether an array of `bytes` is large enough to be placed on huge pages.
constexpr bool Wanted(size_t bytes) { return bytes >= kPageSize; }

// The size Allocate(bytes) reserves: whole huge pages, so that the last one
// is not shared with the allocator's other blocks (THP maps only 2 MB
// ranges that lie entirely inside one mapping).
inline size_t RoundUp(size_t bytes) {
  if (bytes > std::numeric_limits<size_t>::max() - (kPageSize - 1)) {
    std::fprintf(stderr, "eventide::huge_pages: allocation size overflow\n");
    std::abort();
  }
  return (bytes + kPageSize - 1) & ~(kPageSize - 1);
}

// RoundUp(bytes) bytes on a kPageSize boundary, all advised for huge pages.
// Throws std::bad_alloc like operator new. Release with Free(p, bytes).
//
// A partial last unit is advised too. The heap's entry array is a power of
// two of 16-byte entries plus a 48-byte shift (SiblingAlignedAllocator), so
// its last three entries fault in a whole 2 MB page of their own, once per
// doubling, when the array is full. Leaving that unit on 4 KB pages was
// measured slower: AddTimer at 1M 32.4-34.9 against 29.5-30.6 ns (4
// interleaved pinned rounds). The rounding is not in MemoryBytes().
//
// The advice stays on the range after Free: malloc may hand it out again,
// and what it places there may then get huge pages too.
inline void* Allocate(size_t bytes) {
  const size_t size = RoundUp(bytes);
  void* p = ::operator new(size, std::align_val_t(kPageSize));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  // Advice only: EINVAL where THP is compiled out changes nothing.
  (void)madvise(p, size, MADV_HUGEPAGE);
#endif
  return p;
}

inline void Free(void* p, size_t /*bytes*/) {
  // Unsized: clang builds without -fsized-deallocation lack the sized form.
  ::operator delete(p, std::align_val_t(kPageSize));
}

// A std::allocator that places arrays of kPageSize bytes and more on huge
// pages (see above); smaller ones come from std::allocator.
template <typename T>
struct Allocator {
  using value_type = T;

  Allocator() = default;
  template <typename U>
  Allocator(const Allocator<U>&) {}  // NOLINT(runtime/explicit)

  T* allocate(size_t n) {
    if (n > std::numeric_limits<size_t>::max() / sizeof(T)) {
      throw std::bad_array_new_length();
    }
    if (!Wanted(n * sizeof(T))) return std::allocator<T>().allocate(n);
    static_assert(alignof(T) <= kPageSize, "over-aligned element type");
    return static_cast<T*>(Allocate(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) {
    if (!Wanted(n * sizeof(T))) {
      std::allocator<T>().deallocate(p, n);
      return;
    }
    Free(p, n * sizeof(T));
  }

  friend bool operator==(const Allocator&, const Allocator&) { return true; }
  friend bool operator!=(const Allocator&, const Allocator&) { return false; }
};

}  // namespace huge_pages
}  // namespace eventide

#endif  // EVENTIDE_TIMERHEAP_HUGE_PAGES_H_
