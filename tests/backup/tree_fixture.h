// Seeded random directory trees for the backup/restore tests, and a strict
// comparison of two trees (content, holes, types, modes, owners, times,
// symlink targets, hard-link groups, xattrs).
#pragma once

#include <string>
#include <vector>

namespace stowage::test {

struct TreeSpec {
  uint64_t seed = 1;
  int dirs = 4;             // extra nested directories
  int files_per_dir = 4;    // small random files per directory
  size_t max_small = 200 * 1024;
  bool big_file = false;    // one 64 MiB file
  bool ownership = true;    // chown some entries (only as root)
};

// Fills the (existing, empty) directory `root`. Includes: empty files, random
// and compressible files of up to max_small bytes, a sparse file, symlinks
// (relative, absolute, dangling), a hard-link group of three, odd names
// (spaces, newline, non-UTF-8 bytes, leading dash), user xattrs, empty
// directories, a fifo, odd modes (setuid, 0400), and owners when root.
void make_tree(const std::string& root, const TreeSpec& spec);

// Differences between trees `a` and `b` (relative paths and what differs);
// empty when equal. Directory mtimes are compared too; atime is not.
std::vector<std::string> diff_trees(const std::string& a, const std::string& b);

// Allocated bytes of a file (st_blocks × 512).
uint64_t allocated_bytes(const std::string& path);

// `cp -a` (keeps hard links, xattrs, sparseness, times).
void copy_tree(const std::string& from, const std::string& to);

}  // namespace stowage::test
