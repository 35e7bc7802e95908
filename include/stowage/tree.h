// Tree blobs (docs/FORMAT.md §6.2): one directory's entries as canonical JSON,
// so that an unchanged directory serialises to the same bytes, gets the same
// blob id and is deduplicated. Parsing is where hostile manifests enter a
// restore: it refuses anything that could name a path outside the directory
// or contradict itself, before any of it is used.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "stowage/hash.h"
#include "stowage/status.h"

namespace stowage {

// Writers split larger directories into consecutive tree blobs.
inline constexpr size_t kMaxTreeEntries = 10000;

enum class NodeType : uint8_t { kFile, kDir, kSymlink, kFifo, kCharDev, kBlockDev, kSocket };

std::string_view node_type_name(NodeType type);

struct Xattr {
  std::string name;   // raw bytes
  std::string value;  // raw bytes
  bool operator==(const Xattr&) const = default;
};

struct Hole {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool operator==(const Hole&) const = default;
};

// Bytes in `holes`: a file's size is its chunks' raw bytes plus these
// (FORMAT.md §6.2), which restore, check and backup's reuse of a parent
// entry each verify against the index.
inline uint64_t hole_bytes(const std::vector<Hole>& holes) {
  uint64_t n = 0;
  for (const auto& h : holes) n += h.length;
  return n;
}

struct TreeEntry {
  NodeType type = NodeType::kFile;
  std::string name;  // raw bytes of one path component
  uint32_t mode = 0;  // st_mode & 07777
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint64_t inode = 0;
  uint64_t size = 0;            // file
  std::string target;           // symlink, raw bytes
  uint64_t rdev = 0;            // char/block device
  uint64_t hardlink = 0;        // file; 0 = not part of a hard-link group
  std::vector<Xattr> xattrs;    // sorted by name
  std::vector<Hole> holes;      // file; sorted, non-overlapping, within size
  std::vector<BlobId> chunks;   // file: data blobs of content minus holes
  std::vector<BlobId> subtree;  // dir: tree blobs of its contents
  // file: the XXH3-128 of each chunk, in the order of `chunks`; empty when not
  // recorded (older writers), else exactly one per chunk.
  std::vector<ChunkSum> chunk_sums;
  bool operator==(const TreeEntry&) const = default;
};

struct Tree {
  std::vector<TreeEntry> entries;  // sorted by name bytes, unique
  bool operator==(const Tree&) const = default;
};

// The canonical bytes of `tree` (FORMAT.md §6.2). kInvalidArgument if the tree
// breaks a rule parse_tree() enforces, so a writer can never store a tree that
// readers refuse.
[[nodiscard]] Result<std::string> serialize_tree(const Tree& tree);

// Parses a tree blob and checks every rule of FORMAT.md §6.2: names are single
// components (non-empty, no '/', no NUL, not "." or ".."), sorted and unique;
// known types; fields only on the types they belong to; mode ≤ 07777; holes
// sorted, non-empty, non-overlapping and within size; xattrs sorted and
// unique; chunk sums absent or one per chunk; at most kMaxTreeEntries entries. kCorruption on any violation.
// Unknown fields are ignored (forward compatibility).
[[nodiscard]] Result<Tree> parse_tree(std::string_view json);

}  // namespace stowage
