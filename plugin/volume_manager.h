// VolumeManager: the catalog of volumes under a state root, and the only code
// that changes it. Every acknowledged change is durable before the call
// returns; the on-disk layout makes each change a single atomic step:
//
//   <root>/volumes/<name>/volume.json   the record (replaced atomically)
//   <root>/volumes/<name>/_data/        the data (backend-specific)
//   <root>/volumes/.staging-<name>-*    a Create in progress (renamed into place)
//   <root>/volumes/.trash-<name>-*      a Remove in progress (deleted at leisure)
//
// A crash leaves each volume either fully there or fully gone; open() finishes
// or discards what was in flight. Safe for concurrent use; operations on
// different volumes run in parallel.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "logger.h"
#include "stowage/status.h"
#include "stowage/volume.h"
#include "stowage/volume_backend.h"

namespace stowage {

struct VolumeInfo {
  VolumeRecord record;
  std::string mountpoint;
  std::optional<VolumeUsage> usage;  // when asked for and measurable
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
  // holds it; kNotFound if absent.
  [[nodiscard]] Status remove(const std::string& name);

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

  // One volume; with_usage measures (or reuses a recent measure of) space used.
  [[nodiscard]] Result<VolumeInfo> get(const std::string& name, bool with_usage);

  // All volumes, sorted by name.
  std::vector<VolumeInfo> list(bool with_usage);

  const std::string& state_root() const { return opts_.state_root; }

 private:
  struct Entry;
  VolumeManager(Options options, VolumeBackend& backend, Logger& log);
  Status load();
  std::string volume_dir(const std::string& name) const;
  Status persist(const VolumeRecord& rec);
  std::shared_ptr<Entry> find(const std::string& name);
  VolumeInfo info_locked(Entry& e, bool with_usage);

  Options opts_;
  VolumeBackend& backend_;
  Logger& log_;
  std::mutex mu_;  // guards entries_ (the map only; each Entry has its own lock)
  std::map<std::string, std::shared_ptr<Entry>> entries_;
};

}  // namespace stowage
