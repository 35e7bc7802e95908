// VolumeManager: the catalog of volumes under a state root, and the only code
// that changes it. Every acknowledged change survives a crash of the daemon,
// and every one that matters after a reboot survives a crash of the host:
//
//   <root>/journal/<gen>.log            write-ahead log of record changes (StateJournal)
//   <root>/volumes/<name>/volume.json   the record as of the last checkpoint
//   <root>/volumes/<name>/_data/        the data (backend-specific)
//   <root>/volumes/.staging-<name>-*    a Create in progress (renamed into place)
//   <root>/volumes/.trash-<name>-*      a Remove in progress (deleted at leisure)
//
// Create and Remove are acknowledged once their journal frame is flushed (one
// group-committed fdatasync for all concurrent callers). Mount, Unmount and
// release_all are acknowledged once their frame is written: mount IDs name
// containers of the current boot, and open() drops those of an earlier boot,
// so after a host crash their flush would change nothing; the next flush
// carries them to the disk anyway. Checkpoints write changed records to
// volume.json and drop old journal generations; open() replays the journal over
// the volume.json files, so a crash at any point leaves every volume in its last
// acknowledged state or the state of its unacknowledged in-flight call (after a
// host crash, mount IDs aside: the new boot drops them either way;
// docs/OPERATIONS.md has the table). Safe for concurrent use; operations on
// different volumes run in parallel.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <thread>
#include <condition_variable>
#include <string>
#include <vector>

#include "logger.h"
#include "state_journal.h"
#include "quiescer.h"
#include "stowage/snapshot_store.h"
#include "stowage/status.h"
#include "stowage/volume.h"
#include "stowage/volume_backend.h"

namespace stowage {

struct VolumeInfo {
  VolumeRecord record;
  std::string mountpoint;
  std::optional<VolumeUsage> usage;  // when asked for and measurable
  std::vector<SnapshotInfo> snapshots;  // with usage
  int64_t usage_measured_unix_ns = 0;
  std::string problem;  // non-empty when the record on disk could not be read
};

class VolumeManager {
 public:
  struct Options {
    std::string state_root;
    // The current kernel boot (/proc/sys/kernel/random/boot_id). Mount IDs
    // recorded under another boot are stale: no container survives a reboot.
    std::string boot_id;
    std::function<int64_t()> now_unix_ns;  // defaults to the system clock
    int64_t usage_ttl_ns = 5'000'000'000;  // how long a measured usage is reused
    uint64_t usage_max_entries = 200'000;
    uint64_t checkpoint_bytes = 1 << 20;  // journal size that triggers a checkpoint
    // After a failed background checkpoint (disk full, say), the next waits
    // this long, however many commits pass checkpoint_bytes meanwhile.
    int64_t checkpoint_retry_ns = 5'000'000'000;
    const SnapshotStore* snapshots = nullptr;  // snapshots unavailable when null
    Quiescer* quiescer = nullptr;              // quiesce=pause unavailable when null
    // Daemon-level checks of a new volume's options (backup= needs a
    // repository); volumes already created or loaded are not checked again.
    std::function<Status(const VolumeOptions&)> check_create;
    // Tests only: what the journal flushes commits with (default fdatasync).
    StateJournal::SyncFn journal_sync;
  };

  // Loads every volume under options.state_root/volumes, finishing or discarding
  // Creates and Removes a crash interrupted. The backend and logger must outlive
  // the manager.
  [[nodiscard]] static Result<std::unique_ptr<VolumeManager>> open(Options options, VolumeBackend& backend,
                                                                  Logger& log);

  // Creates volume `name`. Creating an existing volume with the same options is
  // OK (Docker retries Create); with different options it is kAlreadyExists.
  [[nodiscard]] Result<VolumeInfo> create(const std::string& name, const std::map<std::string, std::string>& opts);

  // Removes the volume and its data. kFailedPrecondition while any mount ID
  // holds it; kNotFound if absent. Once it returns OK the volume is gone for
  // good (its name is free, a crash cannot bring it back); its directory, by
  // then renamed to .trash-*, is deleted afterwards by a background thread
  // (or, if the daemon stops first, at the next open()).
  [[nodiscard]] Status remove(const std::string& name);

  // Waits until the data of every volume removed so far is deleted (tests,
  // shutdown). Returns early if the manager is being destroyed.
  void finish_removals();

  // Adds `mount_id` to the volume's mount set (idempotent) and returns the
  // mountpoint.
  [[nodiscard]] Result<std::string> mount(const std::string& name, const std::string& mount_id);

  // Removes `mount_id` from the mount set. An ID that is not there is OK:
  // Docker may repeat an Unmount after its own crash.
  [[nodiscard]] Status unmount(const std::string& name, const std::string& mount_id);

  // Releases every mount ID of a volume (operator override for IDs Docker
  // will never unmount, e.g. containers deleted while the daemon was down).
  // Returns the IDs released.
  [[nodiscard]] Result<std::vector<std::string>> release_all(const std::string& name);

  // The volume's mountpoint (always present for directory volumes).
  [[nodiscard]] Result<std::string> path(const std::string& name);

  // How get() and list() report the space a volume uses (and its
  // snapshots). Measuring it is a walk of up to usage_max_entries entries,
  // about 0.3 s at 200,000 with a warm cache and more from the disk; no
  // walk holds the volume's lock, so Mount, Unmount and checkpoints of the
  // volume go on meanwhile.
  enum class Usage {
    kNone,
    // The last measure, never waiting for a walk: when it is older than
    // usage_ttl_ns (or there is none yet, as after a restart) a new one is
    // taken in the background. For Docker's Get, which dockerd calls at every
    // container start.
    kCached,
    // A measure younger than usage_ttl_ns, walking now when there is none.
    // For stowctl.
    kFresh,
  };
  [[nodiscard]] Result<VolumeInfo> get(const std::string& name, Usage usage);
  [[nodiscard]] Result<VolumeInfo> get(const std::string& name, bool with_usage) {
    return get(name, with_usage ? Usage::kFresh : Usage::kNone);
  }

  // All volumes, sorted by name.
  std::vector<VolumeInfo> list(Usage usage);
  std::vector<VolumeInfo> list(bool with_usage) { return list(with_usage ? Usage::kFresh : Usage::kNone); }

  // Waits until no background usage measure is queued or running (tests).
  void settle_usage();

  // Snapshots of a volume (see SnapshotStore). An empty `name` means a UTC
  // timestamp like 20261126T171900Z. With quiesce=pause, containers using the
  // volume are paused for the copy and always unpaused afterwards.
  [[nodiscard]] Result<SnapshotInfo> snapshot_create(const std::string& volume, std::string name);
  [[nodiscard]] Result<std::vector<SnapshotInfo>> snapshot_list(const std::string& volume);
  [[nodiscard]] Status snapshot_remove(const std::string& volume, const std::string& name);
  // Replaces the volume's data with the snapshot's. kFailedPrecondition while
  // mounted unless `force` (running containers then keep the old data until
  // they restart).
  [[nodiscard]] Status snapshot_rollback(const std::string& volume, const std::string& name, bool force);

  // Writes every record changed since the last checkpoint to its volume.json
  // and deletes the journal generations that held them. Runs by itself when
  // the journal passes Options::checkpoint_bytes; callable for tests.
  // A record that cannot be written (its directory deleted or made read-only
  // by hand) does not hold up the others: it is journaled again in the
  // current generation, logged as an error and shown in the volume's
  // `problem`, and retried at every checkpoint. On an error, no generation is
  // deleted and the records not written are kept for the next checkpoint.
  [[nodiscard]] Status checkpoint();

  const std::string& state_root() const { return opts_.state_root; }

  // Journal flushes (fdatasync) since open(): concurrent Creates and Removes
  // share one; Mounts and Unmounts make none.
  uint64_t journal_flushes();

  ~VolumeManager();

 private:
  struct Entry;
  VolumeManager(Options options, VolumeBackend& backend, Logger& log);
  Status load();
  // Applies the journal's frames, oldest first, over the records load() read,
  // then finishes the acknowledged Removes and recreates the directories of
  // acknowledged Creates that a crash lost, by each name's final state.
  Status replay(const std::vector<StateJournal::Generation>& gens);
  // load(): a volume directory with neither volume.json nor a journal record
  // may be a Create that crashed before its commit. Removes it if it is
  // exactly what a Create makes, with an empty data directory (true);
  // otherwise leaves it, marked broken, with a warning (false).
  Result<bool> discard_unacknowledged(const std::string& name);
  std::string volume_dir(const std::string& name) const;
  // A new .trash-* path for volume `name`'s directory, deleted from there by
  // the chores thread once delete_in_background() has queued it.
  std::string trash_path(const std::string& name) const;
  void delete_in_background(std::string trash);
  // Journals a volume's new record / its deletion; OK means committed with
  // `durability` (log_delete: flushed).
  using Durability = StateJournal::Durability;
  // `*appended`: as StateJournal::commit. `*committed` is set once the frame
  // is committed, in the generation that holds it: a checkpoint that swapped
  // generations before reading it false knows the frame is in none it deletes.
  Status log_put(const VolumeRecord& rec, Durability durability, bool* appended = nullptr,
                 std::atomic<bool>* committed = nullptr);
  Status log_delete(const std::string& name);
  Status log_commit(const std::string& name, std::string payload, Durability durability, bool* appended = nullptr,
                    std::atomic<bool>* committed = nullptr);
  std::shared_ptr<Entry> find(const std::string& name);
  // kFailedPrecondition: a kBroken volume cannot be `verb` ("removed"), why,
  // and `advice` on what the operator can do.
  Status refuse_broken(const Entry& e, std::string_view verb, const std::string& advice) const;
  // The volume's entry in kReady state, with its `busy` lock held (its `mu`
  // is not: take it briefly for its fields); or why not. A volume that is
  // being created is kNotFound at once, without waiting for its lock.
  Result<std::pair<std::shared_ptr<Entry>, std::unique_lock<std::mutex>>> ready_entry(const std::string& name);
  // Why `e` (named `name`) is not a ready volume, or ok. Takes its `mu`.
  Status check_ready(Entry& e, const std::string& name);
  Status need_snapshots() const;
  // Fills a staging volume's data from options.from_volume@from_snapshot.
  Status clone_into(const std::string& staging, const VolumeOptions& opts);
  // `e`'s info with its last usage measure; `*walk_now` tells a kFresh
  // caller that there is no recent one. Queues a background measure for a
  // kCached one.
  VolumeInfo info_locked(Entry& e, Usage usage, bool* walk_now = nullptr);
  // What get() and list() report of `e` (a kFresh walk made without its
  // lock), or nothing if it is not a ready or broken volume.
  std::optional<VolumeInfo> info_of(Entry& e, Usage usage);
  // Walks `e`'s volume without its lock and stores the measure in `info`
  // (if any) and in `e`, unless a snapshot change since the walk began
  // voided it. `background`: the chores thread's measure, which `e` queued.
  void measure_usage(Entry& e, VolumeInfo* info, bool background);
  // After a snapshot is made, removed or rolled back: the next Get measures again.
  static void expire_usage(Entry& e);
  // Bytes of zeros a new journal generation starts with: a little more than
  // the size that triggers a checkpoint, so commits rarely change its size.
  uint64_t journal_preallocate() const;
  // The background threads: one checkpoints when asked; the other does the
  // chores that may take long (usage measures and deleting removed volumes'
  // data, taking turns), so that a deletion of millions of files never holds
  // up the checkpoint that a failed journal flush waits for.
  void checkpoint_loop();
  void chores_loop();

  Options opts_;
  VolumeBackend& backend_;
  Logger& log_;
  std::mutex mu_;  // guards entries_ (the map only; each Entry has its own lock)
  std::map<std::string, std::shared_ptr<Entry>> entries_;

  std::string journal_dir_;
  // load(): where damaged journal generations were set aside (comma-separated);
  // while non-empty, load() deletes no volume directory.
  std::string damaged_journal_;
  // Shared by commits, exclusive while switching to a new generation, so that
  // every change lands in exactly one generation's dirty set.
  std::shared_mutex journal_mu_;
  std::unique_ptr<StateJournal> journal_;
  uint64_t retired_flushes_ = 0;  // flushes of earlier generations; under journal_mu_
  std::mutex dirty_mu_;
  std::set<std::string> dirty_;  // names changed in the current generation

  std::mutex checkpoint_mu_;  // one checkpoint at a time
  std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  bool loop_stop_ = false;
  bool loop_wanted_ = false;
  std::deque<std::string> trash_;  // .trash-* directories to delete, oldest first
  std::deque<std::shared_ptr<Entry>> usage_queue_;  // volumes to measure
  bool usage_running_ = false;
  std::thread loop_;
  std::thread chores_;
};

}  // namespace stowage
