#include "docker_harness.h"

#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include <gtest/gtest.h>

namespace stowage::test {

namespace fs = std::filesystem;

std::string isolate_plugin_dir() {
  if (::geteuid() != 0) return "end-to-end tests need root (dockerd, mount namespaces)";
  // Orphans (a killed dockerd's containerd) become our children, so we can reap
  // them: a zombie containerd looks alive to the next dockerd, which then waits
  // for it forever.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return std::string("PR_SET_CHILD_SUBREAPER: ") + std::strerror(errno);
  if (::unshare(CLONE_NEWNS) != 0) return std::string("unshare(CLONE_NEWNS): ") + std::strerror(errno);
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return std::string("make / private: ") + std::strerror(errno);
  }
  std::error_code ec;
  fs::create_directories("/run/docker/plugins", ec);
  if (::mount("tmpfs", "/run/docker/plugins", "tmpfs", 0, "mode=0755") != 0) {
    return std::string("mount tmpfs on /run/docker/plugins: ") + std::strerror(errno);
  }
  return "";
}

int run_e2e_tests(int argc, char** argv, ::testing::Environment* env) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string why = isolate_plugin_dir();
  if (!why.empty()) {
    std::fprintf(stderr, "cannot run end-to-end tests: %s\n", why.c_str());
    delete env;
    return 1;
  }
  ::testing::AddGlobalTestEnvironment(env);
  return RUN_ALL_TESTS();
}

DockerEngine::DockerEngine(std::string dir) : dir_(std::move(dir)), sock_(dir_ + "/docker.sock"), log_(dir_ + "/dockerd.log") {
  fs::create_directories(dir_ + "/cli");
}

DockerEngine::~DockerEngine() {
  if (proc_ && proc_->running()) stop();
}

bool DockerEngine::start() {
  Subprocess::Options o;
  o.argv = launcher_;
  std::vector<std::string> args = {"dockerd",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--data-root=" + dir_ + "/data",
            "--exec-root=" + dir_ + "/exec",
            "--pidfile=" + dir_ + "/dockerd.pid",
            "-H",
            "unix://" + sock_};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.log_path = log_;
  proc_ = std::make_unique<Subprocess>(o);
  bool up = wait_until([&] { return !proc_->running() || docker("version --format '{{.Server.Version}}'") == 0; },
                       std::chrono::seconds(60));
  if (!up || !proc_->running()) {
    std::string log = read_file(log_);
    ADD_FAILURE() << "dockerd did not start; log tail:\n" << log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
    return false;
  }
  return true;
}

int DockerEngine::stop() {
  if (!proc_) return -1;
  // dockerd stops its containers (10 s grace each) and its containerd.
  return proc_->stop(SIGTERM, std::chrono::seconds(60));
}

void DockerEngine::kill9() {
  if (!proc_) return;
  proc_->kill_hard();
  // Its containerd dies with it (parent-death signal); reap it, see above.
  std::string pid_text = read_file(dir_ + "/exec/containerd/containerd.pid");
  pid_t cpid = pid_text.empty() ? -1 : static_cast<pid_t>(std::stol(pid_text));
  if (cpid <= 0) return;
  bool gone = wait_until(
      [&] {
        pid_t r = ::waitpid(cpid, nullptr, WNOHANG);
        if (r == cpid) return true;
        return r < 0 && ::kill(cpid, 0) != 0;
      },
      std::chrono::seconds(30));
  if (!gone) ADD_FAILURE() << "containerd " << cpid << " outlived its dockerd";
}

void DockerEngine::remove_all_containers() {
  if (!proc_ || !proc_->running()) {
    if (!start()) return;
  }
  std::string ids;
  if (docker("ps -aq", &ids) == 0 && !ids.empty()) {
    for (char& c : ids) c = c == '\n' ? ' ' : c;
    docker("rm -f " + ids);
  }
}

int DockerEngine::docker(const std::string& args, std::string* out) {
  std::string cmd = "DOCKER_CONFIG=" + dir_ + "/cli DOCKER_HOST=unix://" + sock_ + " /usr/bin/docker " + args;
  return run_shell(cmd, out);
}

bool DockerEngine::import_busybox(const std::string& tag) {
  std::string root = dir_ + "/busybox-root";
  fs::create_directories(root + "/bin");
  fs::create_directories(root + "/tmp");
  fs::copy_file("/bin/busybox", root + "/bin/busybox", fs::copy_options::overwrite_existing);
  for (const char* applet : {"sh", "cat", "echo", "ls", "sleep", "stat", "id", "touch", "date", "wc", "sync", "dd",
                             "test", "[", "mkdir", "rm", "sha256sum", "head", "grep", "true", "false"}) {
    std::error_code ec;
    fs::create_symlink("busybox", root + "/bin/" + applet, ec);
  }
  std::string out;
  int rc = run_shell("tar -C " + root + " -c . | DOCKER_CONFIG=" + dir_ + "/cli DOCKER_HOST=unix://" + sock_ +
                         " /usr/bin/docker import - " + tag,
                     &out);
  if (rc != 0) ADD_FAILURE() << "docker import failed: " << out;
  return rc == 0;
}

}  // namespace stowage::test
