// Test helpers for the copy engine: loop-mounted filesystems made on the fly,
// a seeded random tree with every kind of entry the engine must preserve, and
// a full description of a tree for comparing source and copy.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "support/test_support.h"

namespace stowage::test {

struct LoopFsOptions {
  std::string image_dir;      // where the sparse image lives; empty: the TempDir
  std::string mkfs_args;      // added to mkfs's arguments
  std::string mount_options;  // added to -o loop
};

// A filesystem of `type` ("ext4", "xfs", "btrfs") in a sparse image file,
// loop-mounted under a fresh TempDir. Unmounted (and the loop device freed,
// mount -o loop sets autoclear) on destruction. error() is non-empty when any
// step failed, with the command's output.
class LoopFs {
 public:
  LoopFs(const std::string& type, uint64_t size_mb, const LoopFsOptions& more = {});
  ~LoopFs();
  LoopFs(const LoopFs&) = delete;
  LoopFs& operator=(const LoopFs&) = delete;
  const std::string& mount_point() const { return mnt_; }
  const std::string& error() const { return error_; }
  const std::string& type() const { return type_; }

 private:
  TempDir dir_;
  std::string type_;
  std::string mnt_;
  std::string error_;
  bool mounted_ = false;
};

// A thin-provisioned filesystem: ext4 in a sparse `size_mb` image on a tmpfs
// pool of `pool_mb` (no filesystem journal, every inode table written by mkfs,
// errors=continue). Once fill_pool() has filled the pool, writes still succeed
// into the page cache and only writing them back fails (ENOSPC), as on an
// overcommitted pool. Needs root; error() says what failed.
class ThinFs {
 public:
  ThinFs(uint64_t pool_mb, uint64_t size_mb);
  const std::string& error() const { return pool_.error().empty() ? fs_.error() : pool_.error(); }
  const std::string& mount_point() const { return fs_.mount_point(); }
  // Flushes the filesystem, trims its free blocks out of the image (else a
  // later write may land on blocks the image still holds from a deleted file
  // and need no pool space), then fills the pool: from here on, writing back
  // new data fails.
  void fill_pool() const;
  // Frees what fill_pool() took.
  void free_pool() const;

 private:
  SmallFs pool_;  // outlives fs_, whose image it holds
  LoopFs fs_;
};

struct TreeShape {
  uint32_t seed = 1;
  bool with_owners = true;       // chown entries to other uids/gids (needs root)
  uint64_t large_file_mb = 24;   // one file of this size; 0 for none
};

// What build_random_tree made, for checking stats.
struct TreeCounts {
  uint64_t files = 0;  // distinct regular inodes
  uint64_t dirs = 0;   // including the root
  uint64_t symlinks = 0;
  uint64_t hardlinks = 0;  // extra names
  uint64_t specials = 0;
  uint64_t bytes = 0;
  uint64_t empty_files = 0;
};

// Creates directory `root` (must not exist) and fills it.
TreeCounts build_random_tree(const std::string& root, const TreeShape& shape);

// Everything the engine promises to preserve about one entry.
struct EntryInfo {
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t size = 0;
  int64_t mtime_sec = 0;
  int64_t mtime_nsec = 0;
  std::string link_target;
  std::string content_digest;                    // of regular files
  std::vector<std::pair<uint64_t, uint64_t>> data_map;  // SEEK_DATA/SEEK_HOLE of large or sparse files
  bool has_holes = false;
  std::map<std::string, std::string> xattrs;
  std::string link_group;  // smallest path sharing the inode (hardlinks), else empty
  bool operator==(const EntryInfo&) const = default;
};

// relative path ("" for the root) -> info.
std::map<std::string, EntryInfo> describe_tree(const std::string& root);

// Human-readable differences, empty when the trees match.
std::string diff_trees(const std::map<std::string, EntryInfo>& want,
                       const std::map<std::string, EntryInfo>& got);

// True when every extent of `path` is marked shared (FIEMAP_EXTENT_SHARED) and
// there is at least one.
bool all_extents_shared(const std::string& path);

}  // namespace stowage::test
