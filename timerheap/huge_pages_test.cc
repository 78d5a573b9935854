#include "timerheap/huge_pages.h"

#include <sys/prctl.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace eventide {
namespace {

bool OnHugePageBoundary(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % huge_pages::kPageSize == 0;
}

// The THPeligible line of the mapping in /proc/self/smaps that holds `p`:
// 1 when the kernel may back it with huge pages. -1 if not found.
int ThpEligible(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 &&
        line.find(':') > line.find(' ')) {
      inside = lo <= addr && addr < hi;
      continue;
    }
    int value = 0;
    if (inside && std::sscanf(line.c_str(), "THPeligible: %d", &value) == 1) {
      return value;
    }
  }
  return -1;
}

// The system's THP mode ("madvise", "always", "never"), or "off" where
// THP is missing or turned off for this process.
std::string ThpMode() {
  if (prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) > 0) return "off";
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::stringstream text;
  text << f.rdbuf();
  for (const char* mode : {"madvise", "always", "never"}) {
    if (text.str().find(std::string("[") + mode + "]") != std::string::npos) {
      return mode;
    }
  }
  return "off";
}

TEST(HugePagesTest, WantedFromOneHugePageUp) {
  EXPECT_FALSE(huge_pages::Wanted(0));
  EXPECT_FALSE(huge_pages::Wanted(huge_pages::kPageSize - 1));
  EXPECT_TRUE(huge_pages::Wanted(huge_pages::kPageSize));
}

TEST(HugePagesTest, RoundUpToWholeHugePages) {
  EXPECT_EQ(huge_pages::RoundUp(1), huge_pages::kPageSize);
  EXPECT_EQ(huge_pages::RoundUp(huge_pages::kPageSize), huge_pages::kPageSize);
  EXPECT_EQ(huge_pages::RoundUp(huge_pages::kPageSize + 1),
            2 * huge_pages::kPageSize);
}

TEST(HugePagesTest, AllocateIsAlignedWritableAndAdvised) {
  const size_t bytes = 3 * huge_pages::kPageSize + 12345;
  void* p = huge_pages::Allocate(bytes);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(OnHugePageBoundary(p));
  // The whole rounded size is ours to write.
  std::memset(p, 0xab, huge_pages::RoundUp(bytes));
  // Where only advised memory gets huge pages, all four units are advised,
  // the partial last one too. (Kernels before 5.0 have no THPeligible.)
  if (ThpMode() == "madvise" && ThpEligible(p) != -1) {
    EXPECT_EQ(ThpEligible(p), 1) << "madvise(MADV_HUGEPAGE) not applied";
    EXPECT_EQ(ThpEligible(static_cast<char*>(p) + 3 * huge_pages::kPageSize), 1)
        << "the partial last unit was not advised";
  }
  huge_pages::Free(p, bytes);
}

TEST(HugePagesTest, AllocatorPlacesLargeArraysOnly) {
  huge_pages::Allocator<uint64_t> alloc;
  const size_t large = huge_pages::kPageSize / sizeof(uint64_t);
  uint64_t* big = alloc.allocate(large);
  EXPECT_TRUE(OnHugePageBoundary(big));
  uint64_t* small = alloc.allocate(16);
  ASSERT_NE(small, nullptr);
  small[15] = 7;
  big[large - 1] = 9;
  EXPECT_EQ(small[15] + big[large - 1], 16u);
  alloc.deallocate(small, 16);
  alloc.deallocate(big, large);
}

TEST(HugePagesTest, VectorGrowsAcrossTheThresholdAndBack) {
  // Growth from small to huge blocks copies the elements; shrinking back
  // (a fresh, smaller vector swapped in) goes the other way.
  std::vector<uint32_t, huge_pages::Allocator<uint32_t>> v;
  const uint32_t n = 3 * huge_pages::kPageSize / sizeof(uint32_t);
  for (uint32_t i = 0; i < n; ++i) v.push_back(i * 7);
  EXPECT_TRUE(OnHugePageBoundary(v.data()));
  for (uint32_t i = 0; i < n; i += 4099) ASSERT_EQ(v[i], i * 7);
  std::vector<uint32_t, huge_pages::Allocator<uint32_t>> small(v.begin(),
                                                               v.begin() + 10);
  v.swap(small);
  EXPECT_EQ(v.size(), 10u);
  EXPECT_EQ(v[9], 63u);
}

TEST(HugePagesTest, OverflowingSizeIsRefused) {
  huge_pages::Allocator<uint64_t> alloc;
  EXPECT_THROW(alloc.allocate(SIZE_MAX / 4), std::bad_array_new_length);
}

}  // namespace
}  // namespace eventide
