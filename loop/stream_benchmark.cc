// Buffer micro-benchmarks: the costs the stream layer pays per message.
//
//   ./bazelw run --config=bench //loop:stream_benchmark --
//       --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//   (one command line)
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "loop/buffer.h"

namespace eventide {
namespace {

// Many small appends and a consume, as a response writer does.
void BM_AppendSmallThenConsume(benchmark::State& state) {
  const std::string piece(static_cast<size_t>(state.range(0)), 'a');
  Buffer b;
  for (auto _ : state) {
    for (int i = 0; i < 64; ++i) (void)b.Append(piece);
    b.Consume(b.size());
  }
  state.SetItemsProcessed(state.iterations() * 64);
  state.SetBytesProcessed(state.iterations() * 64 * state.range(0));
}
BENCHMARK(BM_AppendSmallThenConsume)->Arg(16)->Arg(256)->Arg(4096);

// Finding "\r\n" at the end of 16 KiB spread over blocks of range(0) bytes.
void BM_FindCrlfAcrossBlocks(benchmark::State& state) {
  const size_t block = static_cast<size_t>(state.range(0));
  std::vector<std::shared_ptr<std::string>> keep;
  Buffer b;
  for (size_t at = 0; at < 16 * 1024; at += block) {
    auto s = std::make_shared<std::string>(block, 'x');
    if (at + block >= 16 * 1024) (*s)[block - 1] = '\r';
    keep.push_back(s);
    (void)b.AppendExternal(*s, s);
  }
  (void)b.Append("\n");
  for (auto _ : state) benchmark::DoNotOptimize(b.FindCrlf());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(b.size()));
}
BENCHMARK(BM_FindCrlfAcrossBlocks)->Arg(64)->Arg(4096)->Arg(16384);

// Echoing a message from one buffer to another: moving blocks vs copying.
void BM_EchoMoveBlocks(benchmark::State& state) {
  const std::string payload(static_cast<size_t>(state.range(0)), 'p');
  Buffer in;
  Buffer out;
  for (auto _ : state) {
    (void)in.Append(payload);
    (void)out.Append(std::move(in));
    out.Consume(out.size());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_EchoMoveBlocks)->Arg(1024)->Arg(64 * 1024)->Arg(1 << 20);

void BM_EchoCopyBytes(benchmark::State& state) {
  const std::string payload(static_cast<size_t>(state.range(0)), 'p');
  Buffer in;
  Buffer out;
  for (auto _ : state) {
    (void)in.Append(payload);
    for (size_t i = 0; i < in.chunk_count(); ++i) (void)out.Append(in.chunk(i));
    in.Consume(in.size());
    out.Consume(out.size());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_EchoCopyBytes)->Arg(1024)->Arg(64 * 1024)->Arg(1 << 20);

// readv into the buffer and sendmsg out of it through a socketpair, in
// range(0)-byte messages: the per-call overhead of the buffer's I/O.
void BM_ReadFromSendTo(benchmark::State& state) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) {
    state.SkipWithError("socketpair");
    return;
  }
  const std::string payload(static_cast<size_t>(state.range(0)), 'r');
  Buffer out;
  Buffer in;
  for (auto _ : state) {
    (void)out.Append(payload);
    while (!out.empty()) {
      if (out.SendTo(sv[0]).error != 0) break;
      while (in.ReadFrom(sv[1]).bytes > 0) {
      }
    }
    while (in.size() < payload.size() && in.ReadFrom(sv[1]).bytes > 0) {
    }
    in.Consume(in.size());
  }
  state.SetBytesProcessed(state.iterations() * state.range(0));
  close(sv[0]);
  close(sv[1]);
}
BENCHMARK(BM_ReadFromSendTo)->Arg(64)->Arg(1024)->Arg(64 * 1024);

}  // namespace
}  // namespace eventide
