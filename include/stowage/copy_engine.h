// The copy engine: copies a file or a whole tree with its metadata as fast as the
// filesystems allow. Snapshots and restores are built on it.
//
// Strategy, decided by a probe: reflink (FICLONE, shares extents, O(metadata))
// when source and destination are on one filesystem that supports it; else
// io_uring (batched openat/statx/close for small files, pipelined fixed-buffer
// reads and writes for large ones); else portable (copy_file_range, then
// pread/pwrite). Every strategy preserves the same things and passes the same
// conformance suite (tests/snapshot/copy_conformance_test.cc). See docs/COPY_ENGINE.md.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "stowage/io_uring_probe.h"
#include "stowage/status.h"

namespace stowage {

enum class CopyStrategy {
  kAuto,      // reflink if it works for these files, else io_uring, else portable
  kReflink,   // FICLONE only; kUnimplemented if the filesystems cannot
  kIoUring,   // io_uring only; kUnimplemented if io_uring is refused
  kPortable,  // copy_file_range, falling back to pread/pwrite
};

std::string_view strategy_name(CopyStrategy s);  // "auto", "reflink", "io_uring", "portable"

struct CopyOptions {
  CopyStrategy strategy = CopyStrategy::kAuto;
  // chown to the source's uid/gid. Needs CAP_CHOWN for other owners; failure is
  // an error (kPermissionDenied), never silently skipped.
  bool preserve_owner = true;
  // Copy every extended attribute the source lists (user.*, trusted.*, security.*,
  // system.posix_acl_*). Symlinks' own xattrs are not copied.
  bool preserve_xattrs = true;
};

// What one copy did. Counts are of source entries.
struct CopyStats {
  // The strategy that did the work: kReflink when any file was cloned, else
  // kIoUring when any file's data went through io_uring, else kPortable. With
  // no regular files: the data strategy that was ready. Never kAuto.
  CopyStrategy strategy = CopyStrategy::kPortable;
  uint64_t files = 0;           // regular files created (hardlinks excluded)
  uint64_t directories = 0;     // including the root when it is a directory
  uint64_t symlinks = 0;
  uint64_t hardlinks = 0;       // extra names linked to an already-copied inode
  uint64_t specials = 0;        // fifos, sockets, device nodes
  uint64_t bytes = 0;           // logical size of the regular files
  // Data bytes read and written or passed to copy_file_range (holes and
  // FICLONE clones excluded; XFS and btrfs may satisfy copy_file_range by
  // sharing extents, which still counts here).
  uint64_t bytes_copied = 0;
  uint64_t reflinked_files = 0; // files cloned with FICLONE
  uint64_t uring_files = 0;     // files whose data went through io_uring
  uint64_t portable_files = 0;  // files copied with copy_file_range / pread+pwrite
};

struct CopyEngineOptions {
  // Decides once, at create(), whether io_uring may be used. Tests inject a probe
  // returning EPERM or ENOSYS to simulate Docker's seccomp or io_uring_disabled.
  IoUringProbe io_uring_probe = {};  // empty = probe_io_uring()
  LogSink log = {};             // empty = stderr_log_sink(); must be thread-safe
};

// Thread-safe: copy_tree/copy_file may run concurrently on one engine; each call
// sets up its own io_uring instance.
class CopyEngine {
 public:
  // Probes io_uring once. On refusal logs one warn line and later copies use the
  // portable path (kAuto) or fail with kUnimplemented (forced kIoUring).
  [[nodiscard]] static std::unique_ptr<CopyEngine> create(CopyEngineOptions opts = {});

  // Copies `src` (a directory tree, a file, a symlink — not followed — or a
  // special file) to `dst`, which must not exist (kAlreadyExists; `dst` untouched)
  // and whose parent must exist. Preserves: file data with holes, mode
  // (including setuid/setgid/sticky), owner, atime/mtime to the nanosecond,
  // symlinks, hardlinks within the tree, xattrs, directory metadata (applied
  // after the directory's contents). Errors: src missing -> kNotFound; ENOSPC
  // -> kResourceExhausted; a forced strategy that cannot work -> kUnimplemented;
  // `dst` inside the source tree -> kInvalidArgument.
  // On any error everything this call created under `dst` is removed (best
  // effort) so no partial tree remains. Files that change during the copy are
  // copied up to the size stat reported; the engine does not quiesce.
  [[nodiscard]] Result<CopyStats> copy_tree(const std::string& src, const std::string& dst,
                                            const CopyOptions& opts = {}) const;

  // Same contract for one regular file (kInvalidArgument if `src` is not one).
  [[nodiscard]] Result<CopyStats> copy_file(const std::string& src, const std::string& dst,
                                            const CopyOptions& opts = {}) const;

  // Whether the probe at create() allowed io_uring, and why not.
  const IoUringAvailability& io_uring() const { return uring_; }

 private:
  CopyEngine(CopyEngineOptions opts, IoUringAvailability uring)
      : opts_(std::move(opts)), uring_(uring) {}
  CopyEngineOptions opts_;
  IoUringAvailability uring_;
};

}  // namespace stowage
