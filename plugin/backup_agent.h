// BackupAgent: the daemon's side of "volumes follow their container"
// (docs/MIGRATION.md). Given the daemon-wide repository it
//   - holds a lease (FORMAT.md §7) on every volume this host has mounted,
//     renewed by a background thread, and fences itself when it loses one;
//   - backs a volume up by name (a temporary local snapshot as the consistent
//     source, the volume name as the manifest's volume, the host id as its
//     hostname, a fencing check just before the manifest is written);
//   - restores the newest snapshot of a volume that this host does not have, or
//     brings a stale local copy up to date fetching only changed chunks, before
//     the first Mount returns (or in the background when that takes longer);
//   - after the last Unmount, makes a final backup and releases the lease.
// Volumes created with -o backup=off are left alone entirely.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "logger.h"
#include "stowage/lease.h"
#include "stowage/object_store.h"
#include "stowage/repository.h"
#include "stowage/restore.h"
#include "stowage/status.h"
#include "stowage/store_deadline.h"
#include "volume_manager.h"

namespace stowage {

class BackupAgent {
 public:
  struct Options {
    // Opens the repository's store (initialised when it has no config). Called
    // again, in the background, until the repository answers.
    std::function<Result<std::unique_ptr<ObjectStore>>()> open_store;
    std::string state_dir;               // per-volume agent state: <state_root>/agent
    LeaseConfig lease;                   // host id, ttl, clocks
    int64_t renew_interval_ns = 20'000'000'000;
    // How long the first Mount waits for a restore before it fails with
    // "still restoring" (the restore goes on; a retry succeeds once it is done).
    int64_t mount_wait_ns = 90'000'000'000;
    // The longest a Docker call (Create, Mount) spends on the repository,
    // retries and the restore wait included: store calls made for it stop at
    // this deadline (StoreDeadline), so a stalled repository cannot hold a
    // call past Docker's plugin timeout. The daemon sets it to mount_wait_ns.
    int64_t call_budget_ns = 100'000'000'000;
    // A live file changed less than this before a backup's copy began is read
    // again rather than recognised by its ctime (BackupOptions::identity_root).
    // 0 = the kernel's dirty-page writeback window plus 1 s: a write through
    // mmap sets ctime only at the first write to a page after its writeback.
    int64_t identity_margin_ns = 0;
  };

  // Cleans up what an interrupted backup or restore left and starts the
  // background thread, which first connects to the repository (initialising
  // it when the store is empty), retrying until it answers, and then renews
  // leases. Leases of volumes that are still mounted are taken again; a final
  // backup interrupted by a crash is run again. Only bad options fail here: an
  // unreachable repository does not keep the daemon from serving its local
  // volumes. Until it is reached, what needs it (a Mount of a volume with
  // backups, backups, restores, takeovers) fails with kUnavailable saying so.
  [[nodiscard]] static Result<std::unique_ptr<BackupAgent>> open(Options opts, VolumeManager& volumes, Logger& log);
  // Stops the renewal thread and waits for background backups and restores.
  // Leases stay as they are (they expire, or this host takes them again).
  ~BackupAgent();

  // Docker hooks, called by the plugin API around the VolumeManager calls.
  //
  // After Create (new or repeated): when the volume is new here and the
  // repository has snapshots of it, starts restoring the newest one in the
  // background. With -o takeover=force, takes the lease by force first.
  [[nodiscard]] Status after_create(const std::string& name, bool created_now);
  // Before Mount: a name unknown here but present in the repository is
  // created (and restored). On the first mount, takes the lease (failing,
  // while another host holds it, with its name and expiry) and waits for the
  // local data to equal the newest snapshot, for at most mount_wait_ns. A
  // further mount of a volume mounted here under this host's lease needs no
  // repository. Refused (kUnavailable) while restore_volume() runs.
  // A successful before_mount() counts the volume as being mounted (a final
  // backup then keeps the lease) until mount_done(), which the caller makes
  // once the mount succeeded or failed (`mounted`). A lease taken by a Mount
  // that failed goes once nothing needs it (no container used the copy).
  [[nodiscard]] Status before_mount(const std::string& name);
  void mount_done(const std::string& name, bool mounted);
  // Before Unmount, called before the volume manager drops the mount ID:
  // counts the Unmount. A final backup that finds the volume unmounted then
  // also finds it unmounted since its snapshot, whatever the order of its
  // check and after_unmount(), and backs up again before releasing the lease.
  void before_unmount(const std::string& name);
  // After Unmount: when no mount ID is left, starts the final backup and the
  // lease release in the background and returns at once. While a final backup
  // runs, an Unmount counted by before_unmount() makes it back up again before
  // it releases the lease (the container may have written after the first
  // one's snapshot).
  void after_unmount(const std::string& name);
  // Before Remove (the caller holds no VolumeManager lock): removing a volume
  // releases its lease, so the next host mounts the repository's newest
  // snapshot. While the final backup after the last Unmount runs, waits for
  // it, no longer than the call budget (then kDeadlineExceeded: retry). While
  // the volume's last writes are not in the repository (that backup failed,
  // or has not run since a restart), refuses (kFailedPrecondition) saying what
  // would be lost, the backup's last error, and the way out: retry once the
  // repository answers, or forget_unsynced(). OK for unknown or mounted
  // volumes (the volume manager answers those) and with backup=off.
  [[nodiscard]] Status before_remove(const std::string& name);
  // After Remove: forgets the volume's agent state and releases its lease. A
  // restore or final backup of it still running saves no state afterwards.
  void after_remove(const std::string& name);
  // Discards the writes of an unmounted volume that its final backup could
  // not save (`stowctl volume forget-unsynced`, for a repository gone for
  // good): the final backup is not retried, and the lease is released, or,
  // with the repository unreachable, no longer renewed (it runs out). Refused
  // while the volume is mounted or its final backup runs. Returns whether
  // there was anything to discard.
  [[nodiscard]] Result<bool> forget_unsynced(const std::string& name);

  // Backs up volume `name` now (for the scheduler, the admin API and the
  // final backup). At most one backup per volume runs at a time; a second
  // caller waits. Refused while the volume is fenced, not yet restored, or
  // older than the repository's newest snapshot of it (a stale copy), and
  // while another host holds its lease.
  [[nodiscard]] Status backup_volume(const std::string& name, std::string_view reason);

  // Makes the (unmounted) volume hold snapshot `what` ("latest", "" or an id
  // or unique id prefix of a snapshot of this volume), reusing local chunks.
  // Returns the snapshot id restored.
  [[nodiscard]] Result<std::string> restore_volume(const std::string& name, const std::string& what);

  // Takes the lease by force (the old holder is fenced at its next renewal
  // or backup). A volume unknown here is created and restored.
  [[nodiscard]] Result<Lease> takeover(const std::string& name);

  // {"enabled","host","repository","lease","fenced","last_backup",
  //  "synced_snapshot","final_backup","restore","last_restore"}
  // for `volume inspect` and /v1/status.
  nlohmann::json volume_status(const std::string& name);
  // The lease and last backup alone, for GET /v1/status: JSON null when none.
  nlohmann::json lease_json(const std::string& name);
  nlohmann::json last_backup_json(const std::string& name);

  const std::string& host() const { return opts_.lease.host; }
  // Whether the repository has been reached; {"connected","error"} for status.
  bool connected() const { return connected_.load(std::memory_order_acquire); }
  nlohmann::json repository_json();
  // The repository once connected, else kUnavailable (for keep= forgets).
  [[nodiscard]] Result<Repository*> repository();

 private:
  struct Vol;
  BackupAgent(Options opts, VolumeManager& volumes, Logger& log);
  // One attempt to open (or initialise) the repository.
  Status connect();
  // OK once connected. Before the first connection attempt has ended (the
  // daemon just started), waits for it, up to mount_wait_ns; then, if still
  // not connected, kUnavailable naming `ctx` and the last error.
  Status need_repository(std::string_view ctx);
  std::shared_ptr<Vol> vol(const std::string& name);
  bool enabled(const std::string& name);
  void load_state(Vol& v);
  void save_state(Vol& v);  // under v.mu; nothing once the volume is removed
  void spawn(std::function<void()> fn);
  void renew_loop();
  void recover_at_start();
  void final_backup(const std::string& name);
  // A deadline for lease I/O made under Vol::lease_mu: the renewal interval
  // (a slower renewal is useless), so a stalled repository frees the lock
  // for the Mounts that wait for it.
  StoreDeadline lease_io() const;
  // Takes the lease if this host does not hold it. Under v.lease_mu.
  Status hold_lease(Vol& v, bool force);
  Status release_lease(Vol& v);
  // For a backup or restore of a volume this host may not hold: takes the
  // lease unless held; true when it was taken for this operation only.
  Result<bool> hold_for_operation(Vol& v, const std::string& ctx);
  // Last Unmounts seen so far (Vol::unmounts), to pass to release_unused().
  uint64_t unmounts_seen(Vol& v);
  // Releases a lease hold_for_operation() took, unless the volume is mounted
  // or being mounted (that Mount goes on under the lease) or was unmounted
  // since `unmounts_before` was read (the final backup that Unmount started
  // waits for this operation and releases the lease after saving its writes).
  void release_unused(Vol& v, uint64_t unmounts_before);
  // A lease a Mount took, with no mount completed since (the Mount failed),
  // and nothing else needing it (no mount, Mount under way, restore, backup,
  // final backup; not fenced): unused_by_mount_locked() (under v.mu) says so
  // and release_if_unused() releases it. Tried when such a Mount fails, when
  // the restore it started ends, and at each renewal.
  static bool unused_by_mount_locked(const Vol& v, const VolumeInfo* info);
  // Under v.mu, `info` the volume (null if unknown): nothing uses its lease,
  // what release_unused() and release_if_unused() both require.
  static bool idle_locked(const Vol& v, const VolumeInfo* info);
  void release_if_unused(Vol& v);
  class OpCount;
  void fence(Vol& v, const Status& why);
  // Starts (or retargets) the restore job of a volume.
  void start_restore(const std::shared_ptr<Vol>& v, const Hash256& id);
  void restore_job(std::shared_ptr<Vol> v);
  Status restore_into(Vol& v, const Hash256& id);
  Status wait_restored(Vol& v, const Hash256& id, int64_t wait_ns);
  // The repository's newest snapshot of the volume for this copy: like
  // latest_snapshot_of(), except that a snapshot of a lease generation below
  // Vol::synced_generation (a fenced holder's manifest written just after the
  // takeover, FORMAT.md §7) does not outrank the copy this host synced since.
  Result<std::optional<Hash256>> newest_snapshot(Vol& v);
  // Records that Vol::synced was found newest under the lease held. Under v.mu.
  void synced_under_lease(Vol& v);
  // Restores the newest snapshot unless the local data already is it.
  Status bring_up_to_date(const std::shared_ptr<Vol>& v);
  Status ensure_local(const std::string& name);

  Options opts_;
  VolumeManager& volumes_;
  Logger& log_;
  const int64_t identity_margin_ns_;
  // Set once by connect(), before connected_; read only after connected().
  std::unique_ptr<Repository> repo_;
  std::unique_ptr<LeaseClient> lease_;
  std::atomic<bool> connected_{false};
  std::mutex connect_mu_;  // connect_error_, attempts_
  std::condition_variable connect_cv_;
  std::string connect_error_;  // why the last attempt failed
  uint64_t attempts_ = 0;      // connection attempts ended

  std::mutex mu_;  // vols_, jobs_, stop_
  std::map<std::string, std::shared_ptr<Vol>> vols_;
  struct Job {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Job> jobs_;  // background restores and final backups
  bool stop_ = false;
  std::condition_variable stop_cv_;
  std::thread renewer_;
};

}  // namespace stowage
