// echo_server: the smallest complete server on the stream layer. Every byte a
// client sends comes back; when a client closes its sending side, the server
// sends what is left and closes. SIGINT/SIGTERM stop it cleanly: the listener
// closes, open connections are closed, the loop returns.
//
//   echo_server [--port N] [--bind ADDR] [--backend NAME] [--idle-timeout D]
//
//   --port          TCP port; 0 (default) lets the kernel pick one
//   --bind          numeric IPv4/IPv6 address to listen on (127.0.0.1)
//   --backend       epoll, poll, select or io_uring (default: the registry's
//                   choice, which honours EVENTIDE_BACKEND)
//   --idle-timeout  close connections idle this long: "30s", "500ms", "2m";
//                   0 or "none" (default) never
//
// It prints one line on stdout once it listens:
//   echo_server listening on 127.0.0.1:40123 (backend epoll)
// Bad flags: one line on stderr, exit status 2.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "loop/buffer.h"
#include "loop/connection.h"
#include "loop/event_loop.h"
#include "loop/listener.h"
#include "loop/socket.h"

namespace {

struct Flags {
  int port = 0;
  std::string bind = "127.0.0.1";
  std::string backend;
  absl::Duration idle_timeout = absl::InfiniteDuration();
};

constexpr char kUsage[] =
    "usage: echo_server [--port N] [--bind ADDR] [--backend NAME] "
    "[--idle-timeout DURATION]\n";

int BadFlag(const std::string& reason) {
  std::fprintf(stderr, "echo_server: %s\n", reason.c_str());
  return 2;
}

// Fills *flags; returns -1 to go on, else the exit status.
int ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("%s", kUsage);
      return 0;
    }
    std::string value;
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (arg == "--port" || arg == "--bind" || arg == "--backend" ||
               arg == "--idle-timeout") {
      if (i + 1 >= argc) return BadFlag(absl::StrCat(arg, " needs a value"));
      value = argv[++i];
    } else {
      return BadFlag(absl::StrCat("unknown argument '", arg, "' (try --help)"));
    }
    if (arg == "--port") {
      if (!absl::SimpleAtoi(value, &flags->port) || flags->port < 0 ||
          flags->port > 65535) {
        return BadFlag(absl::StrCat("--port: '", value,
                                    "' is not a port number (0-65535)"));
      }
    } else if (arg == "--bind") {
      flags->bind = value;
    } else if (arg == "--backend") {
      flags->backend = value;
    } else if (arg == "--idle-timeout") {
      absl::Duration d;
      if (value == "none" || value == "0") {
        flags->idle_timeout = absl::InfiniteDuration();
      } else if (absl::ParseDuration(value, &d) && d > absl::ZeroDuration()) {
        flags->idle_timeout = d;
      } else {
        return BadFlag(absl::StrCat("--idle-timeout: '", value,
                                    "' is not a duration like 30s or 500ms"));
      }
    } else {
      return BadFlag(absl::StrCat("unknown flag '", arg, "' (try --help)"));
    }
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (int status = ParseFlags(argc, argv, &flags); status >= 0) return status;

  absl::StatusOr<eventide::SocketAddress> address =
      eventide::SocketAddress::Parse(flags.bind,
                                     static_cast<uint16_t>(flags.port));
  if (!address.ok()) {
    return BadFlag(absl::StrCat("--bind: ", address.status().message()));
  }
  eventide::LoopOptions loop_options;
  loop_options.backend.name = flags.backend;
  absl::StatusOr<std::unique_ptr<eventide::EventLoop>> created =
      eventide::EventLoop::Create(loop_options);
  if (!created.ok()) {
    // The registry's message lists the candidates; keep the first line.
    std::string message(created.status().message());
    message = message.substr(0, message.find('\n'));
    return BadFlag(absl::StrCat("--backend: ", message));
  }
  eventide::EventLoop* loop = created->get();

  // Open connections, so a signal can close them. Each removes itself in its
  // close callback.
  std::unordered_map<eventide::Connection*,
                     std::shared_ptr<eventide::Connection>>
      open;
  uint64_t served = 0;
  eventide::ConnectionOptions conn_options;
  conn_options.idle_timeout = flags.idle_timeout;

  absl::StatusOr<std::unique_ptr<eventide::Listener>> listener =
      eventide::Listener::Create(
          loop, *address,
          [&](eventide::UniqueFd fd, const eventide::SocketAddress&) {
            eventide::Connection::Callbacks cb;
            cb.on_read = [](eventide::Connection& c, eventide::Buffer& in) {
              // Moves the input's blocks to the output: no copy.
              (void)c.Write(std::move(in));
            };
            cb.on_close = [&open](eventide::Connection& c,
                                  eventide::CloseReason,
                                  const absl::Status&) { open.erase(&c); };
            absl::StatusOr<std::shared_ptr<eventide::Connection>> c =
                eventide::Connection::Adopt(loop, std::move(fd), conn_options,
                                            std::move(cb));
            if (!c.ok()) {
              std::fprintf(stderr, "echo_server: %s\n",
                           std::string(c.status().message()).c_str());
              return;
            }
            ++served;
            open.emplace(c->get(), *c);
          });
  if (!listener.ok()) {
    std::fprintf(stderr, "echo_server: %s\n",
                 std::string(listener.status().message()).c_str());
    return 1;
  }
  (*listener)->set_error_callback([](const absl::Status& error) {
    std::fprintf(stderr, "echo_server: %s\n",
                 std::string(error.message()).c_str());
  });

  int stop_signal = 0;
  auto stop = [&](int signo) {
    stop_signal = signo;
    listener->reset();  // no new clients
    // Close() runs each close callback, which erases from `open`: iterate a
    // copy.
    std::vector<std::shared_ptr<eventide::Connection>> all;
    for (auto& [ptr, conn] : open) all.push_back(conn);
    for (auto& conn : all) conn->Close();
    loop->Stop();
  };
  absl::StatusOr<eventide::SignalWatcher> on_int =
      loop->WatchSignal(SIGINT, stop);
  absl::StatusOr<eventide::SignalWatcher> on_term =
      loop->WatchSignal(SIGTERM, stop);
  if (!on_int.ok() || !on_term.ok()) {
    std::fprintf(
        stderr, "echo_server: cannot watch signals: %s\n",
        std::string((on_int.ok() ? on_term : on_int).status().message())
            .c_str());
    return 1;
  }

  std::printf("echo_server listening on %s (backend %s)\n",
              (*listener)->address().ToString().c_str(),
              std::string(loop->backend_name()).c_str());
  std::fflush(stdout);

  absl::Status status = loop->Run(eventide::EventLoop::RunMode::kUntilStopped);
  if (!status.ok()) {
    std::fprintf(stderr, "echo_server: loop failed: %s\n",
                 std::string(status.message()).c_str());
    return 1;
  }
  std::fprintf(stderr,
               "echo_server: stopped by signal %d after %llu connections\n",
               stop_signal, static_cast<unsigned long long>(served));
  return 0;
}
