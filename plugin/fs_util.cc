#include "fs_util.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <random>

namespace stowage {
namespace {

// Closes an fd on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

Status write_all(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status(errno, "write " + what);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::ok();
}

std::string temp_suffix() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + std::to_string(rng() % 1000000);
}

}  // namespace

std::string parent_dir(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

Status write_file_atomic(const std::string& path, std::string_view data, unsigned mode) {
  std::string dir = parent_dir(path);
  std::string name = path.substr(path.find_last_of('/') + 1);
  std::string tmp = dir + "/." + name + ".tmp-" + temp_suffix();
  {
    Fd f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)};
    if (f.fd < 0) return errno_status(errno, "create " + tmp);
    Status st = write_all(f.fd, data, tmp);
    if (st.is_ok() && ::fsync(f.fd) != 0) st = errno_status(errno, "fsync " + tmp);
    if (!st.is_ok()) {
      ::unlink(tmp.c_str());
      return st;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status st = errno_status(errno, "rename " + tmp + " to " + path);
    ::unlink(tmp.c_str());
    return st;
  }
  return fsync_dir(dir);
}

Status rename_durable(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) return errno_status(errno, "rename " + from + " to " + to);
  std::string a = parent_dir(from), b = parent_dir(to);
  STOWAGE_RETURN_IF_ERROR(fsync_dir(b));
  if (a != b) STOWAGE_RETURN_IF_ERROR(fsync_dir(a));
  return Status::ok();
}

Result<std::string> read_small_file(const std::string& path, size_t max_bytes) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return errno_status(errno, "open " + path);
  std::string out;
  char buf[16384];
  while (true) {
    ssize_t n = ::read(f.fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status(errno, "read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) return Status::resource_exhausted(path + " is larger than " + std::to_string(max_bytes) + " bytes");
  }
  return out;
}

Status make_dirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return errno_status(ec.value(), "create directory " + dir);
  return Status::ok();
}

Status remove_tree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) return errno_status(ec.value(), "remove " + path);
  return Status::ok();
}

void raise_open_file_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= lim.rlim_max) return;
  lim.rlim_cur = lim.rlim_max;  // never RLIM_INFINITY for files: the kernel caps it at fs.nr_open
  (void)::setrlimit(RLIMIT_NOFILE, &lim);
}

}  // namespace stowage
