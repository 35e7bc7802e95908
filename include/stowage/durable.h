// Making what was written to files and directories durable: once these return
// OK it survives a crash or power cut. One copy for every layer (the snapshot
// store, the file object store, the daemon's state, restores).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "stowage/status.h"

namespace stowage {

namespace durable_detail {

inline Status sync_dir(const std::string& dir, bool whole_filesystem) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_status(errno, "open directory " + dir);
  const int rc = whole_filesystem ? ::syncfs(fd) : ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc == 0) return Status::ok();
  return errno_status(err, (whole_filesystem ? "write to the disk the filesystem of " : "fsync directory ") + dir);
}

}  // namespace durable_detail

// fsyncs directory `dir`, so that entries created, renamed or removed in it persist.
[[nodiscard]] inline Status fsync_dir(const std::string& dir) { return durable_detail::sync_dir(dir, false); }

// Writes every file of the filesystem holding `dir` to the disk (syncfs). A
// copy's data can fail only here: a full thin-provisioned device refuses it at
// writeback, after every write() succeeded (ENOSPC: kResourceExhausted, or
// EIO), so its error must stop whatever would take the copy as done.
[[nodiscard]] inline Status sync_filesystem(const std::string& dir) { return durable_detail::sync_dir(dir, true); }

}  // namespace stowage
