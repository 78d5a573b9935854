// apps/echo_server as a user runs it: the real binary on a kernel-chosen
// port, on every backend this kernel supports. Bytes come back unchanged,
// in pieces and in bulk; SIGTERM and SIGINT stop it with exit 0; bad flags
// exit 2 with one line on stderr.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "demux/registry.h"
#include "gtest/gtest.h"
#include "tests/cached_test_util.h"

namespace eventide {
namespace cached_test {
namespace {

std::string EchoPath() {
  absl::StatusOr<std::string> path = RunfileBinaryPath("apps/echo_server");
  EXPECT_TRUE(path.ok()) << path.status();
  return path.ok() ? *path : "";
}

class EchoServerTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<ServerProcess> Start() {
    auto server = ServerProcess::StartListening(
        EchoPath(),
        {"--port", "0", "--bind", "127.0.0.1", "--backend", GetParam()});
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return nullptr;
    EXPECT_NE((*server)->banner().find("backend " + GetParam()),
              std::string::npos)
        << (*server)->banner();
    return std::move(*server);
  }

  static void ExpectCleanExit(ServerProcess& server, int signo) {
    absl::StatusOr<int> status = server.Stop(signo, absl::Seconds(5));
    ASSERT_TRUE(status.ok()) << status.status();
    ASSERT_TRUE(WIFEXITED(*status)) << "wait status " << *status;
    EXPECT_EQ(WEXITSTATUS(*status), 0);
  }
};

TEST_P(EchoServerTest, EchoesSmallWritesAndBulkData) {
  auto server = Start();
  ASSERT_NE(server, nullptr);
  auto client = Client::Connect(server->port());
  ASSERT_TRUE(client.ok()) << client.status();

  // One byte at a time.
  ASSERT_TRUE(client->Send("hello", /*piece=*/1).ok());
  auto back = client->ReadExactly(5);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, "hello");

  // 1 MiB in 16 KiB rounds, every byte checked (reading each round keeps
  // the server's back-pressure from stalling our own sends).
  std::string sent, received;
  for (int round = 0; round < 64; ++round) {
    std::string chunk(16 * 1024, '\0');
    for (size_t i = 0; i < chunk.size(); ++i) {
      chunk[i] = static_cast<char>((round * 131 + i * 7) & 0xff);
    }
    ASSERT_TRUE(client->Send(chunk).ok());
    auto echoed = client->ReadExactly(chunk.size());
    ASSERT_TRUE(echoed.ok()) << echoed.status();
    sent += chunk;
    received += *echoed;
  }
  EXPECT_TRUE(sent == received) << "bulk echo differs";
  ExpectCleanExit(*server, SIGTERM);
}

TEST_P(EchoServerTest, ManyClientsAtOnceAndSigint) {
  auto server = Start();
  ASSERT_NE(server, nullptr);
  std::vector<Client> clients;
  for (int i = 0; i < 50; ++i) {
    auto client = Client::Connect(server->port());
    ASSERT_TRUE(client.ok()) << client.status();
    clients.push_back(std::move(*client));
  }
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(clients[i].Send(absl::StrCat("client ", i, "\n")).ok());
  }
  for (int i = 0; i < 50; ++i) {
    const std::string want = absl::StrCat("client ", i, "\n");
    auto got = clients[i].ReadExactly(want.size());
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, want);
  }
  ExpectCleanExit(*server, SIGINT);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, EchoServerTest,
                         ::testing::ValuesIn(UsableBackendNames()),
                         [](const auto& info) { return info.param; });

TEST(EchoServerFlagsTest, BadFlagsExitTwoWithOneLine) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"--port", "70000"},
           {"--bind", "not-an-address"},
           {"--no-such-flag"},
           {"--backend", "no_such_backend"}}) {
    auto run = RunToCompletion(EchoPath(), args, absl::Seconds(10));
    ASSERT_TRUE(run.ok()) << run.status();
    ASSERT_TRUE(WIFEXITED(run->wait_status)) << args[0];
    EXPECT_EQ(WEXITSTATUS(run->wait_status), 2)
        << args[0] << ": " << run->stderr_text;
    EXPECT_EQ(
        std::count(run->stderr_text.begin(), run->stderr_text.end(), '\n'), 1)
        << args[0] << ": " << run->stderr_text;
  }
}

}  // namespace
}  // namespace cached_test
}  // namespace eventide
