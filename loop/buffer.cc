#include "loop/buffer.h"

#include <limits.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace eventide {
namespace {

// IOV_MAX is 1024 on Linux; writev/readv refuse more pieces.
#ifdef IOV_MAX
constexpr int kMaxIov = IOV_MAX;
#else
constexpr int kMaxIov = 1024;
#endif

// Growth limit for blocks made by small appends: beyond this, one more block
// costs less than copying into an ever larger one.
constexpr size_t kMaxGrowthBlock = 64 * 1024;
// Buffer::Append(Buffer&&) copies rather than moves blocks up to this size
// when they fit our free tail: fewer, fuller blocks for small messages.
constexpr size_t kCopyInsteadOfMove = 4096;

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "eventide::Buffer: %s\n", what);
  std::abort();
}

absl::Status CapError(size_t size, size_t adding, size_t cap) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "buffer cap exceeded: ", size, " + ", adding, " bytes > ", cap));
}

}  // namespace

Buffer::Buffer(Buffer&& other) noexcept
    : blocks_(std::move(other.blocks_)),
      size_(other.size_),
      max_size_(other.max_size_),
      read_block_size_(other.read_block_size_) {
  other.blocks_.clear();
  other.size_ = 0;
}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    blocks_ = std::move(other.blocks_);
    size_ = other.size_;
    max_size_ = other.max_size_;
    read_block_size_ = other.read_block_size_;
    other.blocks_.clear();
    other.size_ = 0;
  }
  return *this;
}

// ----------------------------------------------------------------- blocks --

Buffer::Block& Buffer::AddBlock(size_t capacity) {
  char* memory = static_cast<char*>(std::malloc(capacity));
  if (memory == nullptr) Die("out of memory allocating a block");
  Block& b = blocks_.emplace_back();
  b.owned.reset(memory);
  b.capacity = capacity;
  return b;
}

void Buffer::AppendCopy(absl::string_view data) {
  size_ += data.size();
  if (!blocks_.empty()) {
    Block& tail = blocks_.back();
    const size_t n = std::min(tail.free_tail(), data.size());
    if (n > 0) {
      std::memcpy(tail.owned.get() + tail.end, data.data(), n);
      tail.end += n;
      data.remove_prefix(n);
    }
  }
  if (data.empty()) return;
  size_t capacity = std::max(data.size(), kMinBlockSize);
  if (!blocks_.empty()) {
    capacity = std::max(capacity,
                        std::min(blocks_.back().capacity * 2, kMaxGrowthBlock));
    // An empty tail too small for the rest would stay empty in the middle of
    // the chain; every block but the last must hold bytes.
    if (blocks_.back().readable() == 0) blocks_.pop_back();
  }
  Block& b = AddBlock(capacity);
  std::memcpy(b.owned.get(), data.data(), data.size());
  b.end = data.size();
}

absl::Status Buffer::Append(absl::string_view data) {
  if (data.size() > room()) return CapError(size_, data.size(), max_size_);
  if (!data.empty()) AppendCopy(data);
  return absl::OkStatus();
}

absl::Status Buffer::Append(std::string&& data) {
  if (data.size() < kAdoptThreshold) return Append(absl::string_view(data));
  if (data.size() > room()) return CapError(size_, data.size(), max_size_);
  if (!blocks_.empty() && blocks_.back().readable() == 0) blocks_.pop_back();
  const size_t n = data.size();
  Block& b = blocks_.emplace_back();
  b.adopted = std::move(data);
  b.capacity = n;
  b.end = n;
  size_ += n;
  return absl::OkStatus();
}

absl::Status Buffer::AppendExternal(absl::string_view data,
                                    std::shared_ptr<const void> keep_alive) {
  if (data.size() > room()) return CapError(size_, data.size(), max_size_);
  if (data.empty()) return absl::OkStatus();
  if (!blocks_.empty() && blocks_.back().readable() == 0) blocks_.pop_back();
  Block& b = blocks_.emplace_back();
  b.external = data.data();
  b.keep_alive = std::move(keep_alive);
  b.capacity = data.size();
  b.end = data.size();
  size_ += data.size();
  return absl::OkStatus();
}

absl::Status Buffer::Append(Buffer&& other) {
  if (&other == this) {
    return absl::InvalidArgumentError("cannot append a buffer to itself");
  }
  if (other.size_ > room()) return CapError(size_, other.size_, max_size_);
  if (other.size_ == 0) return absl::OkStatus();
  const size_t tail_free = blocks_.empty() ? 0 : blocks_.back().free_tail();
  if (other.size_ <= std::min(tail_free, kCopyInsteadOfMove)) {
    for (const Block& b : other.blocks_) {
      AppendCopy(absl::string_view(b.data() + b.begin, b.readable()));
    }
    // Consume (not Clear) keeps other's small block for its next read.
    other.Consume(other.size_);
    return absl::OkStatus();
  }
  if (!blocks_.empty() && blocks_.back().readable() == 0) blocks_.pop_back();
  for (Block& b : other.blocks_) {
    if (b.readable() > 0) blocks_.push_back(std::move(b));
  }
  size_ += other.size_;
  other.blocks_.clear();
  other.size_ = 0;
  return absl::OkStatus();
}

absl::Span<char> Buffer::Reserve(size_t n) {
  if (n > room()) return {};
  // A read-only tail (adopted or external) gets a new block even for n == 0:
  // the span must point into writable memory, never at null + end.
  if (blocks_.empty() || !blocks_.back().writable() ||
      blocks_.back().free_tail() < n) {
    if (!blocks_.empty() && blocks_.back().readable() == 0) blocks_.pop_back();
    AddBlock(std::max(n, kMinBlockSize));
  }
  Block& b = blocks_.back();
  return absl::Span<char>(b.owned.get() + b.end,
                          std::min(b.free_tail(), room()));
}

void Buffer::Commit(size_t n) {
  if (n == 0) return;
  if (blocks_.empty() || blocks_.back().free_tail() < n || n > room()) {
    Die("Commit of more bytes than Reserve returned");
  }
  blocks_.back().end += n;
  size_ += n;
}

// ------------------------------------------------------------- inspecting --

bool Buffer::MatchesAt(size_t bi, size_t off, absl::string_view needle) const {
  while (!needle.empty()) {
    if (bi >= blocks_.size()) return false;
    const Block& b = blocks_[bi];
    const size_t n = std::min(needle.size(), b.end - off);
    if (std::memcmp(b.data() + off, needle.data(), n) != 0) return false;
    needle.remove_prefix(n);
    ++bi;
    if (bi < blocks_.size()) off = blocks_[bi].begin;
  }
  return true;
}

size_t Buffer::Find(absl::string_view needle, size_t from) const {
  if (needle.empty()) return from <= size_ ? from : npos;
  if (from >= size_ || needle.size() > size_ - from) return npos;
  size_t pos = 0;  // offset of block bi's first byte in the buffer
  for (size_t bi = 0; bi < blocks_.size(); ++bi) {
    const Block& b = blocks_[bi];
    const size_t len = b.readable();
    if (pos + len <= from) {
      pos += len;
      continue;
    }
    const char* data = b.data() + b.begin;
    size_t off = from > pos ? from - pos : 0;
    while (off < len) {
      const void* hit = std::memchr(data + off, needle[0], len - off);
      if (hit == nullptr) break;
      const size_t at =
          static_cast<size_t>(static_cast<const char*>(hit) - data);
      if (pos + at + needle.size() > size_) return npos;
      if (MatchesAt(bi, b.begin + at, needle)) return pos + at;
      off = at + 1;
    }
    pos += len;
  }
  return npos;
}

size_t Buffer::FindByte(char c, size_t from) const {
  return Find(absl::string_view(&c, 1), from);
}

size_t Buffer::CopyOut(size_t offset, char* dst, size_t n) const {
  size_t copied = 0;
  for (const Block& b : blocks_) {
    if (copied == n) break;
    const size_t len = b.readable();
    if (offset >= len) {
      offset -= len;
      continue;
    }
    const size_t take = std::min(len - offset, n - copied);
    std::memcpy(dst + copied, b.data() + b.begin + offset, take);
    copied += take;
    offset = 0;
  }
  return copied;
}

std::string Buffer::Peek(size_t n, size_t offset) const {
  if (offset >= size_) return std::string();
  std::string out(std::min(n, size_ - offset), '\0');
  CopyOut(offset, out.data(), out.size());
  return out;
}

absl::string_view Buffer::Pullup(size_t n) {
  n = std::min(n, size_);
  if (n == 0) return absl::string_view();
  const Block& front = blocks_.front();
  if (front.readable() >= n) {
    return absl::string_view(front.data() + front.begin, n);
  }
  char* memory = static_cast<char*>(std::malloc(std::max(n, kMinBlockSize)));
  if (memory == nullptr) Die("out of memory in Pullup");
  Block joined;
  joined.owned.reset(memory);
  joined.capacity = std::max(n, kMinBlockSize);
  joined.end = CopyOut(0, memory, n);
  const size_t total = size_;
  Consume(n);
  // Consume may have kept an empty last block; the joined block goes first.
  blocks_.push_front(std::move(joined));
  size_ = total;
  const Block& b = blocks_.front();
  return absl::string_view(b.data(), n);
}

absl::string_view Buffer::FrontChunk() const {
  if (blocks_.empty()) return absl::string_view();
  return chunk(0);
}

absl::string_view Buffer::chunk(size_t i) const {
  const Block& b = blocks_[i];
  return absl::string_view(b.data() + b.begin, b.readable());
}

// --------------------------------------------------------------- removing --

void Buffer::Consume(size_t n) {
  n = std::min(n, size_);
  size_ -= n;
  while (n > 0) {
    Block& b = blocks_.front();
    const size_t take = std::min(n, b.readable());
    b.begin += take;
    n -= take;
    if (b.begin == b.end) {
      if (blocks_.size() == 1 && b.writable() &&
          b.capacity <= kKeepBlockLimit) {
        // The last block: keep it for the next read or append.
        b.begin = b.end = 0;
        break;
      }
      blocks_.pop_front();
    }
  }
  if (size_ == 0 && !blocks_.empty()) {
    // Only an empty tail can remain; keep it only while it is small.
    Block& b = blocks_.back();
    if (blocks_.size() == 1 && b.writable() && b.capacity <= kKeepBlockLimit) {
      b.begin = b.end = 0;
    } else {
      blocks_.clear();
    }
  }
}

std::string Buffer::Take(size_t n) {
  std::string out = Peek(n);
  Consume(out.size());
  return out;
}

bool Buffer::TakeLine(std::string* line, absl::string_view delimiter) {
  const size_t at = Find(delimiter);
  if (at == npos) return false;
  *line = Take(at);
  Consume(delimiter.size());
  return true;
}

void Buffer::Clear() {
  blocks_.clear();
  size_ = 0;
}

// -------------------------------------------------------------------- I/O --

IoResult Buffer::ReadFrom(int fd, size_t max) {
  IoResult result;
  const size_t want = std::min(max, room());
  if (want == 0) {
    result.error = ENOBUFS;
    return result;
  }
  iovec iov[2];
  int count = 0;
  Block* tail = nullptr;
  size_t first = 0;
  if (!blocks_.empty() && blocks_.back().free_tail() > 0) {
    tail = &blocks_.back();
    first = std::min(tail->free_tail(), want);
    iov[count++] = {tail->owned.get() + tail->end, first};
  }
  Block* extra = nullptr;
  size_t second = 0;
  if (first < want) {
    // The tail is short: offer one new block as well. Its size follows the
    // recent reads (doubling while they fill it), so a connection that
    // moves little data never holds a large block. (emplace_back on a deque
    // keeps references to other elements, so `tail` stays valid.)
    extra = &AddBlock(read_block_size_);
    second = std::min(read_block_size_, want - first);
    iov[count++] = {extra->owned.get(), second};
  }
  const size_t offered = first + second;
  ssize_t n;
  // One piece (the common case of a small request into a roomy tail): plain
  // read(2), which spares the kernel importing an iovec array.
  do {
    n = count == 1 ? read(fd, iov[0].iov_base, iov[0].iov_len)
                   : readv(fd, iov, count);
  } while (n < 0 && errno == EINTR);
  size_t got = n > 0 ? static_cast<size_t>(n) : 0;
  if (n < 0) {
    result.error = errno;
  } else if (n == 0) {
    result.eof = true;
  }
  const size_t to_tail = std::min(got, first);
  if (tail != nullptr) tail->end += to_tail;
  if (extra != nullptr) {
    extra->end += got - to_tail;
    // Unused: drop it, so that an empty block never follows another block.
    if (extra->readable() == 0) blocks_.pop_back();
  }
  size_ += got;
  result.bytes = got;
  result.filled = got == offered;
  if (extra != nullptr) {
    if (result.filled) {
      read_block_size_ = std::min(read_block_size_ * 2, kMaxReadBlock);
    } else if (got < first + second / 2) {
      read_block_size_ = std::max(read_block_size_ / 2, kMinBlockSize * 2);
    }
  }
  return result;
}

IoResult Buffer::WriteFront(int fd, size_t max, bool use_send) {
  IoResult result;
  iovec iov[kMaxIov];
  int count = 0;
  size_t total = 0;
  for (const Block& b : blocks_) {
    if (count == kMaxIov || total >= max) break;
    const size_t len = std::min(b.readable(), max - total);
    if (len == 0) continue;
    iov[count++] = {const_cast<char*>(b.data() + b.begin), len};
    total += len;
  }
  if (total == 0) {
    result.filled = true;
    return result;
  }
  ssize_t n;
  do {
    // One piece (a reply built in one block): send(2)/write(2) spare the
    // kernel copying a msghdr and importing an iovec array.
    if (count == 1) {
      n = use_send ? send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                   : write(fd, iov[0].iov_base, iov[0].iov_len);
    } else if (use_send) {
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<size_t>(count);
      n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    } else {
      n = writev(fd, iov, count);
    }
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    result.error = errno;
    return result;
  }
  result.bytes = static_cast<size_t>(n);
  result.filled = result.bytes == total;
  Consume(result.bytes);
  return result;
}

IoResult Buffer::WriteTo(int fd, size_t max) {
  return WriteFront(fd, max, /*use_send=*/false);
}

IoResult Buffer::SendTo(int fd, size_t max) {
  return WriteFront(fd, max, /*use_send=*/true);
}

}  // namespace eventide
