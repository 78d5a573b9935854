// Buffer: a byte queue made of a chain of blocks, the evbuffer of the
// stream layer. Bytes are appended at the back and consumed at the front;
// nothing is ever shifted inside a block.
//
//  - Appending copies the bytes once into free space at the back (a new block
//    when the last one is full). A std::string can be adopted without any
//    copy, external memory can be referenced (kept alive by a shared_ptr), and
//    a whole Buffer can be moved in by moving its blocks.
//  - ReadFrom() reads from an fd straight into free space with readv(2) (the
//    tail of the last block and, if that is short, one new block), so data
//    read from a socket is never copied by the buffer. WriteTo()/SendTo()
//    write the front with writev(2)/sendmsg(2), up to IOV_MAX blocks at once.
//  - Find() searches for a delimiter (e.g. "\r\n") across block boundaries;
//    Pullup() makes a prefix contiguous for a parser.
//  - A cap (max_size) bounds the total: appends that would exceed it fail
//    with ResourceExhausted and ReadFrom() reads at most room() bytes.
//
// Memory: a block that has been consumed is freed, except the last one,
// which is kept for reuse while it is small (kKeepBlockLimit), so an idle
// connection's buffer holds at most one small block.
//
// Threads: not thread-safe; one thread at a time per Buffer. Movable, not
// copyable.
//
// Example:
//   eventide::Buffer in;
//   eventide::IoResult r = in.ReadFrom(fd);          // readv into free space
//   size_t eol = in.FindCrlf();
//   if (eol != eventide::Buffer::npos) {
//     std::string line = in.Take(eol);               // without "\r\n"
//     in.Consume(2);
//   }
//   eventide::Buffer out;
//   (void)out.Append("VALUE k 0 5\r\n");
//   (void)out.Append(std::move(big_string));         // adopted, not copied
//   out.SendTo(fd);                                  // sendmsg, IOV_MAX pieces
#ifndef EVENTIDE_LOOP_BUFFER_H_
#define EVENTIDE_LOOP_BUFFER_H_

#include <errno.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace eventide {

// The outcome of one read or write system call on a buffer.
struct IoResult {
  // Bytes moved between the fd and the buffer.
  size_t bytes = 0;
  // errno of the failed call, 0 if none. EAGAIN/EWOULDBLOCK: nothing could
  // be moved now (see would_block()). ENOBUFS from ReadFrom: the buffer is at
  // its cap, nothing was read.
  int error = 0;
  // ReadFrom only: the peer closed its sending side (read returned 0).
  bool eof = false;
  // Every byte offered was used (the read filled all the space it was given,
  // or the write took everything asked for): more may be waiting.
  bool filled = false;

  bool would_block() const { return error == EAGAIN || error == EWOULDBLOCK; }
  // Neither an error (other than would-block) nor end of file.
  bool ok() const { return (error == 0 || would_block()) && !eof; }
};

class Buffer {
 public:
  static constexpr size_t npos = static_cast<size_t>(-1);
  static constexpr size_t kUnlimited = static_cast<size_t>(-1);
  // Smallest block allocated for small appends.
  static constexpr size_t kMinBlockSize = 4096;
  // Strings at least this long are adopted by Append(std::string&&) rather
  // than copied (shorter ones are cheaper to copy into free space).
  static constexpr size_t kAdoptThreshold = 1024;
  // A consumed last block is kept for reuse only up to this capacity.
  static constexpr size_t kKeepBlockLimit = 16 * 1024;
  // ReadFrom's default and largest offer per call.
  static constexpr size_t kDefaultReadSize = 64 * 1024;
  static constexpr size_t kMaxReadBlock = 256 * 1024;

  Buffer() = default;
  explicit Buffer(size_t max_size) : max_size_(max_size) {}
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  ~Buffer() = default;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // The cap on size(); kUnlimited by default. Lowering it below size() is
  // allowed: nothing is dropped, only further appends fail.
  size_t max_size() const { return max_size_; }
  void set_max_size(size_t max_size) { max_size_ = max_size; }
  // Bytes that may still be appended before the cap.
  size_t room() const { return size_ >= max_size_ ? 0 : max_size_ - size_; }

  // ---- appending. Each fails with ResourceExhausted (appending nothing)
  // when the result would exceed max_size().
  absl::Status Append(absl::string_view data);
  absl::Status Append(const char* data) {
    return Append(absl::string_view(data));
  }
  // Adopts the string's storage when it is at least kAdoptThreshold long.
  absl::Status Append(std::string&& data);
  // References `data` without copying; `keep_alive` is held until the bytes
  // are consumed (evbuffer_add_reference). The memory must not change.
  absl::Status AppendExternal(absl::string_view data,
                              std::shared_ptr<const void> keep_alive);
  // Moves every byte of `other` to the back of this buffer (blocks move,
  // bytes are copied only when they fit in free space at our tail and are
  // few). `other` is left empty (its cap unchanged).
  absl::Status Append(Buffer&& other);

  // Contiguous writable space of at least `n` bytes at the back, for a
  // formatter that writes in place; then Commit() the bytes written. Returns
  // an empty span if n > room(). Any other call on the buffer between
  // Reserve and Commit invalidates the span.
  absl::Span<char> Reserve(size_t n);
  // Makes the first `n` bytes of the last Reserve() part of the buffer.
  void Commit(size_t n);

  // ---- inspecting.
  // Position of the first occurrence of `needle` at or after `from`, across
  // block boundaries; npos if none. An empty needle matches at `from`.
  size_t Find(absl::string_view needle, size_t from = 0) const;
  size_t FindByte(char c, size_t from = 0) const;
  size_t FindCrlf(size_t from = 0) const { return Find("\r\n", from); }
  // Copies up to `n` bytes starting `offset` bytes in; returns the count.
  size_t CopyOut(size_t offset, char* dst, size_t n) const;
  // Up to `n` bytes from `offset`, copied out; the buffer is unchanged.
  std::string Peek(size_t n, size_t offset = 0) const;
  // Makes the first min(n, size()) bytes contiguous (copying them into one
  // block if they span several) and returns them. Valid until the buffer is
  // next modified.
  absl::string_view Pullup(size_t n);
  // The bytes in the first block (empty if the buffer is).
  absl::string_view FrontChunk() const;
  size_t chunk_count() const { return blocks_.size(); }
  absl::string_view chunk(size_t i) const;
  // Every byte, copied (for tests and small buffers).
  std::string ToString() const { return Peek(size_); }

  // ---- removing.
  // Drops the first min(n, size()) bytes.
  void Consume(size_t n);
  // Removes and returns the first min(n, size()) bytes.
  std::string Take(size_t n);
  // If `delimiter` occurs, removes the bytes before it (into *line) and the
  // delimiter, and returns true; else changes nothing and returns false.
  bool TakeLine(std::string* line, absl::string_view delimiter = "\r\n");
  // Drops everything and frees every block.
  void Clear();

  // ---- I/O. One system call each (retried on EINTR).
  // Reads at most min(max, room()) bytes from `fd` into free space with
  // readv. Grows its offer while reads fill it (up to kMaxReadBlock).
  IoResult ReadFrom(int fd, size_t max = kDefaultReadSize);
  // Writes up to `max` bytes from the front with writev and consumes them.
  IoResult WriteTo(int fd, size_t max = npos);
  // As WriteTo, with sendmsg(MSG_NOSIGNAL): a socket whose peer is gone gives
  // EPIPE instead of raising SIGPIPE.
  IoResult SendTo(int fd, size_t max = npos);

 private:
  struct FreeDeleter {
    void operator()(char* p) const { std::free(p); }
  };
  struct Block {
    // Exactly one storage kind is set: owned (writable), adopted or external.
    std::unique_ptr<char, FreeDeleter> owned;
    std::string adopted;
    std::shared_ptr<const void> keep_alive;
    const char* external = nullptr;
    size_t capacity = 0;
    size_t begin = 0;  // first unconsumed byte
    size_t end = 0;    // one past the last byte written

    const char* data() const {
      if (owned) return owned.get();
      if (external != nullptr) return external;
      return adopted.data();
    }
    bool writable() const { return owned != nullptr; }
    size_t readable() const { return end - begin; }
    size_t free_tail() const { return writable() ? capacity - end : 0; }
  };

  // Appends a writable block of at least `capacity` bytes.
  Block& AddBlock(size_t capacity);
  // Copies bytes known to fit the cap.
  void AppendCopy(absl::string_view data);
  // True when `needle` occurs at block `bi`, offset `off` (within the block).
  bool MatchesAt(size_t bi, size_t off, absl::string_view needle) const;
  IoResult WriteFront(int fd, size_t max, bool use_send);

  std::deque<Block> blocks_;
  size_t size_ = 0;
  size_t max_size_ = kUnlimited;
  // The size of the block ReadFrom adds when the tail is short; doubles while
  // reads fill their offer.
  size_t read_block_size_ = kMinBlockSize * 2;
};

}  // namespace eventide

#endif  // EVENTIDE_LOOP_BUFFER_H_
