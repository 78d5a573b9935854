#include "tests/fault_test_util.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/base/config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace eventide {
namespace fault_test {

// absl/base/config.h detects both with GCC's __SANITIZE_* macros and
// Clang's __has_feature.
#ifdef ABSL_HAVE_ADDRESS_SANITIZER
constexpr bool kBuiltWithAsan = true;
#else
constexpr bool kBuiltWithAsan = false;
#endif
#ifdef ABSL_HAVE_THREAD_SANITIZER
constexpr bool kBuiltWithTsan = true;
#else
constexpr bool kBuiltWithTsan = false;
#endif

bool UnderAsan() { return kBuiltWithAsan; }
bool UnderTsan() { return kBuiltWithTsan; }

int64_t ScaledKb(int64_t kb) {
  if (UnderTsan()) return kb * 5;
  return UnderAsan() ? kb * 2 : kb;
}

void SetChildSanitizerOptions() {
  if (!UnderAsan()) return;
  const char* current = getenv("ASAN_OPTIONS");
  std::string options = current == nullptr ? "" : current;
  if (options.find("quarantine_size_mb") != std::string::npos) return;
  if (!options.empty()) options += ":";
  options += "quarantine_size_mb=16";
  setenv("ASAN_OPTIONS", options.c_str(), 1);
}

uint64_t RaiseNofileLimit(uint64_t want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
    rlim_t target = static_cast<rlim_t>(want);
    if (rl.rlim_max != RLIM_INFINITY && target > rl.rlim_max) {
      target = rl.rlim_max;
    }
    rl.rlim_cur = target;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return static_cast<uint64_t>(rl.rlim_cur);
}

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* text = getenv(name);
  int64_t value;
  if (text == nullptr || !absl::SimpleAtoi(text, &value)) return fallback;
  return value;
}

namespace {

absl::StatusOr<std::string> ReadProcFile(pid_t pid, absl::string_view name) {
  const std::string path = absl::StrCat("/proc/", pid, "/", name);
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<absl::Duration> CpuTime(pid_t pid) {
  absl::StatusOr<std::string> stat = ReadProcFile(pid, "stat");
  if (!stat.ok()) return stat.status();
  // "pid (comm) state ppid ...": comm may hold spaces, so split after the
  // last ')'. utime and stime are fields 14 and 15 (1-based), i.e. the
  // 12th and 13th after the state field's predecessor.
  const size_t paren = stat->rfind(')');
  if (paren == std::string::npos) {
    return absl::InternalError("unparsable /proc/pid/stat");
  }
  std::vector<absl::string_view> fields = absl::StrSplit(
      absl::string_view(*stat).substr(paren + 2), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state); utime is field 14 -> index 11.
  int64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return absl::InternalError("unparsable utime/stime in /proc/pid/stat");
  }
  const int64_t ticks_per_second = sysconf(_SC_CLK_TCK);
  return absl::Seconds(static_cast<double>(utime + stime) /
                       static_cast<double>(ticks_per_second));
}

absl::StatusOr<double> CpuShareOver(pid_t pid, absl::Duration window) {
  absl::StatusOr<absl::Duration> before = CpuTime(pid);
  if (!before.ok()) return before.status();
  const absl::Time start = absl::Now();
  absl::SleepFor(window);
  absl::StatusOr<absl::Duration> after = CpuTime(pid);
  if (!after.ok()) return after.status();
  const absl::Duration elapsed = absl::Now() - start;
  return absl::FDivDuration(*after - *before, elapsed);
}

absl::StatusOr<int64_t> RssKb(pid_t pid) {
  absl::StatusOr<std::string> status = ReadProcFile(pid, "status");
  if (!status.ok()) return status.status();
  for (absl::string_view line : absl::StrSplit(*status, '\n')) {
    if (!absl::ConsumePrefix(&line, "VmRSS:")) continue;
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumeSuffix(&line, "kB");
    int64_t kb;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kb)) return kb;
  }
  return absl::InternalError("no VmRSS in /proc/pid/status");
}

absl::StatusOr<int> OpenFdCount(pid_t pid) {
  const std::string path = absl::StrCat("/proc/", pid, "/fd");
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return absl::ErrnoToStatus(errno, path);
  int count = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count;
}

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  size_t i = 0;
  while (i < n) {
    uint64_t word = rng();
    for (int b = 0; b < 8 && i < n; ++b, ++i) {
      out[i] = static_cast<char>(word & 0xff);
      word >>= 8;
    }
  }
  return out;
}

int CloseServed(std::vector<cached_test::Client>& clients,
                const std::vector<bool>& served, int n) {
  int closed = 0;
  for (size_t i = 0; i < clients.size() && i < served.size() && closed < n;
       ++i) {
    if (served[i]) {
      clients[i].Close();
      ++closed;
    }
  }
  return closed;
}

void AbortiveClose(cached_test::Client& client) {
  if (client.fd() >= 0) {
    struct linger lg = {1, 0};
    setsockopt(client.fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
  client.Close();
}

absl::StatusOr<std::unique_ptr<cached_test::ServerProcess>>
StartWithNofileLimit(int limit, const std::string& path,
                     const std::vector<std::string>& args) {
  absl::StatusOr<std::string> wrapper =
      cached_test::RunfileBinaryPath("tests/with_nofile_limit");
  if (!wrapper.ok()) return wrapper.status();
  std::vector<std::string> all = {absl::StrCat(limit), path};
  all.insert(all.end(), args.begin(), args.end());
  return cached_test::ServerProcess::StartListening(*wrapper, all);
}

PumpResult Pump(int fd, absl::string_view data, size_t piece,
                size_t want_received, absl::Time deadline, size_t keep) {
  PumpResult result;
  std::vector<char> buf(1 << 16);
  while (result.sent < data.size() || result.received_total < want_received) {
    const bool want_write = result.sent < data.size();
    pollfd p = {fd, static_cast<short>(POLLIN | (want_write ? POLLOUT : 0)), 0};
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      result.timed_out = true;
      return result;
    }
    const int n =
        poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left) + 1));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      result.error = strerror(errno);
      return result;
    }
    if (n == 0) continue;  // the deadline check above ends it
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t r = recv(fd, buf.data(), buf.size(), 0);
      if (r > 0) {
        result.received_total += static_cast<size_t>(r);
        if (result.received.size() < keep) {
          result.received.append(
              buf.data(),
              std::min(static_cast<size_t>(r), keep - result.received.size()));
        }
      } else if (r == 0 || errno == ECONNRESET || errno == EPIPE) {
        result.closed_by_peer = true;
        return result;
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        result.error = strerror(errno);
        return result;
      }
    }
    if (want_write && (p.revents & POLLOUT)) {
      const size_t left_bytes = data.size() - result.sent;
      const size_t len = piece == 0 ? left_bytes : std::min(piece, left_bytes);
      const ssize_t w = send(fd, data.data() + result.sent, len, MSG_NOSIGNAL);
      if (w > 0) {
        result.sent += static_cast<size_t>(w);
      } else if (w < 0 && (errno == ECONNRESET || errno == EPIPE)) {
        result.closed_by_peer = true;
        return result;
      } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                 errno != EINTR) {
        result.error = strerror(errno);
        return result;
      }
    }
  }
  return result;
}

}  // namespace fault_test
}  // namespace eventide
