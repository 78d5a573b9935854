// eventide_info: what Eventide would use on this machine. Lists the I/O
// backends compiled in, tries each on the running kernel, shows which one
// the registry picks (honouring EVENTIDE_BACKEND and --backend) and why, and
// which clock source the loop reads. Then runs a loop for a moment to show it
// works: a timer, a socketpair echo and a cross-thread post.
//
//   eventide_info [--backend NAME] [--avoid NAME]...
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "clock/system_time_source.h"
#include "demux/registry.h"
#include "loop/event_loop.h"

namespace {

int Fail(const std::string& reason) {
  std::fprintf(stderr, "eventide_info: %s\n", reason.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  eventide::BackendOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--backend" || arg == "--avoid") && i + 1 < argc) {
      if (arg == "--backend") {
        options.name = argv[++i];
      } else {
        options.avoid.push_back(argv[++i]);
      }
    } else if (arg == "--help" || arg == "-h") {
      std::printf("usage: eventide_info [--backend NAME] [--avoid NAME]...\n");
      return 0;
    } else {
      std::fprintf(stderr,
                   "eventide_info: unknown argument '%s' (try --help)\n",
                   arg.c_str());
      return 2;
    }
  }

  std::printf("I/O backends compiled in (preference order):\n");
  for (const std::string& name : eventide::AvailableBackendNames()) {
    eventide::BackendOptions probe;
    probe.name = name;
    probe.ignore_environment = true;
    absl::StatusOr<eventide::BackendSelection> s =
        eventide::CreateBackend(probe);
    std::printf("  %-9s %s\n", name.c_str(),
                s.ok() ? "works on this kernel"
                       : std::string(s.status().message()).c_str());
  }

  eventide::SystemTimeSource& clock = eventide::SystemTimeSource::Default();
  std::printf(
      "clock source: %s (%s)\n", std::string(clock.name()).c_str(),
      clock.is_monotonic() ? "monotonic" : "wall clock, jumps corrected");

  eventide::LoopOptions loop_options;
  loop_options.backend = options;
  absl::StatusOr<std::unique_ptr<eventide::EventLoop>> loop =
      eventide::EventLoop::Create(loop_options);
  if (!loop.ok()) return Fail(std::string(loop.status().message()));
  std::printf("chosen backend: %s\n  why: %s\n",
              std::string((*loop)->backend_name()).c_str(),
              (*loop)->backend_reason().c_str());

  // A short demonstration that the loop runs: one byte through a socketpair,
  // a post from another thread and a timer, all within one Run().
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds)) {
    return Fail(std::string("socketpair: ") + std::strerror(errno));
  }
  std::vector<std::string> seen;
  auto watcher = (*loop)->WatchIo(fds[0], eventide::kReadable,
                                  [&](const eventide::IoEvent&) {
                                    char c;
                                    if (read(fds[0], &c, 1) == 1) {
                                      seen.push_back("socket readable");
                                    }
                                  });
  if (!watcher.ok()) return Fail(std::string(watcher.status().message()));
  const eventide::MonoTime start = (*loop)->Now();
  eventide::Timer timer = (*loop)->AddTimer(absl::Milliseconds(5), [&] {
    seen.push_back("timer after " +
                   absl::FormatDuration((*loop)->Now() - start));
    (*loop)->Stop();
  });
  std::thread poster([&] {
    (void)(*loop)->Post([&] { seen.push_back("post from another thread"); });
  });
  if (write(fds[1], "x", 1) != 1) return Fail("write to socketpair failed");
  absl::Status run = (*loop)->Run(eventide::EventLoop::RunMode::kUntilStopped);
  poster.join();
  watcher->Release();
  close(fds[0]);
  close(fds[1]);
  if (!run.ok()) return Fail(std::string(run.message()));
  std::printf("loop check: %s\n", absl::StrJoin(seen, ", ").c_str());
  const eventide::LoopStats& stats = (*loop)->stats();
  std::printf("  %llu iterations, %llu callbacks\n",
              static_cast<unsigned long long>(stats.iterations),
              static_cast<unsigned long long>(stats.callbacks_run));
  return 0;
}
