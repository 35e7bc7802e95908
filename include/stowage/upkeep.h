// Repository upkeep (docs/BACKUP.md): forget (retention policies over
// snapshots), prune (two-phase deletion of unreferenced packs, FORMAT.md §8.3,
// safe against concurrent backups) and check (structure, and with read_data
// every blob). None of them takes a repository-wide lock.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "stowage/backup_pipeline.h"
#include "stowage/hash.h"
#include "stowage/repository.h"
#include "stowage/snapshot_manifest.h"
#include "stowage/status.h"

namespace stowage {

// ---- forget

// restic's policy semantics: within each group (source name + host),
// snapshots newest first; keep_last keeps the n newest; each bucket rule keeps
// the newest snapshot of each of the n newest distinct buckets (hour, day,
// ISO week, month, year, in UTC) that hold snapshots. A snapshot is kept if
// any rule keeps it; with every count 0 nothing is forgotten (refuses to
// delete everything by mistake). keep_tags keeps any snapshot with one of them.
struct ForgetPolicy {
  int keep_last = 0, keep_hourly = 0, keep_daily = 0, keep_weekly = 0, keep_monthly = 0, keep_yearly = 0;
  std::vector<std::string> keep_tags = {};
  bool empty() const {
    return keep_last <= 0 && keep_hourly <= 0 && keep_daily <= 0 && keep_weekly <= 0 && keep_monthly <= 0 &&
           keep_yearly <= 0 && keep_tags.empty();
  }
};

struct ForgetDecision {
  Hash256 id;
  SnapshotManifest manifest;  // empty when `unreadable`
  bool keep = false;
  std::vector<std::string> reasons;  // "last", "daily", … for kept ones
  bool unreadable = false;           // the manifest is damaged (see run_forget)
};

// The policy applied to `snapshots` (any order). Pure: the same input gives the
// same decisions; result is grouped by (volume, host), newest first.
std::vector<ForgetDecision> apply_forget_policy(const std::vector<std::pair<Hash256, SnapshotManifest>>& snapshots,
                                                const ForgetPolicy& policy);

struct ForgetOptions {
  ForgetPolicy policy;
  std::string name = {};  // only snapshots of this source; empty = all
  bool dry_run = false;
  // Instead of a policy: exactly these snapshots (unique id prefixes), also
  // ones whose manifest is damaged and cannot be read.
  std::vector<std::string> snapshots = {};
};

// Applies the policy (or takes opts.snapshots) and removes the manifests of
// forgotten snapshots (their data stays until prune). A policy never forgets
// a snapshot whose manifest cannot be read: it is kept with the reason
// "unreadable" and `unreadable` set. kInvalidArgument for an empty policy
// without snapshots, or for both.
[[nodiscard]] Result<std::vector<ForgetDecision>> run_forget(Repository& repo, const ForgetOptions& opts);

// ---- prune

struct PruneOptions {
  // How old a mark must be before its packs are deleted: longer than any
  // backup runs (FORMAT.md §8.3).
  int64_t grace_ns = int64_t{24} * 3600 * 1'000'000'000;
  std::shared_ptr<Clock> clock = {};  // empty = system_clock()
  bool dry_run = false;
};

struct PruneReport {
  size_t packs_marked = 0;         // newly marked in this run
  size_t packs_deleted = 0;
  uint64_t bytes_deleted = 0;
  size_t packs_rescued = 0;        // marked earlier, referenced again, kept
  size_t marks_pending = 0;        // marks younger than the grace period
  size_t index_files_rewritten = 0;
  // Superseded index files an interrupted prune left behind, deleted first.
  size_t index_files_removed = 0;
  size_t packs_partly_used = 0;    // kept whole: repacking is not implemented
  // Packs an index file listed but the store no longer has: their index
  // entries were dropped (with dry_run: would be), so backups upload that
  // data again.
  std::vector<PackId> lost_packs;
  // Intact packs no index file lists that hold blobs snapshots use and no
  // index lists (an index file was lost): kept, neither marked nor deleted.
  // `check --repair` indexes them.
  std::vector<PackId> unindexed_kept;
};

// One prune run: first sweeps marks older than the grace period (deleting the
// packs still unreferenced and unindexed-or-unreferenced, after writing index
// files that supersede every index naming them), then marks the packs that
// are unreferenced now. Packs a running backup has uploaded but not indexed
// are only marked, never deleted before the grace period; a snapshot that
// references a marked pack by the time of the sweep rescues it. Before all
// that, index entries of packs missing from the store are dropped
// (PruneReport::lost_packs).
// kFailedPrecondition, deleting and marking nothing, while any snapshot
// manifest cannot be read: it might reference any pack.
[[nodiscard]] Result<PruneReport> run_prune(Repository& repo, const PruneOptions& opts);

// ---- check

struct CheckOptions {
  bool read_data = false;  // download, decompress and hash every indexed blob
  unsigned workers = 0;    // parallel pack downloads for read_data; 0 = 4
  // Take the damaged packs (CheckReport::damaged_packs) out of the index, so
  // backups stop deduplicating against their blobs and upload that data
  // again. With read_data, the blobs of a damaged pack that were read intact
  // are first copied into a new, indexed pack. The damaged packs stay in
  // data/ (prune deletes them once unindexed for the grace period);
  // snapshots that used their damaged blobs stay damaged until a backup
  // stores the same data again.
  bool repair = false;
};

// A file or directory of a snapshot whose content is damaged or missing.
struct DamagedEntry {
  Hash256 snapshot;
  std::string path;  // display form ("dir/file", non-printable bytes as \xNN)
  std::string problem;
};

struct CheckReport {
  std::vector<std::string> errors;    // the repository is damaged
  std::vector<std::string> warnings;  // harmless (unindexed packs of a running or crashed backup)
  std::vector<PackId> damaged_packs;
  std::vector<PackId> packs_unindexed;  // with repair: damaged packs taken out of the index
  size_t packs_salvaged = 0;            // with repair: new packs holding their intact blobs
  // With repair: packs no index file listed (a lost index file, or a backup
  // running or interrupted), now listed by a new one, from their headers.
  std::vector<PackId> packs_indexed;
  std::vector<DamagedEntry> damaged;  // which snapshots and files the damage affects
  size_t snapshots = 0, packs = 0, blobs = 0, blobs_read = 0;
  bool ok() const { return errors.empty(); }
};

// Checks the repository. A non-OK Result means check itself could not run
// (store unreachable); damage is reported in the CheckReport.
[[nodiscard]] Result<CheckReport> run_check(Repository& repo, const CheckOptions& opts);

}  // namespace stowage
