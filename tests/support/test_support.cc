#include "support/test_support.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace stowage::test {

namespace fs = std::filesystem;

TempDir::TempDir(const std::string& tag) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + tag + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
  path_ = buf.data();
}

TempDir::~TempDir() {
  if (std::getenv("STOWAGE_KEEP_TEST_DIRS")) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

SmallFs::SmallFs(uint64_t size_bytes) {
  const std::string opts = "size=" + std::to_string(size_bytes) + ",mode=0755";
  if (::mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, opts.c_str()) != 0) {
    error_ = "mount a tmpfs on " + dir_.path() + ": " + std::strerror(errno);
    return;
  }
  mounted_ = true;
}

SmallFs::~SmallFs() {
  if (mounted_ && ::umount2(dir_.path().c_str(), 0) != 0) (void)::umount2(dir_.path().c_str(), MNT_DETACH);
}

void SmallFs::fill(const std::string& path) const {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("fill: create " + path + ": " + std::strerror(errno));
  // Large writes first, then page by page, so that not even a page is left.
  static const std::string kZeros(1 << 20, '\0');
  for (size_t chunk : {kZeros.size(), size_t{4096}, size_t{1}}) {
    while (::write(fd, kZeros.data(), chunk) > 0) {
    }
  }
  int err = errno;
  ::close(fd);
  if (err != ENOSPC) throw std::runtime_error("fill " + path + ": " + std::strerror(err));
}

Subprocess::Subprocess(Options opts) : opts_(std::move(opts)) {
  if (opts_.argv.empty()) throw std::invalid_argument("Subprocess: empty argv");
  pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    if (opts_.new_process_group) setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int fd = open(opts_.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    if (!opts_.cwd.empty() && chdir(opts_.cwd.c_str()) != 0) _exit(126);
    for (const auto& [k, v] : opts_.env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (auto& a : opts_.argv) args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    std::fprintf(stderr, "exec %s failed: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  if (opts_.new_process_group) setpgid(pid_, pid_);
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !reaped_) {
    if (opts_.new_process_group) ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

bool Subprocess::running() {
  if (reaped_) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    status_ = st;
    return false;
  }
  return true;
}

int Subprocess::wait(std::chrono::milliseconds timeout) {
  if (wait_until([&] { return !running(); }, timeout)) return status_;
  return -1;
}

int Subprocess::stop(int sig, std::chrono::milliseconds grace) {
  if (!running()) return status_;
  ::kill(opts_.new_process_group ? -pid_ : pid_, sig);
  int st = wait(grace);
  if (st != -1) return st;
  if (opts_.new_process_group) ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  return wait(std::chrono::seconds(10));
}

void Subprocess::kill_hard() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  wait(std::chrono::seconds(10));
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int run_shell(const std::string& cmd, std::string* out) {
  std::string full = cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (!p) return -1;
  std::string buf;
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) buf.append(chunk, n);
  int st = pclose(p);
  if (out) *out = std::move(buf);
  if (st == -1) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  if (!out) throw std::runtime_error("write_file failed: " + path);
}

int free_tcp_port() {
  // Tests run in parallel (ctest -j) and several start servers whose port is
  // chosen here but bound later by another process (ceph-mon, radosgw,
  // stowaged). Two hazards follow, and each is closed off:
  //  - two test processes picking the same port: a port is claimed by binding
  //    an abstract unix socket named after it, held for the life of this
  //    process and released by the kernel when it dies;
  //  - an outgoing connection taking the port as its ephemeral source port
  //    before the server binds it: ports come from outside the kernel's
  //    ephemeral range (ip_local_port_range), which connect() never uses.
  // Seen without this: one radosgw fixture's OSD joined another test's
  // monitor and was refused with "wrong fsid".
  static std::mutex mu;
  static std::vector<int> claims;  // held open until the process exits
  std::lock_guard lock(mu);
  int eph_low = 32768, eph_high = 60999;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> eph_low >> eph_high;
  int first = std::max(10000, eph_low - 12800), last = eph_low - 1;
  if (last - first < 1000) first = eph_high + 1, last = 65535;  // a low range: use the ports above it
  if (last - first < 1000) first = std::max(1024, eph_low), last = eph_high;  // all ephemeral: claims only
  const int span = last - first + 1;
  if (span <= 0) throw std::runtime_error("no usable TCP port range (ip_local_port_range " + std::to_string(eph_low) +
                                          " " + std::to_string(eph_high) + ")");
  const int start = static_cast<int>(std::random_device{}() % span);
  for (int i = 0; i < span; ++i) {
    const int port = first + (start + i) % span;
    int claim = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (claim < 0) throw std::runtime_error(std::string("socket(AF_UNIX): ") + std::strerror(errno));
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    const std::string name = "stowage-test-tcp-port-" + std::to_string(port);
    std::memcpy(un.sun_path + 1, name.data(), name.size());  // sun_path[0] == 0: abstract
    const auto un_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    if (bind(claim, reinterpret_cast<sockaddr*>(&un), un_len) != 0) {
      close(claim);  // another test process holds it
      continue;
    }
    int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) {
      close(claim);
      throw std::runtime_error(std::string("socket(AF_INET): ") + std::strerror(errno));
    }
    const int one = 1;
    setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // as the servers will
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    in.sin_port = htons(static_cast<uint16_t>(port));
    const bool free = bind(probe, reinterpret_cast<sockaddr*>(&in), sizeof in) == 0;
    close(probe);
    if (!free) {
      close(claim);  // something outside the tests listens there
      continue;
    }
    claims.push_back(claim);
    return port;
  }
  throw std::runtime_error("no free TCP port in " + std::to_string(first) + "-" + std::to_string(last) + " on 127.0.0.1");
}

std::string bin_dir() {
#ifdef STOWAGE_BIN_DIR
  return STOWAGE_BIN_DIR;
#else
  const char* d = std::getenv("STOWAGE_BIN_DIR");
  return d ? d : ".";
#endif
}

}  // namespace stowage::test
