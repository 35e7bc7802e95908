// The backup pipeline (docs/BACKUP.md): a source directory becomes a snapshot
// in a repository — walk, skip files unchanged since the parent snapshot, read,
// chunk (FastCDC), hash, dedup against the repository index, compress, pack,
// upload, then index files, tree blobs and the manifest, written last
// (FORMAT.md §8.2). Stages run concurrently with bounded queues, so memory is
// bounded by the options below, not by the size of the data.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stowage/hash.h"
#include "stowage/io_uring_probe.h"
#include "stowage/repository.h"
#include "stowage/snapshot_manifest.h"
#include "stowage/status.h"

namespace stowage {

// Wall-clock time for snapshot times, forget and prune grace periods; an
// interface so tests can set it.
class Clock {
 public:
  virtual ~Clock() = default;
  // Nanoseconds since the Unix epoch (UTC). Thread-safe.
  virtual int64_t now_ns() const = 0;
};
// The system's CLOCK_REALTIME.
std::shared_ptr<Clock> system_clock();

// Live counters, updated by the pipeline's threads and readable from any
// thread while it runs (for a progress line).
struct BackupProgress {
  std::atomic<uint64_t> files_total{0};    // regular files found by the walk so far
  std::atomic<uint64_t> bytes_total{0};    // their sizes (holes included)
  std::atomic<bool> walk_done{false};      // totals are final
  std::atomic<uint64_t> files_done{0};     // files read or skipped as unchanged
  std::atomic<uint64_t> bytes_done{0};     // bytes of those files
  std::atomic<uint64_t> bytes_read{0};     // file bytes actually read
  std::atomic<uint64_t> bytes_uploaded{0};  // pack bytes stored
};

struct BackupOptions {
  std::string source;             // directory to back up (absolute or relative)
  std::string name;               // source name recorded as the manifest's volume; must be valid_volume_name()
  std::string hostname;           // empty = gethostname()
  std::vector<std::string> tags;
  // The snapshot whose file metadata lets unchanged files be skipped. Unset:
  // the newest snapshot with the same name and hostname, if any.
  std::optional<Hash256> parent;
  bool use_parent = true;         // false: read every file (a full backup)
  unsigned workers = 0;           // file readers/chunkers; 0 = 4 × hardware concurrency
  int compression_level = 0;      // zstd level for new blobs; 0 = the repository's (FORMAT.md §2 allows overriding)
  unsigned uploads_in_flight = 4;  // concurrent pack puts
  // Finished packs waiting for an upload slot; with uploads_in_flight and the
  // open pack this bounds pack memory at (2 + in flight + queued) × pack_size.
  unsigned queued_packs = 2;
  std::shared_ptr<Clock> clock;   // empty = system_clock()
  LogSink log;                    // warnings (skipped sockets, unreadable xattrs); empty = stderr
  BackupProgress* progress = nullptr;  // optional, caller-owned
  // Test seam: called after every data pack is stored and before any index
  // file, tree or manifest is written. A non-OK status aborts the backup there.
  std::function<Status()> after_data_uploaded;
  // Test seam: called by a worker with a file's path (source path + '/' +
  // relative path) just before it opens the file to read it, after the walk
  // listed and stat'ed it; may be called on several threads at once. Lets a
  // test change the file system between the walk and the read.
  std::function<void(const std::string& path)> before_read;
  // Written as the manifest's lease_generation (FORMAT.md §7); 0 = no lease.
  uint64_t lease_generation = 0;
  // Called after every index file is stored and just before the manifest is
  // written: the lease holder's fencing check. A non-OK status aborts the
  // backup there (nothing a reader trusts was written).
  std::function<Status()> before_commit;
  // When `source` is a copy of another directory (a volume's temporary
  // snapshot of its live data), that directory: a regular file whose
  // original (same path, reached without following symlinks) has the copy's
  // size and mtime and a ctime before identity_before_ns is recorded with the
  // original's inode and ctime. The original then matches its entry in the
  // next backup (of the live directory or of a later copy) and is not read
  // again, where the copy's fresh inode never would. Callers take
  // identity_before_ns and identity_clock_offset_ns = realtime_minus_monotonic_ns()
  // before they start copying, identity_before_ns with a margin of more than
  // the file system's timestamp granularity; a wall-clock step of more than
  // 50 ms since then turns the adoption off for the rest of the walk.
  std::string identity_root;
  int64_t identity_before_ns = 0;
  int64_t identity_clock_offset_ns = 0;
};

// CLOCK_REALTIME minus CLOCK_MONOTONIC: changes only when the wall clock is stepped.
int64_t realtime_minus_monotonic_ns();

struct BackupResult {
  Hash256 snapshot_id;
  SnapshotManifest manifest;
  std::vector<std::string> warnings;
};

// Backs up `opts.source` into `repo`. Never takes a repository lock: any
// number of backups may run into one repository at once (create-only,
// content-addressed writes). Unreadable files or directories fail the backup
// (kNotFound/kPermissionDenied… naming the path); sockets are skipped with a
// warning. On failure nothing that a reader trusts is left behind (packs and
// possibly index files, but no manifest).
[[nodiscard]] Result<BackupResult> run_backup(Repository& repo, const BackupOptions& opts);

// A valid source name derived from a path: its last component with bytes
// outside [A-Za-z0-9_.-] replaced by '_' ("root" for "/").
std::string default_source_name(const std::string& path);

}  // namespace stowage
