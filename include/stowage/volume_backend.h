// VolumeBackend: how one kind of volume keeps its data. The volume manager owns
// names, records and mount IDs; a backend owns only the bytes under a volume's
// directory. New kinds (xfs pool, block images) implement this interface and
// leave the Docker protocol code untouched.
#pragma once

#include <cstdint>
#include <string>

#include "stowage/status.h"
#include "stowage/volume.h"

namespace stowage {

struct VolumeUsage {
  uint64_t bytes = 0;     // allocated bytes (st_blocks * 512) of everything in the volume
  uint64_t entries = 0;   // files, directories, links counted
  bool complete = true;   // false when the walk stopped at its entry budget
};

class VolumeBackend {
 public:
  virtual ~VolumeBackend() = default;

  // "dir", "xfs", "block": recorded in each volume's record.
  virtual std::string kind() const = 0;

  // Creates the data area of a new volume inside `volume_dir` (an existing,
  // still-private staging directory) honouring options' uid/gid/mode. On error
  // the caller deletes `volume_dir`, so partial work need not be undone here.
  [[nodiscard]] virtual Status provision(const std::string& volume_dir, const VolumeOptions& opts) = 0;

  // Where containers see the data: the path Docker bind-mounts.
  virtual std::string data_path(const std::string& volume_dir) const = 0;

  // Space used by the volume. Walks at most `max_entries` entries; a larger
  // volume gives a lower bound with complete=false. Safe to call concurrently
  // with writers (the figure is then approximate).
  [[nodiscard]] virtual Result<VolumeUsage> usage(const std::string& volume_dir, uint64_t max_entries) = 0;
};

}  // namespace stowage
