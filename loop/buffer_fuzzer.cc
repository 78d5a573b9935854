// Fuzz target: Buffer driven by operation sequences from the input and
// checked against a std::string model after every operation.
//
// Every public operation is covered: the appends (copied, C string, adopted
// std::string, external memory with a keep-alive, another Buffer, Reserve +
// Commit), the searches, CopyOut/Peek/Pullup/chunks, Consume/Take/TakeLine/
// Clear, the cap (max_size, room, ResourceExhausted), moves, and the I/O
// calls over a non-blocking AF_UNIX socket pair (ReadFrom, WriteTo, SendTo,
// end of file and a bad fd). Some appends are large or come in many pieces,
// so chains longer than IOV_MAX blocks, adopted strings and block growth are
// reached from short inputs.
//
// Beyond byte equality the target checks the documented memory rules: no
// empty block inside the chain, at most one block once the buffer is empty,
// and external memory released (keep-alive dropped) once its bytes are gone.
//
// Input: one byte for the initial cap, then operations (see Op), each an
// opcode byte and its arguments. Seeds: testdata/buffer_fuzzer_corpus/.

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "loop/buffer.h"
#include "tools/fuzz/fuzz_check.h"
#include "tools/fuzz/fuzz_input.h"

namespace eventide {
namespace {

using fuzz::FuzzInput;

// The model never grows beyond this (appends past it are skipped), which
// bounds the work per input and stays below the socket buffer.
constexpr size_t kMaxModel = 150 * 1024;

enum Op : uint8_t {
  kAppendView,
  kAppendCString,
  kAppendString,
  kAppendExternal,
  kAppendBuffer,
  kReserveCommit,
  kFind,
  kCopyOutPeek,
  kPullup,
  kConsume,
  kTake,
  kTakeLine,
  kClear,
  kSetMaxSize,
  kReadFrom,
  kWrite,
  kEofAndErrors,
  kMove,
  kNumOps,
};

// The test's end of a socket pair whose other end the buffer reads from and
// writes to. Made once per process; drained after every input.
struct Sockets {
  int buffer_fd = -1;
  int peer_fd = -1;
};

const Sockets& GetSockets() {
  static const Sockets s = [] {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   fds) != 0) {
      fuzz::Fail(__FILE__, __LINE__, "socketpair", "");
    }
    return Sockets{fds[0], fds[1]};
  }();
  return s;
}

// Everything readable on `fd` now.
std::string DrainSocket(int fd) {
  std::string out;
  char buf[16384];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  return out;
}

void SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    EVENTIDE_FUZZ_CHECK(n > 0);
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// `len` bytes repeating a short pattern taken from the input: large
// contents from a few input bytes.
std::string Pattern(FuzzInput& in, size_t len) {
  std::string pattern(in.Bytes(in.Range(1, 8)));
  if (pattern.empty()) pattern = "x";
  std::string out;
  out.reserve(len);
  while (out.size() < len) {
    out.append(pattern, 0, std::min(pattern.size(), len - out.size()));
  }
  return out;
}

// A length: mostly small, sometimes past the block sizes.
size_t Length(FuzzInput& in) {
  switch (in.Byte() % 4) {
    case 0:
      return in.Range(0, 16);
    case 1:
      return in.Range(0, 300);
    case 2:
      return in.Range(900, 5000);  // around kAdoptThreshold and a block
    default:
      return in.Range(0, 70000);
  }
}

class Harness {
 public:
  explicit Harness(FuzzInput& in) : in_(in) {
    if (in_.Bool()) {
      buffer_ = Buffer(in_.Range(0, 20000));
    }
  }

  ~Harness() {
    // Leftovers in the socket were what the model expects.
    EVENTIDE_FUZZ_CHECK_EQ(DrainSocket(GetSockets().buffer_fd), pending_);
    buffer_.Clear();
    CheckKeepAlivesReleased();
  }

  void Step(uint64_t step) {
    const uint8_t op = in_.Byte() % kNumOps;
    switch (op) {
      case kAppendView: {
        const absl::string_view data = ToAbsl(in_.Bytes(in_.Range(0, 64)));
        const size_t room = buffer_.room();
        ExpectAppend(buffer_.Append(data), data, room);
        break;
      }
      case kAppendCString: {
        const std::string raw(in_.Bytes(in_.Range(0, 64)));
        const std::string c_string = raw.substr(0, raw.find('\0'));
        const size_t room = buffer_.room();
        ExpectAppend(buffer_.Append(raw.c_str()), c_string, room);
        break;
      }
      case kAppendString: {
        std::string data = Pattern(in_, Length(in_));
        if (model_.size() + data.size() > kMaxModel) break;
        const std::string copy = data;
        const size_t room = buffer_.room();
        ExpectAppend(buffer_.Append(std::move(data)), copy, room);
        break;
      }
      case kAppendExternal: {
        // `pieces` consecutive slices of one shared string, each its own
        // block: up to more than IOV_MAX blocks.
        const size_t pieces = in_.Range(1, 1100);
        const size_t piece_len = in_.Range(0, pieces > 10 ? 4 : 3000);
        auto memory = std::make_shared<const std::string>(
            Pattern(in_, pieces * piece_len));
        if (model_.size() + memory->size() > kMaxModel) break;
        keep_alives_.push_back(memory);
        for (size_t i = 0; i < pieces; ++i) {
          const absl::string_view slice(memory->data() + i * piece_len,
                                        piece_len);
          const size_t room = buffer_.room();
          ExpectAppend(buffer_.AppendExternal(slice, memory), slice, room);
        }
        break;
      }
      case kAppendBuffer: {
        Buffer other;
        if (in_.Bool()) other.set_max_size(in_.Range(0, 10000));
        std::string other_model;
        for (size_t n = in_.Range(0, 4); n > 0; --n) {
          std::string piece = Pattern(in_, Length(in_));
          if (other_model.size() + piece.size() > kMaxModel / 4) break;
          if (other.Append(piece).ok()) other_model += piece;
        }
        if (in_.Bool() && !other_model.empty()) {
          const size_t n = in_.Range(0, other_model.size());
          other.Consume(n);
          other_model.erase(0, n);
        }
        if (model_.size() + other_model.size() > kMaxModel) break;
        const size_t room = buffer_.room();
        const absl::Status s = buffer_.Append(std::move(other));
        ExpectAppend(s, other_model, room);
        // Moved out on success; untouched on failure.
        EVENTIDE_FUZZ_CHECK_EQ(other.ToString(), s.ok() ? "" : other_model);
        EVENTIDE_FUZZ_CHECK_EQ(buffer_.Append(std::move(buffer_)).code(),
                               absl::StatusCode::kInvalidArgument);
        break;
      }
      case kReserveCommit: {
        const size_t n = in_.Range(0, 9000);
        const absl::Span<char> span = buffer_.Reserve(n);
        if (n > buffer_.room()) {
          EVENTIDE_FUZZ_CHECK(span.empty());
          break;
        }
        EVENTIDE_FUZZ_CHECK(span.size() >= n);
        EVENTIDE_FUZZ_CHECK(span.size() <= buffer_.room());
        const size_t k = in_.Range(0, std::min(span.size(), size_t{20000}));
        const std::string data = Pattern(in_, k);
        for (size_t i = 0; i < k; ++i) span[i] = data[i];
        buffer_.Commit(k);
        model_ += data;
        break;
      }
      case kFind: {
        // Half the needles are taken from the contents, so they match.
        std::string needle;
        const size_t len = in_.Range(0, 5);
        if (in_.Bool() && !model_.empty()) {
          needle = model_.substr(in_.Range(0, model_.size() - 1), len);
        } else {
          needle = std::string(in_.Bytes(len));
        }
        const size_t from = in_.Range(0, model_.size() + 2);
        EVENTIDE_FUZZ_CHECK_EQ(buffer_.Find(needle, from),
                               model_.find(needle, from));
        if (!needle.empty()) {
          EVENTIDE_FUZZ_CHECK_EQ(buffer_.FindByte(needle[0], from),
                                 model_.find(needle[0], from));
        }
        EVENTIDE_FUZZ_CHECK_EQ(buffer_.FindCrlf(from),
                               model_.find("\r\n", from));
        break;
      }
      case kCopyOutPeek: {
        const size_t offset = in_.Range(0, model_.size() + 2);
        const size_t n = in_.Range(0, model_.size() + 2);
        const std::string expect =
            offset < model_.size() ? model_.substr(offset, n) : "";
        std::string out(n, '\0');
        const size_t copied = buffer_.CopyOut(offset, out.data(), n);
        out.resize(copied);
        EVENTIDE_FUZZ_CHECK_EQ(out, expect);
        EVENTIDE_FUZZ_CHECK_EQ(buffer_.Peek(n, offset), expect);
        if (offset == 0) {
          EVENTIDE_FUZZ_CHECK_EQ(buffer_.Peek(n), model_.substr(0, n));
        }
        break;
      }
      case kPullup: {
        const size_t n = in_.Range(0, model_.size() + 2);
        const absl::string_view v = buffer_.Pullup(n);
        EVENTIDE_FUZZ_CHECK_EQ(v, model_.substr(0, n));
        // Contiguous: the front chunk holds all of it.
        EVENTIDE_FUZZ_CHECK(buffer_.FrontChunk().size() >= v.size());
        break;
      }
      case kConsume: {
        const size_t n = in_.Range(0, model_.size() + 2);
        buffer_.Consume(n);
        model_.erase(0, n);
        break;
      }
      case kTake: {
        const size_t n = in_.Range(0, model_.size() + 2);
        EVENTIDE_FUZZ_CHECK_EQ(buffer_.Take(n), model_.substr(0, n));
        model_.erase(0, n);
        break;
      }
      case kTakeLine: {
        const std::string delimiter =
            in_.Bool() ? std::string("\r\n")
                       : std::string(in_.Bytes(in_.Range(0, 3)));
        std::string line = "unchanged";
        const size_t at = model_.find(delimiter);
        const bool took = in_.Bool() && delimiter == "\r\n"
                              ? buffer_.TakeLine(&line)
                              : buffer_.TakeLine(&line, delimiter);
        EVENTIDE_FUZZ_CHECK_EQ(took, at != std::string::npos);
        if (took) {
          EVENTIDE_FUZZ_CHECK_EQ(line, model_.substr(0, at));
          model_.erase(0, at + delimiter.size());
        } else {
          EVENTIDE_FUZZ_CHECK_EQ(line, "unchanged");
        }
        break;
      }
      case kClear:
        buffer_.Clear();
        model_.clear();
        EVENTIDE_FUZZ_CHECK_EQ(buffer_.chunk_count(), size_t{0});
        break;
      case kSetMaxSize: {
        // Below, at or above the current size, or no cap.
        const uint8_t kind = in_.Byte() % 3;
        const size_t cap = kind == 0   ? Buffer::kUnlimited
                           : kind == 1 ? in_.Range(0, model_.size())
                                       : model_.size() + in_.Range(0, 20000);
        buffer_.set_max_size(cap);
        EVENTIDE_FUZZ_CHECK_EQ(buffer_.max_size(), cap);
        break;
      }
      case kReadFrom: {
        const Sockets& s = GetSockets();
        const size_t k = in_.Range(0, 4) == 0 ? Length(in_) : in_.Range(0, 64);
        const std::string data = Pattern(in_, k);
        // Unread small sends cost the socket far more than their bytes:
        // bounded, so that the send never blocks.
        if (pending_.size() + data.size() <= 32 * 1024 && pending_sends_ < 64) {
          SendAll(s.peer_fd, data);
          pending_ += data;
          ++pending_sends_;
        }
        const size_t max = in_.Bool()
                               ? Buffer::kDefaultReadSize
                               : static_cast<size_t>(in_.Range(0, 70000));
        const size_t want = std::min(max, buffer_.room());
        if (model_.size() + std::min(want, pending_.size()) > kMaxModel) break;
        const IoResult r = buffer_.ReadFrom(s.buffer_fd, max);
        EVENTIDE_FUZZ_CHECK(!r.eof);
        if (want == 0) {
          EVENTIDE_FUZZ_CHECK_EQ(r.error, ENOBUFS);
          EVENTIDE_FUZZ_CHECK_EQ(r.bytes, size_t{0});
        } else if (pending_.empty()) {
          EVENTIDE_FUZZ_CHECK(r.would_block());
          EVENTIDE_FUZZ_CHECK_EQ(r.bytes, size_t{0});
        } else {
          EVENTIDE_FUZZ_CHECK_EQ(r.error, 0);
          EVENTIDE_FUZZ_CHECK(r.bytes > 0 && r.bytes <= want);
          EVENTIDE_FUZZ_CHECK(r.bytes <= pending_.size());
          EVENTIDE_FUZZ_CHECK(r.ok());
        }
        model_.append(pending_, 0, r.bytes);
        pending_.erase(0, r.bytes);
        if (pending_.empty()) pending_sends_ = 0;
        break;
      }
      case kWrite: {
        const Sockets& s = GetSockets();
        const size_t max =
            in_.Bool() ? Buffer::npos : static_cast<size_t>(Length(in_));
        const bool use_send = in_.Bool();
        const IoResult r = use_send ? buffer_.SendTo(s.buffer_fd, max)
                                    : buffer_.WriteTo(s.buffer_fd, max);
        const size_t limit = std::min(max, model_.size());
        EVENTIDE_FUZZ_CHECK_EQ(r.error, 0);
        EVENTIDE_FUZZ_CHECK(r.bytes <= limit);
        EVENTIDE_FUZZ_CHECK(limit == 0 || r.bytes > 0);
        if (limit == 0) EVENTIDE_FUZZ_CHECK(r.filled);
        EVENTIDE_FUZZ_CHECK_EQ(DrainSocket(s.peer_fd),
                               model_.substr(0, r.bytes));
        model_.erase(0, r.bytes);
        break;
      }
      case kEofAndErrors: {
        // End of file from a closed peer, after the bytes it sent.
        int fds[2];
        EVENTIDE_FUZZ_CHECK(
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                       fds) == 0);
        const std::string data(in_.Bytes(in_.Range(0, 32)));
        if (!data.empty()) SendAll(fds[1], data);
        close(fds[1]);
        std::string got;
        bool eof = false;
        for (int i = 0; i < 4 && !eof && buffer_.room() > 0; ++i) {
          const IoResult r = buffer_.ReadFrom(fds[0]);
          EVENTIDE_FUZZ_CHECK(r.error == 0);
          eof = r.eof;
          got += std::string(buffer_.Peek(r.bytes, model_.size() + got.size()));
        }
        close(fds[0]);
        EVENTIDE_FUZZ_CHECK(eof || buffer_.room() == 0);
        EVENTIDE_FUZZ_CHECK_EQ(got, data.substr(0, got.size()));
        model_ += got;
        // A bad fd: an error, nothing moved.
        const IoResult bad_read = buffer_.ReadFrom(-1);
        EVENTIDE_FUZZ_CHECK(bad_read.error == EBADF ||
                            bad_read.error == ENOBUFS);
        EVENTIDE_FUZZ_CHECK(!bad_read.ok() || bad_read.error == ENOBUFS);
        const IoResult bad_write = buffer_.WriteTo(-1);
        EVENTIDE_FUZZ_CHECK(model_.empty() || bad_write.error == EBADF);
        EVENTIDE_FUZZ_CHECK_EQ(bad_write.bytes, size_t{0});
        break;
      }
      case kMove: {
        Buffer moved(std::move(buffer_));
        EVENTIDE_FUZZ_CHECK(buffer_.empty());
        EVENTIDE_FUZZ_CHECK_EQ(moved.size(), model_.size());
        buffer_ = std::move(moved);
        EVENTIDE_FUZZ_CHECK(moved.empty());
        break;
      }
    }
    Check(op, step);
  }

 private:
  static absl::string_view ToAbsl(std::string_view s) {
    return absl::string_view(s.data(), s.size());
  }

  // An append succeeds exactly when it fits the room there was before it.
  void ExpectAppend(const absl::Status& s, absl::string_view data,
                    size_t room_before) {
    EVENTIDE_FUZZ_CHECK_EQ(s.ok(), data.size() <= room_before);
    if (s.ok()) {
      model_.append(data.data(), data.size());
    } else {
      EVENTIDE_FUZZ_CHECK_EQ(s.code(), absl::StatusCode::kResourceExhausted);
    }
  }

  void CheckKeepAlivesReleased() {
    for (const auto& k : keep_alives_)
      EVENTIDE_FUZZ_CHECK_EQ(k.use_count(), 1L);
    keep_alives_.clear();
  }

  void Check(uint8_t op, uint64_t step) {
    EVENTIDE_FUZZ_CHECK_EQ(buffer_.size(), model_.size());
    EVENTIDE_FUZZ_CHECK_EQ(buffer_.empty(), model_.empty());
    const size_t cap = buffer_.max_size();
    EVENTIDE_FUZZ_CHECK_EQ(buffer_.room(),
                           model_.size() >= cap ? 0 : cap - model_.size());
    if (model_.empty()) {
      // An idle buffer holds at most one (small) block, and no external
      // memory.
      EVENTIDE_FUZZ_CHECK(buffer_.chunk_count() <= 1);
      CheckKeepAlivesReleased();
    }
    const size_t chunks = buffer_.chunk_count();
    if (chunks > 0) {
      EVENTIDE_FUZZ_CHECK_EQ(buffer_.FrontChunk(), buffer_.chunk(0));
    } else {
      EVENTIDE_FUZZ_CHECK(buffer_.FrontChunk().empty());
    }
    // The whole contents are compared often, not always: O(size).
    if (model_.size() <= 4096 || step % 8 == 0 || op == kPullup ||
        op == kAppendBuffer) {
      std::string joined;
      for (size_t i = 0; i < chunks; ++i) {
        const absl::string_view c = buffer_.chunk(i);
        // No empty block inside the chain.
        EVENTIDE_FUZZ_CHECK(!c.empty() || i + 1 == chunks);
        joined.append(c.data(), c.size());
      }
      EVENTIDE_FUZZ_CHECK_EQ(joined, model_);
      EVENTIDE_FUZZ_CHECK_EQ(buffer_.ToString(), model_);
    }
  }

  FuzzInput& in_;
  Buffer buffer_;
  std::string model_;
  // Bytes sent to the buffer's socket and not read by it yet.
  std::string pending_;
  int pending_sends_ = 0;
  std::vector<std::shared_ptr<const std::string>> keep_alives_;
};

}  // namespace
}  // namespace eventide

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  eventide::fuzz::FuzzInput in(data, size);
  eventide::Harness harness(in);
  for (uint64_t step = 0; !in.empty(); ++step) harness.Step(step);
  return 0;
}
