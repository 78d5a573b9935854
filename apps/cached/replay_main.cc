// cached_replay: feeds stdin to one Session over a fresh Store (real clock)
// and writes the replies to stdout. A debugging aid for comparing our replies
// with a real memcached's on the same byte stream (see README.md):
//
//   ./bazelw build //apps/cached:cached_replay
//   bazel-bin/apps/cached/cached_replay < requests.bin > ours.bin

#include <stdio.h>

#include <string>

#include "apps/cached/session.h"
#include "apps/cached/store.h"
#include "apps/cached/unix_clock.h"

int main() {
  std::string input;
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0) input.append(buf, n);

  auto clock = eventide::cached::MonotonicUnixClock::FromSystem();
  eventide::cached::Store store(eventide::cached::StoreOptions(), clock.get());
  eventide::cached::SessionConfig config;
  config.store = &store;
  eventide::cached::Session session(config);
  std::string out;
  session.Consume(input, &out);
  fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}
