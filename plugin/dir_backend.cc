#include "dir_backend.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <utility>

namespace stowage {

Status DirBackend::provision(const std::string& volume_dir, const VolumeOptions& opts) {
  std::string data = data_path(volume_dir);
  mode_t mode = opts.mode.value_or(0755);
  if (::mkdir(data.c_str(), 0700) != 0) return errno_status(errno, "create " + data);
  // chown before chmod: chown clears setuid/setgid bits a user may have asked for.
  uid_t uid = opts.uid.value_or(0);
  gid_t gid = opts.gid.value_or(0);
  if (::chown(data.c_str(), uid, gid) != 0) return errno_status(errno, "chown " + data);
  if (::chmod(data.c_str(), mode) != 0) return errno_status(errno, "chmod " + data);
  return Status::ok();
}

Result<VolumeUsage> DirBackend::usage(const std::string& volume_dir, uint64_t max_entries) {
  namespace fs = std::filesystem;
  VolumeUsage u;
  std::error_code ec;
  fs::recursive_directory_iterator it(data_path(volume_dir), fs::directory_options::skip_permission_denied, ec);
  if (ec) return errno_status(ec.value(), "walk " + data_path(volume_dir));
  std::set<std::pair<dev_t, ino_t>> seen;
  struct stat st {};
  if (::lstat(data_path(volume_dir).c_str(), &st) == 0) u.bytes += static_cast<uint64_t>(st.st_blocks) * 512;
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) {
      // Entries vanish under a running container; count what is there.
      ec.clear();
      continue;
    }
    if (u.entries >= max_entries) {
      u.complete = false;
      break;
    }
    ++u.entries;
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    // A hardlinked file occupies its blocks once.
    if (st.st_nlink > 1 && !S_ISDIR(st.st_mode) && !seen.emplace(st.st_dev, st.st_ino).second) continue;
    u.bytes += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return u;
}

}  // namespace stowage
