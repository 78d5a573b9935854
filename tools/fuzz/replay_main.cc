// The main() of a fuzz target in normal builds: runs LLVMFuzzerTestOneInput
// on every file named on the command line, or found directly inside a
// directory named there, in sorted order. Arguments starting with '-' are
// libFuzzer flags and are ignored, so a target runs the same way with either
// main. Each input is copied into a heap block of exactly its size, so that
// ASan catches a read one byte past the end as libFuzzer would.
//
// Exit status: 0 if every input ran (a failing check aborts the process),
// 1 if an argument cannot be read or no input was found at all (an empty
// corpus would otherwise pass without testing anything).

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
// Optional in a fuzz target, as with libFuzzer.
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv)
    __attribute__((weak));

namespace {

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Appends the regular files directly inside `dir`; false if it cannot be read.
bool ListFiles(const std::string& dir, std::vector<std::string>* out) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return false;
  std::vector<std::string> names;
  while (const dirent* e = readdir(d)) {
    const std::string path = dir + "/" + e->d_name;
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      names.push_back(path);
    }
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  out->insert(out->end(), names.begin(), names.end());
  return true;
}

bool ReadFile(const std::string& path, std::string* contents) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  contents->assign(std::istreambuf_iterator<char>(f),
                   std::istreambuf_iterator<char>());
  return !f.bad();
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::string> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.empty() || arg[0] == '-') continue;
    if (IsDirectory(arg)) {
      if (!ListFiles(arg, &inputs)) {
        std::fprintf(stderr, "replay: cannot list %s: %s\n", arg.c_str(),
                     std::strerror(errno));
        return 1;
      }
    } else {
      inputs.push_back(arg);
    }
  }
  if (inputs.empty()) {
    std::fprintf(stderr, "replay: no inputs (usage: %s FILE_OR_DIR...)\n",
                 argv[0]);
    return 1;
  }
  for (const std::string& path : inputs) {
    std::string contents;
    if (!ReadFile(path, &contents)) {
      std::fprintf(stderr, "replay: cannot read %s\n", path.c_str());
      return 1;
    }
    // Printed before the run, so a crash names its input.
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", path.c_str(),
                 contents.size());
    const size_t n = contents.size();
    auto exact = std::make_unique<uint8_t[]>(n);
    std::memcpy(exact.get(), contents.data(), n);
    LLVMFuzzerTestOneInput(exact.get(), n);
  }
  std::fprintf(stderr, "replay: %zu inputs passed\n", inputs.size());
  return 0;
}
