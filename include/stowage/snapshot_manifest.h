// Snapshot manifests (docs/FORMAT.md §6.1) and lease objects (§7): the small
// JSON objects stored directly under snapshots/ and leases/. Parsers validate
// everything a later step trusts (volume names become object keys, ids become
// reads) and refuse versions they do not know.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stowage/hash.h"
#include "stowage/status.h"
#include "stowage/tree.h"

namespace stowage {

inline constexpr uint32_t kSnapshotVersion = 1;
inline constexpr uint32_t kLeaseVersion = 1;

// Docker volume names as FORMAT.md §1 allows them in keys:
// [A-Za-z0-9][A-Za-z0-9_.-]*, at most 255 bytes (so never "." or "..").
bool valid_volume_name(std::string_view name);

// "2025-11-26T15:13:20.123456789Z" for a time in ns since the epoch (UTC).
std::string format_rfc3339_ns(int64_t time_ns);

struct SnapshotStats {
  uint64_t files = 0;
  uint64_t dirs = 0;
  uint64_t bytes = 0;
  uint64_t new_blobs = 0;
  uint64_t new_bytes = 0;
  uint64_t stored_bytes = 0;
  uint64_t bytes_read = 0;  // file bytes actually read (unchanged files are not)
  // Of bytes_read, those found unchanged in place by their parent chunk's sum
  // (FORMAT.md §6.2 `chunk_xxh128`): read, but not cut, hashed or compressed.
  uint64_t bytes_matched = 0;
  bool operator==(const SnapshotStats&) const = default;
};

// The backed-up directory itself (FORMAT.md §6.1 "root"): a volume's root
// carries an owner and mode its data depends on (PostgreSQL refuses a data
// directory that is not 0700 and its own).
struct RootMeta {
  uint32_t mode = 0;  // st_mode & 07777
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime_ns = 0;
  std::vector<Xattr> xattrs;  // sorted by name, unique
  bool operator==(const RootMeta&) const = default;
};

struct SnapshotManifest {
  uint32_t version = kSnapshotVersion;
  std::string volume;
  std::string hostname;
  int64_t time_ns = 0;
  std::optional<Hash256> parent;
  std::vector<Hash256> tree;  // tree blobs of the volume root
  std::optional<RootMeta> root;  // absent in snapshots written before it was recorded
  std::vector<std::string> tags;
  uint64_t lease_generation = 0;
  SnapshotStats stats;
  std::string program;
  std::string source_path;  // the directory that was backed up (informational)
  bool operator==(const SnapshotManifest&) const = default;
};

// The stored JSON. kInvalidArgument if the volume name is invalid.
[[nodiscard]] Result<std::string> serialize_snapshot(const SnapshotManifest& snapshot);
// kUnimplemented for an unknown version; kCorruption for malformed input or an
// invalid volume name or id. Unknown fields are ignored.
[[nodiscard]] Result<SnapshotManifest> parse_snapshot(std::string_view json);

struct LeaseHolder {
  std::string host;
  std::string daemon_id;
  int64_t pid = 0;
  bool operator==(const LeaseHolder&) const = default;
};

struct Lease {
  uint32_t version = kLeaseVersion;
  std::string volume;
  uint64_t generation = 0;  // the fencing token, ≥ 1
  LeaseHolder holder;
  int64_t acquired_ns = 0;
  int64_t expires_ns = 0;
  bool released = false;
  // Added with the lease protocol (absent in older objects: read as ""/0).
  std::string nonce;     // random per acquisition: tells a holder its own object from a look-alike
  uint64_t renewal = 0;  // bumped by every renewal, so observers see that the holder is alive
  int64_t ttl_ns = 0;    // the holder's lease duration; observers wait this long of their own time
  bool operator==(const Lease&) const = default;

  // Whether the lease still excludes other writers at `now_ns`.
  bool held_at(int64_t now_ns) const { return !released && now_ns < expires_ns; }
};

// "leases/<volume>/" and "leases/<volume>/<generation, 20 digits>".
std::string lease_prefix(std::string_view volume);
std::string lease_key(std::string_view volume, uint64_t generation);
// The generation in a key under lease_prefix(volume); kInvalidArgument for
// anything else (callers skip such keys).
[[nodiscard]] Result<uint64_t> lease_generation_from_key(std::string_view volume, std::string_view key);

// kInvalidArgument if the volume name is invalid or generation is 0.
[[nodiscard]] Result<std::string> serialize_lease(const Lease& lease);
// kUnimplemented for an unknown version; kCorruption otherwise malformed.
[[nodiscard]] Result<Lease> parse_lease(std::string_view json);

}  // namespace stowage
