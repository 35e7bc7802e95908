// Restore (docs/BACKUP.md): a snapshot becomes a directory tree again —
// manifest, trees, then every data blob fetched by pack with ranged GETs in
// parallel, verified against its id, written around the file's holes, and
// finally metadata (owner, mode, xattrs, times; directories last, the target
// itself from the manifest's root record when it has one). Every
// entry is created relative to an already open parent directory with
// O_NOFOLLOW/O_EXCL, so neither a hostile snapshot nor a symlink planted in
// the target can make it write outside the target.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include "stowage/hash.h"
#include "stowage/io_uring_probe.h"
#include "stowage/repository.h"
#include "stowage/status.h"

namespace stowage {

struct RestoreProgress {
  std::atomic<uint64_t> bytes_total{0};    // data bytes to write (known after the tree walk)
  std::atomic<uint64_t> bytes_written{0};
  std::atomic<uint64_t> files_total{0};
};

struct RestoreOptions {
  std::string target;  // created if missing; must be empty unless `overwrite`
  // Allow a non-empty target: an existing entry whose name the snapshot uses
  // is replaced (a file, symlink or special file is unlinked first, never
  // followed; an existing directory is reused; a directory where the
  // snapshot has a non-directory is an error). Other entries are left alone.
  bool overwrite = false;
  unsigned workers = 0;  // parallel pack fetchers; 0 = 2 × hardware concurrency
  // Set owners (uid/gid) from the snapshot. Only root can; others get their
  // own uid, without a warning per file.
  bool restore_owner = true;
  LogSink log;  // warnings; empty = stderr
  RestoreProgress* progress = nullptr;
  // A directory holding an older copy of the same data (a stale local copy of
  // a volume). For each file, every chunk whose bytes at the same place in the
  // regular file of the same path here hash to the chunk's id is copied from
  // it instead of being fetched; only the other chunks are fetched. Paths are
  // resolved beneath this directory without following any symlink, and only
  // bytes that match a chunk id are ever used. Empty: fetch everything.
  std::string reuse_from;
  // Before returning OK, write the restored files to the disk (syncfs of the
  // target's filesystem): "restored" then survives a crash, and a full
  // thin-provisioned device, which refuses data only at writeback, fails the
  // restore. false: the caller flushes (after changes of its own).
  bool sync = true;
  // Write the data of files holding at least 1 MiB of it with O_DIRECT
  // where the target's filesystem allows (docs/BACKUP.md, Restore); false:
  // everything goes through the page cache.
  bool direct_io = true;
  // Memory for the blocks of such files that chunk boundaries cut, held until
  // their other pieces are decoded; past it a block is merged on the disk
  // (read, modify, write) instead.
  uint64_t partial_block_memory = 32u << 20;
};

struct RestoreResult {
  uint64_t files = 0, dirs = 0, symlinks = 0, special = 0;
  uint64_t bytes_written = 0;  // data bytes (holes are not written)
  uint64_t blobs_fetched = 0;
  uint64_t blobs_reused = 0;  // chunks copied from opts.reuse_from
  uint64_t bytes_reused = 0;
  uint64_t files_direct = 0;  // files whose data was written with O_DIRECT
  // The snapshot recorded its root's metadata (FORMAT.md §6.1) and the
  // target's root now has it; false for snapshots older than that record.
  bool root_restored = false;
  std::vector<std::string> warnings;
};

// Restores snapshot `id` of `repo` into opts.target. Errors: kFailedPrecondition
// if the target is not empty (and not opts.overwrite); kCorruption for a
// hostile or damaged snapshot (naming the entry: "a/b: …") — checked before
// the entry is created; kNotFound for a blob missing from the index. On error
// a target that did not exist before is removed again; one that did may hold
// a partial tree (never anything outside it).
[[nodiscard]] Result<RestoreResult> run_restore(Repository& repo, const Hash256& id, const RestoreOptions& opts);

// The newest snapshot of `volume` from any host, or std::nullopt when it has
// none: the highest lease generation (FORMAT.md §7; a later holder's
// snapshots are newer whatever the hosts' clocks say, and a fenced holder's
// late manifest never outranks its successor's), then the newest time, then
// the highest id. Path backups (generation 0) rank below every backup the
// daemon made under a lease. One GET per snapshot in the repository.
[[nodiscard]] Result<std::optional<Hash256>> latest_snapshot_of(Repository& repo, std::string_view volume);

}  // namespace stowage
