#include "volume_manager.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <random>

#include "fs_util.h"

namespace stowage {

namespace {

constexpr std::string_view kStagingPrefix = ".staging-";
constexpr std::string_view kTrashPrefix = ".trash-";

std::string unique_suffix() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%d-%llu-%06llu", static_cast<int>(::getpid()),
                static_cast<unsigned long long>(counter++), static_cast<unsigned long long>(rng() % 1000000));
  return buf;
}

int64_t system_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct VolumeManager::Entry {
  enum class State { kCreating, kReady, kBroken, kRemoved };
  std::mutex mu;  // serialises operations on this volume
  State state = State::kCreating;
  VolumeRecord record;
  std::string problem;  // why a kBroken record could not be read
  std::optional<VolumeUsage> usage;
  int64_t usage_at_ns = 0;
};

VolumeManager::VolumeManager(Options options, VolumeBackend& backend, Logger& log)
    : opts_(std::move(options)), backend_(backend), log_(log) {
  if (!opts_.now_unix_ns) opts_.now_unix_ns = system_now_ns;
}

Result<std::unique_ptr<VolumeManager>> VolumeManager::open(Options options, VolumeBackend& backend, Logger& log) {
  if (options.state_root.empty() || options.state_root[0] != '/') {
    return Status::invalid_argument("state root must be an absolute path, got '" + options.state_root + "'");
  }
  std::unique_ptr<VolumeManager> m(new VolumeManager(std::move(options), backend, log));
  STOWAGE_RETURN_IF_ERROR(m->load().with_context("load volumes from " + m->opts_.state_root));
  return m;
}

std::string VolumeManager::volume_dir(const std::string& name) const {
  return opts_.state_root + "/volumes/" + name;
}

Status VolumeManager::persist(const VolumeRecord& rec) {
  return write_file_atomic(volume_dir(rec.name) + "/volume.json", volume_record_to_json(rec), 0600);
}

Status VolumeManager::load() {
  std::string vols = opts_.state_root + "/volumes";
  STOWAGE_RETURN_IF_ERROR(make_dirs(vols));
  ::chmod(opts_.state_root.c_str(), 0711);
  ::chmod(vols.c_str(), 0711);
  DIR* d = ::opendir(vols.c_str());
  if (!d) return errno_status(errno, "open " + vols);
  std::vector<std::string> names;
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  ::closedir(d);

  for (const auto& n : names) {
    std::string dir = vols + "/" + n;
    if (n.starts_with(kStagingPrefix)) {
      // A Create that never returned: nothing was acknowledged, discard it.
      log_.info("discarding interrupted create", {{"dir", dir}});
      STOWAGE_RETURN_IF_ERROR(remove_tree(dir));
      continue;
    }
    if (n.starts_with(kTrashPrefix)) {
      // A Remove that was acknowledged (or was about to be): finish it.
      log_.info("finishing interrupted remove", {{"dir", dir}});
      STOWAGE_RETURN_IF_ERROR(remove_tree(dir));
      continue;
    }
    if (n.starts_with(".")) continue;  // not ours: leave it alone

    auto e = std::make_shared<Entry>();
    e->record.name = n;
    auto data = read_small_file(dir + "/volume.json");
    Result<VolumeRecord> rec = data.is_ok() ? volume_record_from_json(*data) : Result<VolumeRecord>(data.status());
    if (!rec.is_ok()) {
      // Keep the volume visible so Docker does not forget it; refuse to mount it.
      e->state = Entry::State::kBroken;
      e->problem = rec.status().message();
      log_.error("volume record unreadable", {{"volume", n}, {"error", e->problem}});
    } else if (rec->name != n) {
      e->state = Entry::State::kBroken;
      e->problem = "record names volume '" + rec->name + "' but lives in directory '" + n + "'";
      log_.error("volume record misplaced", {{"volume", n}, {"error", e->problem}});
    } else {
      e->state = Entry::State::kReady;
      e->record = std::move(rec).value();
      if (!e->record.mount_ids.empty() && !opts_.boot_id.empty() && e->record.boot_id != opts_.boot_id) {
        log_.info("host rebooted since these mounts: releasing them",
                  {{"volume", n}, {"mount_ids", std::to_string(e->record.mount_ids.size())}});
        e->record.mount_ids.clear();
        e->record.boot_id = opts_.boot_id;
        STOWAGE_RETURN_IF_ERROR(persist(e->record));
      }
      // Leftover temp files of an interrupted record update.
      if (DIR* vd = ::opendir(dir.c_str())) {
        while (dirent* de = ::readdir(vd)) {
          std::string_view f = de->d_name;
          if (f.starts_with(".volume.json.tmp-")) ::unlinkat(::dirfd(vd), de->d_name, 0);
        }
        ::closedir(vd);
      }
    }
    entries_[n] = std::move(e);
  }
  log_.info("volumes loaded", {{"count", std::to_string(entries_.size())}, {"root", opts_.state_root}});
  return Status::ok();
}

std::shared_ptr<VolumeManager::Entry> VolumeManager::find(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : it->second;
}

namespace {
Status no_such_volume(const std::string& name) { return Status::not_found("no such volume: " + name); }
}  // namespace

VolumeInfo VolumeManager::info_locked(Entry& e, bool with_usage) {
  VolumeInfo info;
  info.record = e.record;
  info.mountpoint = backend_.data_path(volume_dir(e.record.name));
  info.problem = e.problem;
  if (with_usage && e.state == Entry::State::kReady) {
    int64_t now = opts_.now_unix_ns();
    if (!e.usage || now - e.usage_at_ns > opts_.usage_ttl_ns) {
      auto u = backend_.usage(volume_dir(e.record.name), opts_.usage_max_entries);
      if (u.is_ok()) {
        e.usage = *u;
        e.usage_at_ns = now;
      } else {
        log_.warn("usage measurement failed", {{"volume", e.record.name}, {"error", u.status().message()}});
      }
    }
    info.usage = e.usage;
    info.usage_measured_unix_ns = e.usage_at_ns;
  }
  return info;
}

Result<VolumeInfo> VolumeManager::create(const std::string& name, const std::map<std::string, std::string>& raw) {
  STOWAGE_RETURN_IF_ERROR(validate_volume_name(name));
  STOWAGE_ASSIGN_OR_RETURN(VolumeOptions opts, parse_volume_options(raw));

  // The creator locks a new entry before publishing it, so concurrent calls for
  // the same name wait for the outcome instead of seeing a half-made volume.
  std::shared_ptr<Entry> e;
  std::unique_lock<std::mutex> vlock;
  while (true) {
    auto candidate = std::make_shared<Entry>();
    std::unique_lock<std::mutex> candidate_lock(candidate->mu);
    {
      std::lock_guard lock(mu_);
      auto [it, inserted] = entries_.try_emplace(name, candidate);
      e = it->second;
      if (inserted) {
        vlock = std::move(candidate_lock);
        break;
      }
    }
    std::unique_lock<std::mutex> existing_lock(e->mu);
    if (e->state == Entry::State::kRemoved) continue;  // removed meanwhile: try again
    if (e->state == Entry::State::kReady) {
      if (e->record.options == opts) return info_locked(*e, false);
      return Status::already_exists("volume '" + name + "' already exists with different options");
    }
    if (e->state == Entry::State::kBroken) {
      return Status::already_exists("volume '" + name + "' exists but its record is unreadable: " + e->problem);
    }
    return Status::internal("volume '" + name + "' in unexpected state");
  }

  auto fail = [&](Status st) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(name);
    if (it != entries_.end() && it->second == e) entries_.erase(it);
    e->state = Entry::State::kRemoved;
    return st.with_context("create volume '" + name + "'");
  };

  std::string staging = opts_.state_root + "/volumes/" + std::string(kStagingPrefix) + name + "-" + unique_suffix();
  if (::mkdir(staging.c_str(), 0700) != 0) return fail(errno_status(errno, "mkdir " + staging));
  VolumeRecord rec;
  rec.name = name;
  rec.driver_kind = backend_.kind();
  rec.options = opts;
  rec.created_unix_ns = opts_.now_unix_ns();
  rec.boot_id = opts_.boot_id;
  Status st = backend_.provision(staging, opts);
  if (st.is_ok()) st = write_file_atomic(staging + "/volume.json", volume_record_to_json(rec), 0600);
  if (st.is_ok()) {
    // The commit point: the rename makes the whole volume appear at once.
    if (::rename(staging.c_str(), volume_dir(name).c_str()) != 0) {
      st = errno == ENOTEMPTY || errno == EEXIST
               ? Status::already_exists("directory " + volume_dir(name) + " exists but is not a loaded volume")
               : errno_status(errno, "rename " + staging);
    }
  }
  if (!st.is_ok()) {
    (void)remove_tree(staging);
    return fail(st);
  }
  if (Status fs = fsync_dir(opts_.state_root + "/volumes"); !fs.is_ok()) {
    // The volume exists but may not survive a crash. Report the failure rather
    // than acknowledge something that is not durable.
    e->record = rec;
    e->state = Entry::State::kReady;
    return fs.with_context("create volume '" + name + "'");
  }
  e->record = std::move(rec);
  e->state = Entry::State::kReady;
  log_.info("volume created", {{"volume", name}, {"kind", backend_.kind()}});
  return info_locked(*e, false);
}

Status VolumeManager::remove(const std::string& name) {
  auto e = find(name);
  if (!e) return no_such_volume(name);
  std::lock_guard vlock(e->mu);
  if (e->state == Entry::State::kRemoved || e->state == Entry::State::kCreating) return no_such_volume(name);
  if (!e->record.mount_ids.empty()) {
    std::string ids;
    for (const auto& id : e->record.mount_ids) ids += (ids.empty() ? "" : ", ") + id;
    return Status::failed_precondition("volume '" + name + "' is in use by " +
                                       std::to_string(e->record.mount_ids.size()) + " mount(s): " + ids);
  }
  std::string trash = opts_.state_root + "/volumes/" + std::string(kTrashPrefix) + name + "-" + unique_suffix();
  // The commit point: once renamed, the volume is gone even if we crash now.
  STOWAGE_RETURN_IF_ERROR(rename_durable(volume_dir(name), trash).with_context("remove volume '" + name + "'"));
  e->state = Entry::State::kRemoved;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(name);
    if (it != entries_.end() && it->second == e) entries_.erase(it);
  }
  if (Status st = remove_tree(trash); !st.is_ok()) {
    log_.warn("removed volume's data not fully deleted; will retry at next start",
              {{"volume", name}, {"error", st.message()}});
  }
  log_.info("volume removed", {{"volume", name}});
  return Status::ok();
}

Result<std::string> VolumeManager::mount(const std::string& name, const std::string& mount_id) {
  if (mount_id.empty()) return Status::invalid_argument("mount of volume '" + name + "' needs a non-empty ID");
  auto e = find(name);
  if (!e) return no_such_volume(name);
  std::lock_guard vlock(e->mu);
  if (e->state == Entry::State::kBroken) {
    return Status::failed_precondition("volume '" + name + "' cannot be mounted: " + e->problem);
  }
  if (e->state != Entry::State::kReady) return no_such_volume(name);
  std::string mp = backend_.data_path(volume_dir(name));
  if (e->record.mount_ids.contains(mount_id)) return mp;
  VolumeRecord next = e->record;
  next.mount_ids.insert(mount_id);
  next.boot_id = opts_.boot_id;
  STOWAGE_RETURN_IF_ERROR(persist(next).with_context("mount volume '" + name + "'"));
  e->record = std::move(next);
  log_.info("volume mounted", {{"volume", name}, {"id", mount_id},
                               {"mounts", std::to_string(e->record.mount_ids.size())}});
  return mp;
}

Status VolumeManager::unmount(const std::string& name, const std::string& mount_id) {
  auto e = find(name);
  if (!e) return no_such_volume(name);
  std::lock_guard vlock(e->mu);
  if (e->state != Entry::State::kReady && e->state != Entry::State::kBroken) return no_such_volume(name);
  if (!e->record.mount_ids.contains(mount_id)) {
    log_.info("unmount of an ID that holds no mount; nothing to do", {{"volume", name}, {"id", mount_id}});
    return Status::ok();
  }
  VolumeRecord next = e->record;
  next.mount_ids.erase(mount_id);
  STOWAGE_RETURN_IF_ERROR(persist(next).with_context("unmount volume '" + name + "'"));
  e->record = std::move(next);
  log_.info("volume unmounted", {{"volume", name}, {"id", mount_id},
                                 {"mounts", std::to_string(e->record.mount_ids.size())}});
  return Status::ok();
}

Result<std::vector<std::string>> VolumeManager::release_all(const std::string& name) {
  auto e = find(name);
  if (!e) return no_such_volume(name);
  std::lock_guard vlock(e->mu);
  if (e->state != Entry::State::kReady) return no_such_volume(name);
  std::vector<std::string> ids(e->record.mount_ids.begin(), e->record.mount_ids.end());
  if (ids.empty()) return ids;
  VolumeRecord next = e->record;
  next.mount_ids.clear();
  STOWAGE_RETURN_IF_ERROR(persist(next).with_context("release mounts of volume '" + name + "'"));
  e->record = std::move(next);
  log_.warn("mount IDs released by operator", {{"volume", name}, {"count", std::to_string(ids.size())}});
  return ids;
}

Result<std::string> VolumeManager::path(const std::string& name) {
  auto e = find(name);
  if (!e) return no_such_volume(name);
  std::lock_guard vlock(e->mu);
  if (e->state != Entry::State::kReady && e->state != Entry::State::kBroken) return no_such_volume(name);
  return backend_.data_path(volume_dir(name));
}

Result<VolumeInfo> VolumeManager::get(const std::string& name, bool with_usage) {
  auto e = find(name);
  if (!e) return no_such_volume(name);
  std::lock_guard vlock(e->mu);
  if (e->state != Entry::State::kReady && e->state != Entry::State::kBroken) return no_such_volume(name);
  return info_locked(*e, with_usage);
}

std::vector<VolumeInfo> VolumeManager::list(bool with_usage) {
  std::vector<std::shared_ptr<Entry>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [_, e] : entries_) all.push_back(e);
  }
  std::vector<VolumeInfo> out;
  for (auto& e : all) {
    std::lock_guard vlock(e->mu);
    if (e->state == Entry::State::kReady || e->state == Entry::State::kBroken) {
      out.push_back(info_locked(*e, with_usage));
    }
  }
  return out;
}

}  // namespace stowage
