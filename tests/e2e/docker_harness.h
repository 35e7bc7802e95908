// A real Docker engine for end-to-end tests: Debian's dockerd started with its
// own data-root, exec-root, pidfile and API socket under a scratch directory,
// without iptables or a bridge (no network is needed), plus a busybox image
// made with `docker import` since no registry is reachable.
//
// dockerd finds volume plugins in /run/docker/plugins, a fixed path. Tests that
// start their own stowaged call isolate_plugin_dir() first: it moves the test
// process into a private mount namespace with a tmpfs there, so the host's
// plugins and ours never meet.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "support/test_support.h"

namespace testing {
class Environment;
}

namespace stowage::test {

// The main() of an e2e test binary: initialises gtest, calls
// isolate_plugin_dir() (returning 1 with the reason when it fails: a failure,
// never a silent skip), registers `env` (owned by gtest) and runs every test.
int run_e2e_tests(int argc, char** argv, ::testing::Environment* env);

// Enters a private mount namespace and mounts a tmpfs on /run/docker/plugins.
// Must run before any thread starts. Returns an error message or "".
std::string isolate_plugin_dir();

class DockerEngine {
 public:
  explicit DockerEngine(std::string dir);
  ~DockerEngine();

  // Runs dockerd as `prefix... dockerd ...` from the next start() on (e.g.
  // nsenter into another mount namespace, see host_harness.h). The prefix must
  // exec dockerd in place, so that stop() and kill9() reach dockerd itself.
  void set_launcher(std::vector<std::string> prefix) { launcher_ = std::move(prefix); }

  // Starts dockerd and waits (bounded) until its API answers.
  bool start();
  // SIGTERM: containers are stopped, volumes unmounted, as on a clean shutdown.
  int stop();
  // SIGKILL of dockerd alone: containers keep running under their shims.
  void kill9();

  // Force-removes every container (starting dockerd again if it is down), so
  // no container outlives the test.
  void remove_all_containers();

  // Runs the docker CLI against this engine. Returns the exit status; the
  // combined output goes to *out.
  int docker(const std::string& args, std::string* out = nullptr);

  // True while the dockerd process is alive.
  bool running() { return proc_ && proc_->running(); }

  // Builds a busybox image called `tag` with `docker import`.
  bool import_busybox(const std::string& tag);

  const std::string& log_path() const { return log_; }
  // The engine's API socket, for tools other than `docker` (build scripts, docker-compose).
  const std::string& socket_path() const { return sock_; }

 private:
  std::string dir_, sock_, log_;
  std::vector<std::string> launcher_;
  std::unique_ptr<Subprocess> proc_;
};

}  // namespace stowage::test
