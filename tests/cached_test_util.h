// Test helpers for the end-to-end suites of apps/cached: start and stop a
// server process (our `cached` or a real memcached), run a program to
// completion, and a tiny blocking-with-deadline socket client that speaks
// just enough of the text protocol to frame replies.
//
// Every wait in here is bounded by a deadline. A started process is killed
// (SIGKILL) and reaped by ServerProcess's destructor if the test did not
// stop it, and it gets PR_SET_PDEATHSIG(SIGKILL) so that it dies with the
// test's thread even if the test crashes: no server outlives its test.
//
// Thread safety: a ServerProcess must be started and stopped on one thread
// (the parent-death signal fires when the *thread* that forked exits, so
// start servers from the test's main thread). A Client is used by one
// thread at a time; different Clients on different threads are fine.
//
// Usage:
//   auto server = ServerProcess::StartCached({"-t", "2"});
//   ASSERT_TRUE(server.ok()) << server.status();
//   auto client = Client::Connect((*server)->port());
//   ASSERT_TRUE(client.ok()) << client.status();
//   auto reply = client->Call("set k 0 0 1\r\nv\r\n");  // "STORED\r\n"
//   auto status = (*server)->Stop(SIGTERM, absl::Seconds(5));
//   // status: the raw waitpid() status, e.g. check WIFEXITED/WEXITSTATUS.

#ifndef EVENTIDE_TESTS_CACHED_TEST_UTIL_H_
#define EVENTIDE_TESTS_CACHED_TEST_UTIL_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace eventide {
namespace cached_test {

// Path of //apps/cached:cached in the test's runfiles
// ($TEST_SRCDIR/eventide/apps/cached/cached). NotFound if it is not there.
// A binary of this workspace in the test's runfiles, e.g.
// "apps/echo_server" (the test lists it in `data`).
absl::StatusOr<std::string> RunfileBinaryPath(absl::string_view relative);
absl::StatusOr<std::string> CachedBinaryPath();

// Path of the system memcached, or NotFound if /usr/bin/memcached is absent.
absl::StatusOr<std::string> MemcachedBinaryPath();

// A port on 127.0.0.1 that was free a moment ago (bound to port 0, read,
// closed). Only for programs that cannot bind port 0 themselves: another
// process may take it before the caller binds it, so retry on failure.
absl::StatusOr<int> PickFreePort();

// The outcome of RunToCompletion().
struct RunResult {
  int wait_status = 0;  // as from waitpid()
  std::string stdout_text;
  std::string stderr_text;
};

// Runs `path` with `args` (argv[1..]), no stdin, capturing stdout and
// stderr. Waits at most `timeout`, then kills the program and answers
// DeadlineExceeded.
absl::StatusOr<RunResult> RunToCompletion(const std::string& path,
                                          const std::vector<std::string>& args,
                                          absl::Duration timeout);

// A server child process. Its stderr is the test's stderr (so server
// diagnostics, sanitizer reports included, land in the test log); its stdout
// is a pipe kept by this object.
class ServerProcess {
 public:
  // Starts `cached` (CachedBinaryPath()) with `args`, reads the one line it
  // prints on start, "cached: listening on 127.0.0.1:PORT (...)", and parses
  // PORT. Fails if the line does not come within `timeout` or the process
  // exits first. Pass "-p", "0" in `args` (and "-l", "127.0.0.1") yourself:
  // nothing is added.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> StartCached(
      const std::vector<std::string>& args,
      absl::Duration timeout = absl::Seconds(20));

  // The same for any program of ours whose first stdout line contains
  // "listening on ADDR:PORT" (cached, echo_server).
  static absl::StatusOr<std::unique_ptr<ServerProcess>> StartListening(
      const std::string& path, const std::vector<std::string>& args,
      absl::Duration timeout = absl::Seconds(20));

  // Starts /usr/bin/memcached on 127.0.0.1 on a free port (memcached cannot
  // bind port 0), UDP off, `-u root` when running as root, plus
  // `extra_args`; waits until the port accepts connections. Retries a few
  // times with another port if memcached exits during start-up.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> StartMemcached(
      const std::vector<std::string>& extra_args,
      absl::Duration timeout = absl::Seconds(10));

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  // Kills (SIGKILL) and reaps the process if it is still running.
  ~ServerProcess();

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  // The first stdout line, without the '\n' (empty for memcached).
  const std::string& banner() const { return banner_; }

  // Sends `signal`, then Wait(timeout).
  absl::StatusOr<int> Stop(int signal, absl::Duration timeout);

  // Sends `signal` and returns at once. FailedPrecondition if the process
  // was already reaped.
  absl::Status Signal(int signal);

  // Waits up to `timeout` for the process to exit and returns its raw
  // waitpid() status. On timeout it SIGKILLs and reaps the process and
  // answers DeadlineExceeded. FailedPrecondition if it was already reaped.
  absl::StatusOr<int> Wait(absl::Duration timeout);

  // Non-blocking: true once the process has exited (it is then reaped and
  // its status kept in *wait_status when non-null).
  bool HasExited(int* wait_status = nullptr);

 private:
  ServerProcess(pid_t pid, int stdout_fd) : pid_(pid), stdout_fd_(stdout_fd) {}

  pid_t pid_;
  int stdout_fd_;  // read end of the child's stdout, or -1
  bool reaped_ = false;
  int wait_status_ = 0;
  int port_ = 0;
  std::string banner_;
};

// A client connection to 127.0.0.1:port. Non-blocking socket underneath;
// every call waits at most its `timeout`. TCP_NODELAY is set so that small
// writes leave as separate segments.
class Client {
 public:
  static absl::StatusOr<Client> Connect(
      int port, absl::Duration timeout = absl::Seconds(5));

  // A closed client: every call fails with FailedPrecondition.
  Client() = default;
  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client();

  // Writes all of `data`, in writes of at most `piece` bytes (0 = as large
  // as the kernel takes). With piece 1 every byte is its own send().
  absl::Status Send(absl::string_view data, size_t piece = 0,
                    absl::Duration timeout = absl::Seconds(10));

  // Reads one complete reply of the text protocol: a single line, or
  // "VALUE ..." blocks / "STAT ..." lines up to and including "END\r\n".
  // The reply is returned verbatim, terminators included. If the server
  // closes the connection before a reply is complete, answers Unavailable
  // (the partial bytes are in the message).
  absl::StatusOr<std::string> ReadReply(
      absl::Duration timeout = absl::Seconds(10));

  // Reads exactly `n` bytes.
  absl::StatusOr<std::string> ReadExactly(
      size_t n, absl::Duration timeout = absl::Seconds(10));

  // Send(request) then ReadReply().
  absl::StatusOr<std::string> Call(absl::string_view request,
                                   absl::Duration timeout = absl::Seconds(10));

  // Waits until the peer closes the connection (EOF or reset) and returns
  // every byte received before that. DeadlineExceeded if it stays open.
  absl::StatusOr<std::string> ReadUntilClosed(
      absl::Duration timeout = absl::Seconds(10));

  // True if the peer has closed the connection and nothing is left unread;
  // waits at most `timeout` for that (0 = just look).
  bool IsClosedByPeer(absl::Duration timeout = absl::ZeroDuration());

  // Bytes received but not yet returned by a Read*() call.
  const std::string& pending() const { return buffer_; }

  int fd() const { return fd_; }
  void Close();

 private:
  explicit Client(int fd) : fd_(fd) {}

  // Reads what is available into buffer_, waiting until `deadline`.
  // Returns false on EOF/reset (sets eof_), error status on other failures
  // or on the deadline.
  absl::StatusOr<bool> Fill(absl::Time deadline);

  int fd_ = -1;
  bool eof_ = false;
  std::string buffer_;
};

// Length of the first complete reply at the front of `data` (framing as in
// Client::ReadReply), or 0 if `data` does not hold a complete reply yet.
size_t CompleteReplyLength(absl::string_view data);

// `data` with control and non-ASCII bytes escaped (\r, \n, \xNN), cut to
// `max_len` characters: for readable failure messages.
std::string Printable(absl::string_view data, size_t max_len = 400);

// The "STAT name value" lines of a "stats" reply as name -> value (the rest
// of the line after the first space). Other lines are skipped.
std::map<std::string, std::string> ParseStats(absl::string_view reply);

}  // namespace cached_test
}  // namespace eventide

#endif  // EVENTIDE_TESTS_CACHED_TEST_UTIL_H_
