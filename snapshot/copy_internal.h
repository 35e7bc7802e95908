// Internals shared by the copy strategies: file metadata as the walker sees it,
// metadata application, sparse-aware portable data copy, fd ownership.
#pragma once

#include <fcntl.h>
#include <linux/stat.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "stowage/copy_engine.h"
#include "stowage/status.h"

namespace stowage::copy_internal {

// Closes on destruction; move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// The subset of stat the engine preserves or decides on.
struct FileMeta {
  mode_t mode = 0;  // type and permission bits
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;  // 512-byte units allocated
  uint64_t nlink = 0;
  dev_t dev = 0;
  ino_t ino = 0;
  dev_t rdev = 0;
  timespec atime{};
  timespec mtime{};
};

FileMeta meta_from_stat(const struct stat& st);
FileMeta meta_from_statx(const struct statx& stx);

// fstatat(dir, name, AT_SYMLINK_NOFOLLOW).
Result<FileMeta> stat_at(int dir, const std::string& name);

// Fewer allocated blocks than the size needs: the file has holes (or is
// compressed/inline, which the sparse path handles just as well).
inline bool may_have_holes(const FileMeta& m) { return m.blocks * 512 < m.size; }

// "context 'name'" for error messages; names may hold any byte but '/'.
std::string quoted(std::string_view context, std::string_view name);

// How a destination inode was created, so apply_meta_fd skips redundant calls.
struct MetaPlan {
  mode_t umask_bits = 022;
  bool mode_set_at_create = false;  // created with open(..., mode & 07777)
  // chown even when the source owner is ours: the inode may have taken the
  // group of a setgid parent (only the copy's root can have one; inner
  // directories stay 0700 until their contents are done).
  bool always_chown = false;
};

// Applies owner, xattrs (from src_fd), mode and times to an open regular file or
// directory, in the order that keeps setuid bits and capabilities intact.
Status apply_meta_fd(int dst_fd, int src_fd, const FileMeta& m, const CopyOptions& opts,
                     const MetaPlan& plan, const std::string& name);

// For symlinks and special files: owner, mode (not for symlinks), times by name.
Status apply_meta_at(int dst_dir, const std::string& name, const FileMeta& m,
                     const CopyOptions& opts);

// Copies the data of a file described by `m` from src_fd to dst_fd (both open,
// dst empty), leaving holes where the source has them; then sets dst's size. Uses
// copy_file_range, then pread/pwrite where the kernel refuses it. Adds the
// data bytes moved to *bytes_copied.
Status copy_data_portable(int src_fd, int dst_fd, const FileMeta& m, uint64_t* bytes_copied,
                          const std::string& name);

// One data region of a file, as SEEK_DATA/SEEK_HOLE report it.
struct Extent {
  uint64_t offset;
  uint64_t length;
};
Result<std::vector<Extent>> data_extents(int fd, uint64_t size);

// The process umask, read without changing it (/proc/self/status). 022 if unknown.
mode_t current_umask();

// A regular-file copy request: src_dir/name -> dst_dir/name (dst must not exist).
struct FileJob {
  int src_dir;
  std::string src_name;
  int dst_dir;
  std::string name;  // in dst_dir; also the name errors mention
  FileMeta meta;
  bool is_root = false;  // the copy's top entry (see MetaPlan::always_chown)
};

// open(src_dir/name) for reading and create dst_dir/name exclusively.
struct OpenPair {
  UniqueFd src;
  UniqueFd dst;
};
Result<OpenPair> open_pair(const FileJob& job);

// Copies regular files' data and metadata for one strategy. May defer work
// until flush(); the dir fds in a job stay open until flush() returns.
class FileCopier {
 public:
  virtual ~FileCopier() = default;
  [[nodiscard]] virtual Status copy(const FileJob& job, CopyStats* stats) = 0;
  // Completes every deferred copy. After it returns OK all files exist with
  // their data and metadata.
  [[nodiscard]] virtual Status flush(CopyStats* stats) = 0;
  // lstat of every name in `dir`; copiers with batching override it.
  [[nodiscard]] virtual Result<std::vector<FileMeta>> stat_all(int dir,
                                                               const std::vector<std::string>& names);
};

// pread/copy_file_range copier.
std::unique_ptr<FileCopier> make_portable_copier(const CopyOptions& opts, mode_t umask_bits);
// FICLONE copier; `fallback` takes files FICLONE cannot clone (null: fail).
std::unique_ptr<FileCopier> make_reflink_copier(const CopyOptions& opts, mode_t umask_bits,
                                                std::unique_ptr<FileCopier> fallback);
// io_uring copier; error (e.g. ENOMEM from ring setup) when it cannot start.
// With `kernel_copy_large`, files too large or sparse for a batch go through
// copy_data_portable (copy_file_range) instead of the read/write pipeline:
// measured, the kernel's own copy needs far less CPU for big buffered files.
Result<std::unique_ptr<FileCopier>> make_uring_copier(const CopyOptions& opts, mode_t umask_bits,
                                                      bool kernel_copy_large);

}  // namespace stowage::copy_internal
