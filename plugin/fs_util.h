// Durable file-system primitives for the daemon's state: atomic replace of a
// small file, directory fsync, reads. "Durable" means: once the call returns OK,
// the change survives a crash or power cut (data and directory entry fsynced).
#pragma once

#include <string>
#include <string_view>

#include "stowage/durable.h"
#include "stowage/status.h"

namespace stowage {

// Replaces `path` with `data` atomically: writes a temp file beside it, fsyncs
// it, renames it over `path`, fsyncs the directory. After a crash `path` holds
// either the old or the new contents, never a mix; a leftover temp file
// (".<name>.tmp-*") may remain and is safe to delete.
[[nodiscard]] Status write_file_atomic(const std::string& path, std::string_view data, unsigned mode = 0600);

// fsync_dir() and sync_filesystem() come from stowage/durable.h.

// Renames `from` to `to` (same filesystem) and fsyncs the parent directories.
[[nodiscard]] Status rename_durable(const std::string& from, const std::string& to);

// Reads a whole file. kNotFound if missing.
[[nodiscard]] Result<std::string> read_small_file(const std::string& path, size_t max_bytes = 16 << 20);

// Raises this process's soft limit on open files to its hard limit. Restore
// and backup walks hold one descriptor per directory level (up to 4096), more
// than the usual soft limit of 1024. Leaves the limit as it was if it cannot.
void raise_open_file_limit();

// Creates `dir` and missing parents (mode 0755 less umask; existing ones are left as they are).
[[nodiscard]] Status make_dirs(const std::string& dir);

// Removes a tree; a missing path is OK.
[[nodiscard]] Status remove_tree(const std::string& path);

// Parent directory of `path` ("." for a bare name).
std::string parent_dir(const std::string& path);

}  // namespace stowage
