// File-system helpers for the backup walk: directory listing, xattrs, symlink
// targets, and the data/hole map of a sparse file (SEEK_DATA/SEEK_HOLE).
// Every error is an errno_status() naming the path. Internal to stowage_backup.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "stowage/status.h"
#include "stowage/tree.h"

namespace stowage::fs_util {

// Closes the descriptor it owns.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset();

 private:
  int fd_ = -1;
};

// Names in the directory open at `dirfd`, without "." and "..", unsorted.
[[nodiscard]] Result<std::vector<std::string>> list_dir(int dirfd);

// Extended attributes of the file or directory open at `fd`, sorted by name.
// A file system without xattr support gives an empty list. `what` names it in
// errors.
[[nodiscard]] Result<std::vector<Xattr>> read_xattrs(int fd, const std::string& what);

// As read_xattrs(), of the entry `name` of the directory open at `dirfd`,
// without following it if it is a symlink and without opening it (a fifo, a
// device): through /proc/self/fd/<dirfd>/<name>, a path of any depth's
// entry that is short and crosses no symlink but the descriptor's own.
// kNotFound if the entry is gone; kFailedPrecondition if /proc is missing.
[[nodiscard]] Result<std::vector<Xattr>> read_xattrs_at(int dirfd, const std::string& name);

// Target of the symlink `name` in `dirfd`, of any length.
[[nodiscard]] Result<std::string> read_link_at(int dirfd, const std::string& name);

// An open regular file with its metadata and holes.
struct DataMap {
  Fd fd;
  uint64_t inode = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  std::vector<Hole> holes;  // empty unless the file is sparse
};

// Opens the entry `name` of the directory open at `dirfd` (never through a
// symlink) and maps its holes when it occupies fewer blocks than its size.
// kNotFound when `name` no longer names a regular file: removed, or replaced
// by a symlink, a directory or any other kind of entry (a fifo does not block
// the open).
[[nodiscard]] Result<DataMap> map_data(int dirfd, const std::string& name);

// Reads every byte of `map` outside its holes, in order, in pieces of at most
// `piece` bytes. Returns the size to record with what was read: map.size, or
// for a file that shrank meanwhile, where it ended (where it ends now if that
// is in a hole past the last byte read, never before that byte) — a dense
// file's read records what it read the same way. Cut the holes to it with
// holes_within(). What a file grew by past map.size is not read.
[[nodiscard]] Result<uint64_t> read_ranges(const DataMap& map, size_t piece,
                                           const std::function<Status(std::string_view)>& fn);

// `holes` cut to a file of `size` bytes.
std::vector<Hole> holes_within(const std::vector<Hole>& holes, uint64_t size);

// The data ranges of a file of `size` bytes with `holes` ([offset, length]).
std::vector<Hole> data_ranges(uint64_t size, const std::vector<Hole>& holes);

}  // namespace stowage::fs_util
