// A user's program that takes only Eventide's timer heap: a tiny job
// scheduler ordering work by deadline. Exits non-zero if the heap hands the
// jobs back in the wrong order, so the consumer check is a real test.
#include <cstdio>
#include <string>
#include <vector>

#include "timerheap/timer_heap.h"

int main() {
  eventide::TimerHeap<int, std::string> jobs;
  jobs.Push(30, "third");
  auto cancelled = jobs.Push(5, "never");
  jobs.Push(10, "first");
  auto moved = jobs.Push(40, "second");
  jobs.Cancel(cancelled);
  jobs.Reschedule(moved, 20);

  std::vector<std::string> order;
  while (!jobs.empty()) order.push_back(jobs.Pop().second);
  const std::vector<std::string> want = {"first", "second", "third"};
  if (order != want) {
    std::fprintf(stderr, "consumer: jobs came out in the wrong order\n");
    return 1;
  }
  std::printf("consumer: 3 jobs in deadline order\n");
  return 0;
}
