// Helpers shared by Stowage's test suites: scratch directories, child
// processes (daemons, dockerd, radosgw) with their output in a log file, and
// polling with a deadline. Nothing here is used by production code.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace stowage::test {

// A fresh directory under $TMPDIR (or /tmp), removed recursively on destruction
// unless STOWAGE_KEEP_TEST_DIRS is set.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "stowage");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

// A tmpfs of `size_bytes` mounted on a fresh TempDir, for tests of a full
// disk. Needs root: error() says why it could not be mounted (empty when it
// is). Unmounted on destruction (lazily if still busy), even when a test fails.
class SmallFs {
 public:
  explicit SmallFs(uint64_t size_bytes);
  ~SmallFs();
  SmallFs(const SmallFs&) = delete;
  SmallFs& operator=(const SmallFs&) = delete;
  const std::string& path() const { return dir_.path(); }
  const std::string& error() const { return error_; }
  // Writes `path` (a file on this filesystem) until the filesystem is full;
  // removing the file frees the space again.
  void fill(const std::string& path) const;

 private:
  TempDir dir_{"stowage-smallfs"};
  std::string error_;
  bool mounted_ = false;
};

// A child process. stdout and stderr go to `log_path` (appended). The child is
// killed with SIGKILL on destruction if still running, and it dies with the test
// process (PR_SET_PDEATHSIG).
class Subprocess {
 public:
  struct Options {
    std::vector<std::string> argv;
    std::map<std::string, std::string> env;  // added to the inherited environment
    std::string log_path = "/dev/null";
    std::string cwd;
    bool new_process_group = true;  // so stop() can signal the whole tree
  };
  explicit Subprocess(Options opts);
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  // Sends `sig` (to the process group when new_process_group) and waits up to
  // `grace` for exit; then SIGKILL. Returns the raw wait status, or -1.
  int stop(int sig = 15, std::chrono::milliseconds grace = std::chrono::seconds(10));
  // SIGKILL to the process alone (not its group): simulates a crash of just it.
  void kill_hard();
  // Waits for exit; returns the raw wait status, or -1 on timeout.
  int wait(std::chrono::milliseconds timeout);
  const std::string& log_path() const { return opts_.log_path; }

 private:
  Options opts_;
  pid_t pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
};

// Polls `pred` every 10 ms until it is true or `timeout` passes.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

// Runs a shell command, returns exit status (-1 if it could not run) and
// captures combined output in *out when non-null.
int run_shell(const std::string& cmd, std::string* out = nullptr);

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& data);

// A TCP port on 127.0.0.1, free when chosen, outside the kernel's ephemeral
// range, and claimed for the life of this process so that no other test
// process is handed it too. Throws if none is left.
int free_tcp_port();

// Directory with the built binaries (set by CMake as STOWAGE_BIN_DIR).
std::string bin_dir();

}  // namespace stowage::test
