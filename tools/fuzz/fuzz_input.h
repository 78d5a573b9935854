// FuzzInput: reads a fuzzer's byte string as a sequence of choices.
//
// Fuzz targets that drive an API with operation sequences take each
// operation, its arguments and its data from the front of the input. Reads
// past the end give zeros (and empty strings), so a target simply loops
// `while (!in.empty())` and every input, however short, is a valid program.
// Small inputs map to small values, which keeps libFuzzer's mutations local:
// one byte changed is one argument changed.
//
//   eventide::fuzz::FuzzInput in(data, size);
//   while (!in.empty()) {
//     switch (in.Byte() % 4) {
//       case 0: model.append(in.Bytes(in.Range(0, 100))); break;
//       ...
//     }
//   }
//
// Header-only; not thread-safe (one target invocation owns it).

#ifndef EVENTIDE_TOOLS_FUZZ_FUZZ_INPUT_H_
#define EVENTIDE_TOOLS_FUZZ_FUZZ_INPUT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace eventide {
namespace fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size)
      : data_(reinterpret_cast<const char*>(data)), size_(size) {}
  explicit FuzzInput(std::string_view s) : data_(s.data()), size_(s.size()) {}

  bool empty() const { return pos_ == size_; }
  size_t remaining() const { return size_ - pos_; }

  // The next byte, 0 past the end.
  uint8_t Byte() {
    return pos_ < size_ ? static_cast<uint8_t>(data_[pos_++]) : 0;
  }
  bool Bool() { return (Byte() & 1) != 0; }

  // An integer of `bytes` bytes (<= 8), little-endian.
  uint64_t Bits(int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= uint64_t{Byte()} << (8 * i);
    return v;
  }

  // A value in [lo, hi] (lo <= hi), from as few bytes as the range needs.
  uint64_t Range(uint64_t lo, uint64_t hi) {
    const uint64_t span = hi - lo;
    if (span == 0) return lo;
    int bytes = 0;
    for (uint64_t s = span; s != 0; s >>= 8) ++bytes;
    const uint64_t v = Bits(bytes);
    return span == UINT64_MAX ? v : lo + v % (span + 1);
  }

  // Up to `n` bytes (fewer at the end of the input).
  std::string_view Bytes(size_t n) {
    if (n > remaining()) n = remaining();
    std::string_view out(data_ + pos_, n);
    pos_ += n;
    return out;
  }

  // Everything not read yet.
  std::string_view Rest() { return Bytes(remaining()); }

 private:
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace fuzz
}  // namespace eventide

#endif  // EVENTIDE_TOOLS_FUZZ_FUZZ_INPUT_H_
