#include "fs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>

namespace stowage::fs_util {

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Result<std::vector<std::string>> list_dir(int dirfd) {
  const int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_status(errno, "open directory");
  DIR* d = ::fdopendir(fd);
  if (!d) {
    const int err = errno;
    ::close(fd);
    return errno_status(err, "fdopendir");
  }
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* de = ::readdir(d)) {
    const std::string_view n = de->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
    errno = 0;
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return errno_status(err, "readdir");
  return names;
}

namespace {

// The xattrs `list` and `get` (llistxattr/lgetxattr or their f- twins, bound
// to one file) give; `what` names the file in errors.
template <typename List, typename Get>
Result<std::vector<Xattr>> read_xattrs_with(const List& list, const Get& get, const std::string& what) {
  std::vector<Xattr> out;
  std::string names;
  for (;;) {
    const ssize_t n = list(nullptr, 0);
    if (n < 0) {
      if (errno == ENOTSUP || errno == ENODATA) return out;
      return errno_status(errno, "list xattrs of " + what);
    }
    if (n == 0) return out;
    names.resize(static_cast<size_t>(n));
    const ssize_t m = list(names.data(), names.size());
    if (m >= 0) {
      names.resize(static_cast<size_t>(m));
      break;
    }
    if (errno != ERANGE) return errno_status(errno, "list xattrs of " + what);  // ERANGE: grew meanwhile
  }
  for (size_t pos = 0; pos < names.size();) {
    const size_t end = names.find('\0', pos);
    std::string name = names.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    pos = end == std::string::npos ? names.size() : end + 1;
    if (name.empty()) continue;
    std::string value;
    for (;;) {
      const ssize_t n = get(name.c_str(), nullptr, 0);
      if (n < 0) {
        if (errno == ENODATA) break;  // removed meanwhile
        return errno_status(errno, "read xattr " + name + " of " + what);
      }
      value.resize(static_cast<size_t>(n));
      const ssize_t m = get(name.c_str(), value.data(), value.size());
      if (m >= 0) {
        value.resize(static_cast<size_t>(m));
        out.push_back({name, value});
        break;
      }
      if (errno != ERANGE) return errno_status(errno, "read xattr " + name + " of " + what);
    }
  }
  std::sort(out.begin(), out.end(), [](const Xattr& a, const Xattr& b) { return a.name < b.name; });
  return out;
}

}  // namespace

Result<std::vector<Xattr>> read_xattrs(int fd, const std::string& what) {
  return read_xattrs_with([&](char* buf, size_t n) { return ::flistxattr(fd, buf, n); },
                          [&](const char* name, void* buf, size_t n) { return ::fgetxattr(fd, name, buf, n); }, what);
}

Result<std::vector<Xattr>> read_xattrs_at(int dirfd, const std::string& name) {
  // The l- calls do not follow `name`; only the descriptor's magic link is.
  const std::string dir = "/proc/self/fd/" + std::to_string(dirfd);
  const std::string path = dir + "/" + name;
  auto xattrs =
      read_xattrs_with([&](char* buf, size_t n) { return ::llistxattr(path.c_str(), buf, n); },
                       [&](const char* x, void* buf, size_t n) { return ::lgetxattr(path.c_str(), x, buf, n); }, name);
  if (xattrs.status().code() == Code::kNotFound && ::access(dir.c_str(), F_OK) != 0) {
    return Status::failed_precondition("list xattrs of " + name + ": " + dir +
                                       " is missing (xattrs are read through /proc; is it mounted?)");
  }
  return xattrs;
}

Result<std::string> read_link_at(int dirfd, const std::string& name) {
  std::string buf(256, '\0');
  for (;;) {
    const ssize_t n = ::readlinkat(dirfd, name.c_str(), buf.data(), buf.size());
    if (n < 0) return errno_status(errno, "readlink");
    if (static_cast<size_t>(n) < buf.size()) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    buf.resize(buf.size() * 2);
  }
}

Result<DataMap> map_data(int dirfd, const std::string& name) {
  // O_NONBLOCK: a fifo put in the file's place must not block the open.
  constexpr int kFlags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
  int fd = ::openat(dirfd, name.c_str(), kFlags | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = ::openat(dirfd, name.c_str(), kFlags);  // not the owner
  if (fd < 0 && errno == ELOOP) return Status::not_found("open: replaced by a symlink");
  if (fd < 0) return errno_status(errno, "open");
  DataMap map;
  map.fd = Fd(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_status(errno, "fstat");
  if (!S_ISREG(st.st_mode)) return Status::not_found("open: not a regular file any more");
  // Reads of a regular file ignore O_NONBLOCK, but io_uring need not: off.
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) return errno_status(errno, "fcntl");
  map.inode = st.st_ino;
  map.size = static_cast<uint64_t>(st.st_size);
  map.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  map.ctime_ns = int64_t{st.st_ctim.tv_sec} * 1'000'000'000 + st.st_ctim.tv_nsec;
  // Only files with fewer allocated blocks than bytes can have holes; the
  // check keeps two lseeks off the common path.
  if (static_cast<uint64_t>(st.st_blocks) * 512 >= map.size) return map;
  uint64_t pos = 0;
  while (pos < map.size) {
    off_t data = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) {  // no data after pos: the rest is a hole
        map.holes.push_back({pos, map.size - pos});
        break;
      }
      if (errno == EINVAL) {  // file system without SEEK_DATA: read it all
        map.holes.clear();
        return map;
      }
      return errno_status(errno, "lseek SEEK_DATA");
    }
    const uint64_t d = std::min<uint64_t>(static_cast<uint64_t>(data), map.size);
    if (d > pos) map.holes.push_back({pos, d - pos});
    if (d >= map.size) break;
    const off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return errno_status(errno, "lseek SEEK_HOLE");
    pos = std::min<uint64_t>(static_cast<uint64_t>(hole), map.size);
  }
  return map;
}

std::vector<Hole> data_ranges(uint64_t size, const std::vector<Hole>& holes) {
  std::vector<Hole> out;
  uint64_t pos = 0;
  for (const auto& h : holes) {
    if (h.offset > pos) out.push_back({pos, h.offset - pos});
    pos = h.offset + h.length;
  }
  if (pos < size) out.push_back({pos, size - pos});
  return out;
}

std::vector<Hole> holes_within(const std::vector<Hole>& holes, uint64_t size) {
  std::vector<Hole> out;
  for (const auto& h : holes) {
    if (h.offset >= size) break;
    out.push_back({h.offset, std::min(h.length, size - h.offset)});
  }
  return out;
}

Result<uint64_t> read_ranges(const DataMap& map, size_t piece, const std::function<Status(std::string_view)>& fn) {
  std::string buf(piece, '\0');
  uint64_t read_end = 0;  // just past the last byte read
  for (const auto& r : data_ranges(map.size, map.holes)) {
    uint64_t off = r.offset;
    const uint64_t end = r.offset + r.length;
    while (off < end) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(piece, end - off));
      const ssize_t n = ::pread(map.fd.get(), buf.data(), want, static_cast<off_t>(off));
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_status(errno, "read");
      }
      if (n == 0) {
        // Shrank meanwhile: it ends at or before `off`.
        struct stat st {};
        if (::fstat(map.fd.get(), &st) != 0) return errno_status(errno, "fstat");
        return std::max(read_end, std::min(off, static_cast<uint64_t>(st.st_size)));
      }
      STOWAGE_RETURN_IF_ERROR(fn(std::string_view(buf.data(), static_cast<size_t>(n))));
      off += static_cast<uint64_t>(n);
      read_end = off;
    }
  }
  return map.size;
}

}  // namespace stowage::fs_util
