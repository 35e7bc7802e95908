#include "stowage/snapshot_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "stowage/durable.h"

namespace stowage {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string unique_tag() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + std::to_string(rng() % 1000000);
}

Status remove_all(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  return ec ? errno_status(ec.value(), "remove " + path) : Status::ok();
}

Status write_durable(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return errno_status(errno, "create " + path);
  Status st;
  for (size_t done = 0; st.is_ok() && done < data.size();) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n == 0 || errno != EINTR) {
      st = errno_status(n == 0 ? EIO : errno, "write " + path);
    }
  }
  if (st.is_ok() && ::fsync(fd) != 0) st = errno_status(errno, "fsync " + path);
  ::close(fd);
  return st;
}

// Names are validated by the caller (validate_volume_name); this is the last
// line of defence against a name that would leave the snapshots directory.
Status check_name(const std::string& name) {
  if (name.empty() || name[0] == '.' || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    return Status::invalid_argument("invalid snapshot name '" + name + "'");
  }
  return Status::ok();
}

Result<SnapshotInfo> read_info(const std::string& dir) {
  std::ifstream in(dir + "/snapshot.json");
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::corruption(dir + "/snapshot.json is unreadable");
  SnapshotInfo s;
  s.name = j.value("name", "");
  s.created_unix_ns = j.value("created_unix_ns", int64_t{0});
  s.bytes = j.value("bytes", uint64_t{0});
  s.files = j.value("files", uint64_t{0});
  s.strategy = j.value("strategy", "");
  return s;
}

}  // namespace

Result<SnapshotInfo> SnapshotStore::create(const std::string& volume_dir, const std::string& data_dir,
                                           const std::string& name, int64_t now_unix_ns) const {
  STOWAGE_RETURN_IF_ERROR(check_name(name));
  std::string snaps = volume_dir + "/snapshots";
  std::string final_dir = snaps + "/" + name;
  if (::mkdir(snaps.c_str(), 0700) != 0 && errno != EEXIST) return errno_status(errno, "mkdir " + snaps);
  if (::access(final_dir.c_str(), F_OK) == 0) return Status::already_exists("snapshot '" + name + "' already exists");
  std::string tmp = snaps + "/.tmp-" + name + "-" + unique_tag();
  if (::mkdir(tmp.c_str(), 0700) != 0) return errno_status(errno, "mkdir " + tmp);
  auto fail = [&](Status st) {
    (void)remove_all(tmp);
    return st;
  };
  auto stats = engine_.copy_tree(data_dir, tmp + "/data");
  if (!stats.is_ok()) return fail(stats.status());
  SnapshotInfo info{name, now_unix_ns, stats->bytes, stats->files, std::string(strategy_name(stats->strategy))};
  json j = {{"name", info.name}, {"created_unix_ns", info.created_unix_ns}, {"bytes", info.bytes},
            {"files", info.files}, {"strategy", info.strategy}};
  if (Status st = write_durable(tmp + "/snapshot.json", j.dump() + "\n"); !st.is_ok()) return fail(st);
  // The copy's own data reaches the disk with the filesystem's next commit;
  // syncfs here makes the snapshot durable before we report it.
  if (Status st = sync_filesystem(tmp); !st.is_ok()) return fail(st.with_context("write the copy to the disk"));
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    int err = errno;
    return fail(err == EEXIST || err == ENOTEMPTY ? Status::already_exists("snapshot '" + name + "' already exists")
                                                  : errno_status(err, "rename " + tmp));
  }
  STOWAGE_RETURN_IF_ERROR(fsync_dir(snaps));
  return info;
}

Result<std::vector<SnapshotInfo>> SnapshotStore::list(const std::string& volume_dir) const {
  std::vector<SnapshotInfo> out;
  std::string snaps = volume_dir + "/snapshots";
  DIR* d = ::opendir(snaps.c_str());
  if (!d) {
    if (errno == ENOENT) return out;
    return errno_status(errno, "open " + snaps);
  }
  std::vector<std::string> names;
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (!n.empty() && n[0] != '.') names.push_back(n);
  }
  ::closedir(d);
  for (const auto& n : names) {
    auto info = read_info(snaps + "/" + n);
    if (!info.is_ok() && ::access((snaps + "/" + n).c_str(), F_OK) != 0) continue;  // removed meanwhile
    if (!info.is_ok()) {
      SnapshotInfo broken;
      broken.name = n;
      broken.strategy = "unknown (" + info.status().message() + ")";
      out.push_back(broken);
      continue;
    }
    out.push_back(*info);
  }
  std::sort(out.begin(), out.end(), [](const SnapshotInfo& a, const SnapshotInfo& b) {
    return a.created_unix_ns != b.created_unix_ns ? a.created_unix_ns < b.created_unix_ns : a.name < b.name;
  });
  return out;
}

Status SnapshotStore::remove(const std::string& volume_dir, const std::string& name) const {
  STOWAGE_RETURN_IF_ERROR(check_name(name));
  std::string dir = volume_dir + "/snapshots/" + name;
  if (::access(dir.c_str(), F_OK) != 0) return Status::not_found("no such snapshot: " + name);
  std::string doomed = volume_dir + "/snapshots/.tmp-rm-" + name + "-" + unique_tag();
  if (::rename(dir.c_str(), doomed.c_str()) != 0) return errno_status(errno, "rename " + dir);
  STOWAGE_RETURN_IF_ERROR(fsync_dir(volume_dir + "/snapshots"));
  return remove_all(doomed);
}

Status SnapshotStore::rollback(const std::string& volume_dir, const std::string& data_dir,
                               const std::string& name) const {
  STOWAGE_RETURN_IF_ERROR(check_name(name));
  std::string snap = volume_dir + "/snapshots/" + name;
  if (::access(snap.c_str(), F_OK) != 0) return Status::not_found("no such snapshot: " + name);
  std::string incoming = volume_dir + "/.rollback-old-" + unique_tag();
  STOWAGE_ASSIGN_OR_RETURN(auto stats, engine_.copy_tree(snap + "/data", incoming));
  (void)stats;
  // The copy must be on the disk before it replaces the data, which is then deleted.
  if (Status st = sync_filesystem(volume_dir); !st.is_ok()) {
    (void)remove_all(incoming);
    return st.with_context("write the copy to the disk");
  }
  // One atomic step: `incoming` becomes the data, the old data takes its name.
  if (::syscall(SYS_renameat2, AT_FDCWD, incoming.c_str(), AT_FDCWD, data_dir.c_str(), RENAME_EXCHANGE) != 0) {
    Status st = errno_status(errno, "exchange " + incoming + " with " + data_dir);
    (void)remove_all(incoming);
    return st;
  }
  STOWAGE_RETURN_IF_ERROR(fsync_dir(volume_dir));
  return remove_all(incoming);
}

Result<CopyStats> SnapshotStore::clone(const std::string& volume_dir, const std::string& name,
                                       const std::string& dst) const {
  STOWAGE_RETURN_IF_ERROR(check_name(name));
  std::string snap = volume_dir + "/snapshots/" + name;
  if (::access(snap.c_str(), F_OK) != 0) return Status::not_found("no such snapshot: " + name);
  return engine_.copy_tree(snap + "/data", dst);
}

Status SnapshotStore::recover(const std::string& volume_dir) const {
  for (const std::string& dir : {volume_dir, volume_dir + "/snapshots"}) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) continue;
    std::vector<std::string> doomed;
    while (dirent* de = ::readdir(d)) {
      std::string_view n = de->d_name;
      if (n.starts_with(".tmp-") || n.starts_with(".rollback-old-")) doomed.push_back(dir + "/" + std::string(n));
    }
    ::closedir(d);
    for (const auto& p : doomed) STOWAGE_RETURN_IF_ERROR(remove_all(p));
  }
  return Status::ok();
}

}  // namespace stowage
