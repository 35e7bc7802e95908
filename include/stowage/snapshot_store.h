// Volume snapshots: point-in-time copies of a volume's data kept beside it,
// made with the copy engine (reflinks where the filesystem allows, so a
// snapshot of a large volume on XFS or btrfs costs metadata only).
//
// Layout inside a volume directory:
//   snapshots/<name>/data/           the copy
//   snapshots/<name>/snapshot.json   {"name","created_unix_ns","bytes","files","strategy"}
//   snapshots/.tmp-<name>-*          a snapshot being made (removed by recover())
//   .rollback-old-*                  data a rollback replaced (removed by recover())
//
// Every step that publishes something is a rename, so a crash leaves a
// snapshot either complete or absent, and a rollback either done or not done.
// Callers serialise calls per volume (the volume manager holds the volume lock)
// and pass snapshot names that validate_volume_name() accepts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "stowage/copy_engine.h"
#include "stowage/status.h"

namespace stowage {

struct SnapshotInfo {
  std::string name;
  int64_t created_unix_ns = 0;
  uint64_t bytes = 0;  // logical size of the files copied
  uint64_t files = 0;
  std::string strategy;  // how the copy was made: "reflink", "io_uring", "portable"
};

class SnapshotStore {
 public:
  explicit SnapshotStore(const CopyEngine& engine) : engine_(engine) {}

  // Copies `data_dir` into a new snapshot `name` of the volume at `volume_dir`
  // and makes it durable. kAlreadyExists if it exists.
  [[nodiscard]] Result<SnapshotInfo> create(const std::string& volume_dir, const std::string& data_dir,
                                            const std::string& name, int64_t now_unix_ns) const;

  // The volume's snapshots, oldest first.
  [[nodiscard]] Result<std::vector<SnapshotInfo>> list(const std::string& volume_dir) const;

  // kNotFound if absent.
  [[nodiscard]] Status remove(const std::string& volume_dir, const std::string& name) const;

  // Makes `data_dir` hold exactly the snapshot's contents: copies the snapshot
  // beside it and swaps the two atomically (renameat2 RENAME_EXCHANGE), then
  // deletes the old data. Containers that have `data_dir` mounted keep seeing
  // the old directory until they remount it.
  [[nodiscard]] Status rollback(const std::string& volume_dir, const std::string& data_dir,
                                const std::string& name) const;

  // Copies the snapshot's data to `dst`, which must not exist.
  [[nodiscard]] Result<CopyStats> clone(const std::string& volume_dir, const std::string& name,
                                        const std::string& dst) const;

  // Deletes what interrupted creates and rollbacks left behind.
  [[nodiscard]] Status recover(const std::string& volume_dir) const;

 private:
  const CopyEngine& engine_;
};

}  // namespace stowage
