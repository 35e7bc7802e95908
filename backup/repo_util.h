// Helpers shared by backup, restore, forget, prune and check: loading every
// snapshot, resolving an id prefix, reading a directory's tree blobs, prune
// marks (FORMAT.md §8.3) and the index as backups see it (marked packs
// excluded). Internal to stowage_backup.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "stowage/blob.h"
#include "stowage/index.h"
#include "stowage/repository.h"
#include "stowage/snapshot_manifest.h"
#include "stowage/status.h"
#include "stowage/tree.h"

namespace stowage::repo_util {

struct SnapshotRef {
  Hash256 id;
  SnapshotManifest manifest;
};

// A snapshot manifest that cannot be used: its bytes do not match its name,
// or they do not parse (damaged, or written by a newer Stowage).
struct UnreadableSnapshot {
  Hash256 id;
  Status problem;  // with the object's key as context
};

struct SnapshotList {
  std::vector<SnapshotRef> readable;        // oldest first (by time, then id)
  std::vector<UnreadableSnapshot> unreadable;  // by id
};

// Every snapshot. A snapshot deleted by a concurrent forget while listing is
// skipped; a damaged manifest is listed in `unreadable` and the rest are
// still read. Fails only when the store cannot be read.
[[nodiscard]] Result<SnapshotList> scan_snapshots(Repository& repo);

// Every snapshot, oldest first; a damaged one is an error (kCorruption).
[[nodiscard]] Result<std::vector<SnapshotRef>> load_snapshots(Repository& repo);

// The newest of `all` whose manifest names `name` (any when `name` is empty),
// by lease generation, then time, then id (restore.h, latest_snapshot_of), or
// nullptr when none does.
const SnapshotRef* newest_snapshot(const std::vector<SnapshotRef>& all, std::string_view name);

// "latest" (newest_snapshot() of the readable ones, optionally only of source
// `name`) or a unique hex prefix of a snapshot id. kNotFound if nothing
// matches, kInvalidArgument if the prefix is ambiguous or not hex, the
// manifest's problem if the prefix names an unreadable snapshot.
[[nodiscard]] Result<SnapshotRef> resolve_snapshot(const SnapshotList& all, std::string_view what,
                                                   std::string_view name = {});

// The id of the snapshot, readable or not, whose id starts with the hex
// prefix `what` (errors as resolve_snapshot()).
[[nodiscard]] Result<Hash256> resolve_snapshot_id(const SnapshotList& all, std::string_view what);

// Reads the tree blobs `ids` of one directory and returns their entries in
// order. Consecutive blobs must continue the name order (FORMAT.md §6.2: one
// directory split in pieces), else kCorruption. Every blob is hash-verified.
[[nodiscard]] Result<std::vector<TreeEntry>> load_dir(Repository& repo, const Index& index, BlobCodec& codec,
                                                      const std::vector<BlobId>& ids);

// A prune mark (FORMAT.md §8.3), stored at "prune/<sha256 of its bytes>".
struct PruneMark {
  int64_t created_ns = 0;
  std::vector<PackId> packs;
  std::vector<Hash256> indexes;
};
std::string serialize_mark(const PruneMark& mark);
[[nodiscard]] Result<PruneMark> parse_mark(std::string_view json);
// Every mark in the repository by id (a mark removed meanwhile is skipped).
[[nodiscard]] Result<std::map<Hash256, PruneMark>> load_marks(Repository& repo);
std::string mark_key(const Hash256& id);

// The index as a backup must see it: every live index file, minus the packs
// named by any prune mark (blobs only there count as absent and are uploaded
// again, so no new snapshot depends on a pack that prune will delete).
[[nodiscard]] Result<Index> load_index_for_backup(Repository& repo);

// `bytes` with control bytes (< 0x20, DEL), backslashes and, unless
// `keep_non_ascii`, bytes over 0x7f shown as \xNN: safe to print.
std::string escape_bytes(std::string_view bytes, bool keep_non_ascii);

// "a/b/c" for display: names joined by '/', bytes that are not printable
// ASCII shown as \xNN.
std::string display_path(const std::vector<std::string>& components);
std::string display_name(std::string_view name);

}  // namespace stowage::repo_util
