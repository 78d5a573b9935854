// with_nofile_limit N PROGRAM [ARGS...]: sets RLIMIT_NOFILE's soft limit to
// N (the hard limit is left alone) and execs PROGRAM with ARGS. The fault
// tests start a server through it to run that server out of file
// descriptors without lowering the test process's own limit.
//
// exec keeps the pid, the parent-death signal the test armed before it, and
// the open stdout pipe, so ServerProcess::StartListening works through it
// unchanged. Exit status 127 when N is not a number or exec fails.
#include <errno.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: with_nofile_limit N PROGRAM [ARGS...]\n");
    return 127;
  }
  char* end = nullptr;
  const unsigned long long limit = std::strtoull(argv[1], &end, 10);
  if (end == argv[1] || *end != '\0' || limit < 3) {
    std::fprintf(stderr, "with_nofile_limit: bad limit '%s'\n", argv[1]);
    return 127;
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    std::fprintf(stderr, "with_nofile_limit: getrlimit: %s\n",
                 std::strerror(errno));
    return 127;
  }
  rl.rlim_cur = static_cast<rlim_t>(limit);
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
  }
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    std::fprintf(stderr, "with_nofile_limit: setrlimit: %s\n",
                 std::strerror(errno));
    return 127;
  }
  execv(argv[2], argv + 2);
  std::fprintf(stderr, "with_nofile_limit: exec %s: %s\n", argv[2],
               std::strerror(errno));
  return 127;
}
