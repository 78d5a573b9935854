// cached: a memcached-compatible cache server on Eventide.
//
//   cached [-p PORT] [-l ADDR] [-c MAXCONNS] [-m MB] [-I SIZE] [-t THREADS]
//          [-v] [--backend NAME] [--idle-timeout SECONDS]
//
// Prints one line saying where it listens. SIGINT/SIGTERM: stop accepting,
// finish in-flight replies, exit 0. Bad flags: exit 2 with a one-line reason.
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "apps/cached/server.h"
#include "demux/registry.h"

namespace {

constexpr char kUsage[] =
    "usage: cached [options]\n"
    "  -p, --port=PORT          TCP port to listen on (default 11211; 0 = "
    "any)\n"
    "  -l, --listen=ADDR        address to bind (default 127.0.0.1)\n"
    "  -c, --conn-limit=N       max simultaneous connections (default 1024)\n"
    "  -m, --memory-limit=MB    item memory in megabytes (default 64)\n"
    "  -I, --max-item-size=SIZE largest item, with k/m suffix (default 1m)\n"
    "  -t, --threads=N          worker threads (default 4)\n"
    "  -v, --verbose            more logging (repeatable)\n"
    "      --backend=NAME       I/O backend: epoll, poll, select, io_uring\n"
    "      --idle-timeout=SEC   close connections idle this long (0 = never)\n"
    "  -h, --help               this text\n";

[[noreturn]] void Usage(const std::string& reason) {
  std::fprintf(stderr, "cached: %s (try --help)\n", reason.c_str());
  std::exit(2);
}

int64_t ParseInt(absl::string_view flag, absl::string_view text, int64_t min,
                 int64_t max) {
  int64_t value;
  if (!absl::SimpleAtoi(text, &value) || value < min || value > max) {
    Usage(absl::StrCat(flag, " wants a whole number from ", min, " to ", max,
                       ", got '", text, "'"));
  }
  return value;
}

// memcached's -I: bytes, or a number with a k or m suffix.
size_t ParseSize(absl::string_view flag, absl::string_view text) {
  uint64_t multiplier = 1;
  absl::string_view digits = text;
  if (!digits.empty()) {
    const char last = digits.back();
    if (last == 'k' || last == 'K') multiplier = 1024;
    if (last == 'm' || last == 'M') multiplier = 1024 * 1024;
    if (multiplier != 1) digits.remove_suffix(1);
  }
  const int64_t value = ParseInt(flag, digits, 1, int64_t{1} << 40);
  const uint64_t bytes = static_cast<uint64_t>(value) * multiplier;
  // memcached refuses items under 1 KiB and over 1 GiB.
  if (bytes < 1024 || bytes > (uint64_t{1} << 30)) {
    Usage(
        absl::StrCat(flag, " must be between 1k and 1024m, got '", text, "'"));
  }
  return static_cast<size_t>(bytes);
}

eventide::cached::ServerOptions ParseFlags(int argc, char** argv) {
  eventide::cached::ServerOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_inline_value = false;
    if (arg.rfind("--", 0) == 0) {
      const size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        has_inline_value = true;
      }
    } else if (arg.size() > 2 && arg[0] == '-' && arg[1] != 'v') {
      value = arg.substr(2);  // -p11211
      arg = arg.substr(0, 2);
      has_inline_value = true;
    }
    auto next = [&]() -> std::string {
      if (has_inline_value) return value;
      if (i + 1 >= argc) Usage(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "-p" || arg == "--port") {
      options.port = static_cast<uint16_t>(ParseInt(arg, next(), 0, 65535));
    } else if (arg == "-l" || arg == "--listen") {
      options.bind = next();
    } else if (arg == "-c" || arg == "--conn-limit") {
      options.max_connections =
          static_cast<int>(ParseInt(arg, next(), 1, 1 << 20));
    } else if (arg == "-m" || arg == "--memory-limit") {
      options.memory_limit =
          static_cast<size_t>(ParseInt(arg, next(), 1, 1 << 20)) << 20;
    } else if (arg == "-I" || arg == "--max-item-size") {
      options.item_size_max = ParseSize(arg, next());
    } else if (arg == "-t" || arg == "--threads") {
      options.threads = static_cast<int>(ParseInt(arg, next(), 1, 256));
    } else if (arg == "--verbose" ||
               (arg.size() >= 2 && arg[0] == '-' && arg[1] == 'v' &&
                arg.find_first_not_of('v', 1) == std::string::npos)) {
      options.verbosity +=
          arg == "--verbose" ? 1 : static_cast<int>(arg.size()) - 1;
    } else if (arg == "--backend") {
      options.backend = next();
      const std::vector<std::string> known = eventide::AvailableBackendNames();
      if (std::find(known.begin(), known.end(), options.backend) ==
          known.end()) {
        Usage("unknown backend '" + options.backend +
              "'; available: " + absl::StrJoin(known, ", "));
      }
    } else if (arg == "--idle-timeout") {
      const int64_t seconds = ParseInt(arg, next(), 0, 86400 * 365);
      options.idle_timeout =
          seconds == 0 ? absl::InfiniteDuration() : absl::Seconds(seconds);
    } else {
      Usage("unknown option '" + std::string(argv[i]) + "'");
    }
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  eventide::cached::ServerOptions options = ParseFlags(argc, argv);
  // Writes to a vanished peer must fail with EPIPE, not kill the server.
  signal(SIGPIPE, SIG_IGN);
  absl::StatusOr<std::unique_ptr<eventide::cached::Server>> server =
      eventide::cached::Server::Create(options);
  if (!server.ok()) {
    std::fprintf(stderr, "cached: cannot start: %s\n",
                 std::string(server.status().message()).c_str());
    return 1;
  }
  std::printf("cached: listening on %s:%u (%d worker threads, %s backend)\n",
              options.bind.c_str(), static_cast<unsigned>((*server)->port()),
              options.threads, std::string((*server)->backend_name()).c_str());
  std::fflush(stdout);
  absl::Status status = (*server)->Run();
  if (!status.ok()) {
    std::fprintf(stderr, "cached: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
