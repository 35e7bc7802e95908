#include "backup_agent.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <utility>

#include "fs_util.h"
#include "stowage/backup_pipeline.h"
#include "stowage/repo_config.h"
#include "stowage/store_deadline.h"

namespace stowage {

namespace {

using json = nlohmann::json;

constexpr std::string_view kTempSnapshotPrefix = "stowage-backup-";
constexpr std::string_view kRestoreStagingPrefix = ".restore-";
// Options::identity_margin_ns when 0: vm.dirty_expire_centisecs +
// vm.dirty_writeback_centisecs + 1 s (36 s with Linux's defaults). A page
// written through mmap is written again without a ctime update until it has
// been written back; within this window a ctime does not prove "unchanged".
int64_t default_identity_margin_ns() {
  auto centisecs = [](const char* path, int64_t dflt) {
    auto text = read_small_file(path, 64);
    if (!text.is_ok()) return dflt;
    try {
      return static_cast<int64_t>(std::stoll(*text));
    } catch (const std::exception&) {
      return dflt;
    }
  };
  const int64_t cs = centisecs("/proc/sys/vm/dirty_expire_centisecs", 3000) +
                     centisecs("/proc/sys/vm/dirty_writeback_centisecs", 500);
  return cs * 10'000'000 + 1'000'000'000;
}

int64_t mono_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string random_token() {
  unsigned char b[16] = {};
  if (::getentropy(b, sizeof b) != 0) return std::to_string(mono_ns());
  return std::string(reinterpret_cast<char*>(b), sizeof b);
}

std::string mib(uint64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

json lease_to_json(const Lease& l, std::string_view state) {
  return {{"state", state},
          {"generation", l.generation},
          {"holder", l.holder.host},
          {"acquired", format_rfc3339_ns(l.acquired_ns)},
          {"expires", format_rfc3339_ns(l.expires_ns)},
          {"renewals", l.renewal}};
}

}  // namespace

struct BackupAgent::Vol {
  std::string name;
  std::mutex op_mu;     // one backup or restore of this volume at a time
  // Serialises lease I/O (acquire, renew, release), each bounded by the
  // renewal interval (lease_io()); a Mount waits for it no longer than its
  // call budget.
  std::timed_mutex lease_mu;
  std::mutex mu;        // the fields below
  std::condition_variable cv;  // restore progress
  // Persisted in <state_dir>/<name>.json.
  std::optional<Hash256> synced;  // newest snapshot of this volume the local data descends from
  // The lease generation this host held when it last found `synced` to be the
  // newest snapshot (0 = not known). A snapshot of an older generation that
  // outranks `synced` later was written late by a holder fenced before then.
  uint64_t synced_generation = 0;
  bool restore_pending = false;   // local data may be a partial restore
  bool lease_held = false;        // this host holds (or held when it stopped) the lease
  std::string fenced;             // why this host lost the lease; "" = not fenced
  int64_t fenced_ns = 0;
  struct Last {
    std::string snapshot, reason, error;
    int64_t time_ns = 0;
  } last;
  // In memory only.
  std::optional<Lease> lease;
  int64_t renewed_mono_ns = 0;
  bool restore_running = false;
  std::optional<Hash256> restore_target;
  std::string restore_error;
  RestoreProgress progress;
  bool final_pending = false, final_running = false;  // cv is notified when final_running ends
  std::string final_error;  // why the last final backup failed; "" = it did not
  // Unmounts begun (counted before the volume manager drops the mount ID); a
  // running final backup compares.
  uint64_t unmounts = 0;
  int mounting = 0;       // Mounts between before_mount() and mount_done()
  // A Mount took the lease and no mount has completed since: when nothing
  // else needs it, release_if_unused() lets it go (no container used the copy).
  bool mount_unconfirmed = false;
  int ops = 0;  // backups and restores of this volume under way (backup_volume, restore_volume)
  std::string restoring;  // snapshot a restore_volume() is putting in place; "" = none
  json last_restore;  // what the last restore fetched and reused
  // Set by after_remove(): a job still holding this entry saves no state and
  // restores no more, so the removed volume's state cannot come back.
  bool removed = false;
};

// Counts a backup or restore in Vol::ops while in scope (or until end()):
// release_unused() and release_if_unused() leave the lease to it meanwhile.
class BackupAgent::OpCount {
 public:
  explicit OpCount(Vol& v) : v_(v) {
    std::lock_guard lk(v_.mu);
    ++v_.ops;
  }
  ~OpCount() { end(); }
  OpCount(const OpCount&) = delete;
  OpCount& operator=(const OpCount&) = delete;
  void end() {
    if (ended_) return;
    ended_ = true;
    std::lock_guard lk(v_.mu);
    --v_.ops;
  }

 private:
  Vol& v_;
  bool ended_ = false;
};

BackupAgent::BackupAgent(Options opts, VolumeManager& volumes, Logger& log)
    : opts_(std::move(opts)),
      volumes_(volumes),
      log_(log),
      identity_margin_ns_(opts_.identity_margin_ns > 0 ? opts_.identity_margin_ns : default_identity_margin_ns()) {}

Result<std::unique_ptr<BackupAgent>> BackupAgent::open(Options opts, VolumeManager& volumes, Logger& log) {
  if (!opts.open_store) return Status::invalid_argument("backup agent: no repository store");
  if (opts.lease.host.empty()) return Status::invalid_argument("backup agent: no host id");
  if (opts.renew_interval_ns <= 0 || opts.renew_interval_ns >= opts.lease.ttl_ns) {
    return Status::invalid_argument("lease renewal interval must be positive and shorter than the lease ttl");
  }
  STOWAGE_RETURN_IF_ERROR(make_dirs(opts.state_dir));
  std::unique_ptr<BackupAgent> a(new BackupAgent(std::move(opts), volumes, log));
  a->recover_at_start();
  a->renewer_ = std::thread([p = a.get()] { p->renew_loop(); });
  return a;
}

Status BackupAgent::connect() {
  STOWAGE_ASSIGN_OR_RETURN(auto store, opts_.open_store());
  const std::string where = store->describe();
  auto has_config = store->head("config");
  if (!has_config.is_ok() && has_config.status().code() == Code::kNotFound) {
    // An empty store: the daemon-wide repository is made on first use. Two
    // daemons doing this at once: the create-only put lets one config win and
    // both open it.
    RepositoryConfig config;
    config.id = sha256(random_token() + std::to_string(mono_ns()));
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    config.created_ns = static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
    Status put = store->put("config", serialize_config(config), {.create_only = true});
    if (put.is_ok()) log_.info("repository created", {{"repository", where}, {"id", config.id.hex()}});
    if (!put.is_ok() && put.code() != Code::kAlreadyExists) return put.with_context("create repository " + where);
  } else if (!has_config.is_ok()) {
    return has_config.status().with_context("open repository " + where);
  }
  auto repo = Repository::open(std::move(store));
  if (!repo.is_ok()) return repo.status().with_context("open repository " + where);
  repo_ = std::move(repo).value();
  lease_ = std::make_unique<LeaseClient>(repo_->store(), opts_.lease);
  connected_.store(true, std::memory_order_release);
  log_.info("backup agent ready", {{"repository", where}, {"host_id", host()},
                                   {"lease_ttl_s", std::to_string(opts_.lease.ttl_ns / 1'000'000'000)}});
  return Status::ok();
}

namespace {

// `cap`, or less if the calling thread's StoreDeadline leaves less.
std::chrono::nanoseconds time_left(int64_t cap_ns) {
  auto left = std::max(std::chrono::nanoseconds(cap_ns), std::chrono::nanoseconds(0));
  if (const auto scope = StoreDeadline::left()) {
    left = std::min(left, std::chrono::duration_cast<std::chrono::nanoseconds>(*scope));
  }
  return left;
}

}  // namespace

Status BackupAgent::need_repository(std::string_view ctx) {
  if (connected()) return Status::ok();
  std::unique_lock lk(connect_mu_);
  connect_cv_.wait_for(lk, time_left(opts_.mount_wait_ns), [&] { return attempts_ > 0; });
  if (connected()) return Status::ok();
  return Status::unavailable(std::string(ctx) + ": the backup repository has not been reached yet" +
                             (connect_error_.empty() ? std::string() : " (" + connect_error_ + ")") +
                             "; stowaged keeps trying in the background, retry in a while");
}

Result<Repository*> BackupAgent::repository() {
  STOWAGE_RETURN_IF_ERROR(need_repository("backup repository"));
  return repo_.get();
}

json BackupAgent::repository_json() {
  if (connected()) return {{"connected", true}, {"error", nullptr}};
  std::lock_guard lk(connect_mu_);
  return {{"connected", false}, {"error", connect_error_.empty() ? json(nullptr) : json(connect_error_)}};
}

BackupAgent::~BackupAgent() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (renewer_.joinable()) renewer_.join();
  std::vector<Job> jobs;
  {
    std::lock_guard lk(mu_);
    jobs.swap(jobs_);
  }
  for (auto& j : jobs) j.thread.join();
}

void BackupAgent::spawn(std::function<void()> fn) {
  std::vector<std::thread> finished;
  {
    std::lock_guard lk(mu_);
    if (stop_) return;
    // Join the jobs that are done, so a long-running daemon does not keep a
    // stack per past Unmount.
    for (size_t i = 0; i < jobs_.size();) {
      if (jobs_[i].done->load()) {
        finished.push_back(std::move(jobs_[i].thread));
        jobs_[i] = std::move(jobs_.back());
        jobs_.pop_back();
      } else {
        ++i;
      }
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    jobs_.push_back({std::thread([fn = std::move(fn), done] {
                       fn();
                       *done = true;
                     }),
                     done});
  }
  for (auto& t : finished) t.join();
}

std::shared_ptr<BackupAgent::Vol> BackupAgent::vol(const std::string& name) {
  std::lock_guard lk(mu_);
  auto& v = vols_[name];
  if (!v) {
    v = std::make_shared<Vol>();
    v->name = name;
    load_state(*v);
  }
  return v;
}

bool BackupAgent::enabled(const std::string& name) {
  auto info = volumes_.get(name, false);
  if (!info.is_ok()) return true;
  auto it = info->record.options.raw.find("backup");
  return it == info->record.options.raw.end() || it->second != "off";
}

void BackupAgent::load_state(Vol& v) {
  auto text = read_small_file(opts_.state_dir + "/" + v.name + ".json", 1 << 20);
  if (!text.is_ok()) return;
  json j = json::parse(*text, nullptr, false);
  if (!j.is_object()) {
    log_.error("agent state unreadable; starting from scratch", {{"volume", v.name}});
    return;
  }
  if (j.value("synced", json()).is_string()) {
    auto id = Hash256::from_hex(j["synced"].get<std::string>());
    if (id.is_ok()) v.synced = *id;
  }
  v.synced_generation = j.value("synced_generation", uint64_t{0});
  v.restore_pending = j.value("restore_pending", false);
  v.lease_held = j.value("lease_held", false);
  v.fenced = j.value("fenced", "");
  v.fenced_ns = j.value("fenced_ns", int64_t{0});
  if (j.value("last_backup", json()).is_object()) {
    const json& l = j["last_backup"];
    v.last = {l.value("snapshot", ""), l.value("reason", ""), l.value("error", ""), l.value("time_ns", int64_t{0})};
  }
}

void BackupAgent::save_state(Vol& v) {
  if (v.removed) return;
  json j = {{"synced", v.synced ? json(v.synced->hex()) : json(nullptr)},
            {"synced_generation", v.synced_generation},
            {"restore_pending", v.restore_pending},
            {"lease_held", v.lease_held},
            {"fenced", v.fenced},
            {"fenced_ns", v.fenced_ns},
            {"last_backup", {{"snapshot", v.last.snapshot}, {"reason", v.last.reason}, {"error", v.last.error},
                             {"time_ns", v.last.time_ns}}}};
  if (Status st = write_file_atomic(opts_.state_dir + "/" + v.name + ".json", j.dump() + "\n"); !st.is_ok()) {
    log_.error("could not save agent state", {{"volume", v.name}, {"error", st.message()}});
  }
}

StoreDeadline BackupAgent::lease_io() const { return StoreDeadline{std::chrono::nanoseconds(opts_.renew_interval_ns)}; }

Status BackupAgent::hold_lease(Vol& v, bool force) {
  {
    std::lock_guard lk(v.mu);
    if (v.lease && !force) return Status::ok();
  }
  const StoreDeadline bound = lease_io();
  STOWAGE_ASSIGN_OR_RETURN(Lease l, lease_->acquire(v.name, force));
  std::lock_guard lk(v.mu);
  v.lease = l;
  v.renewed_mono_ns = mono_ns();
  v.lease_held = true;
  v.fenced.clear();
  if (force) v.mount_unconfirmed = false;  // taken over on purpose: kept until a Mount and its Unmount
  save_state(v);
  log_.info(force ? "lease taken over" : "lease taken",
            {{"volume", v.name}, {"generation", std::to_string(l.generation)}});
  return Status::ok();
}

Result<bool> BackupAgent::hold_for_operation(Vol& v, const std::string& ctx) {
  std::lock_guard ll(v.lease_mu);
  {
    std::lock_guard lk(v.mu);
    if (v.lease) return false;
  }
  STOWAGE_RETURN_IF_ERROR(hold_lease(v, false).with_context(ctx));
  return true;
}

Status BackupAgent::release_lease(Vol& v) {
  std::optional<Lease> held;
  {
    std::lock_guard lk(v.mu);
    held = v.lease;
  }
  if (!held) return Status::ok();
  Status st;
  {
    const StoreDeadline bound = lease_io();
    st = lease_->release(*held);
  }
  if (is_lease_lost(st)) {
    fence(v, st);
    return Status::ok();
  }
  STOWAGE_RETURN_IF_ERROR(st);
  std::lock_guard lk(v.mu);
  v.lease.reset();
  v.lease_held = false;
  save_state(v);
  log_.info("lease released", {{"volume", v.name}, {"generation", std::to_string(held->generation)}});
  return Status::ok();
}

uint64_t BackupAgent::unmounts_seen(Vol& v) {
  std::lock_guard lk(v.mu);
  return v.unmounts;
}

void BackupAgent::release_unused(Vol& v, uint64_t unmounts_before) {
  // Decided under lease_mu, where before_mount() counts a Mount.
  std::lock_guard ll(v.lease_mu);
  auto info = volumes_.get(v.name, false);
  {
    std::lock_guard lk(v.mu);
    if (!idle_locked(v, info.is_ok() ? &*info : nullptr) || v.unmounts != unmounts_before) return;
  }
  (void)release_lease(v);
}

bool BackupAgent::idle_locked(const Vol& v, const VolumeInfo* info) {
  // Not mounted or being mounted; no writes waiting for a final backup (to
  // make, or running); no backup or restore of it under the lease.
  return info && info->record.mount_ids.empty() && v.mounting == 0 && !v.final_pending && !v.final_running &&
         v.ops == 0;
}

void BackupAgent::fence(Vol& v, const Status& why) {
  std::lock_guard lk(v.mu);
  v.lease.reset();
  v.lease_held = false;
  v.final_pending = false;
  v.fenced = why.message();
  v.fenced_ns = opts_.lease.wall_ns ? opts_.lease.wall_ns() : 0;
  if (v.fenced_ns == 0) {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    v.fenced_ns = static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  }
  save_state(v);
  log_.error("fenced: lease lost, this host stops backing up the volume",
             {{"volume", v.name}, {"reason", v.fenced}});
}

void BackupAgent::recover_at_start() {
  for (const auto& info : volumes_.list(false)) {
    const std::string& name = info.record.name;
    if (!info.problem.empty() || !enabled(name)) continue;
    auto v = vol(name);
    // Leftovers of an interrupted restore (the swap is atomic: _data is
    // either the old or the new tree) and of an interrupted backup.
    const std::string vdir = parent_dir(info.mountpoint);
    if (DIR* d = ::opendir(vdir.c_str())) {
      std::vector<std::string> stale;
      while (dirent* de = ::readdir(d)) {
        if (std::string_view(de->d_name).starts_with(kRestoreStagingPrefix)) stale.push_back(vdir + "/" + de->d_name);
      }
      ::closedir(d);
      for (const auto& p : stale) (void)remove_tree(p);
    }
    auto snaps = volumes_.snapshot_list(name);
    if (snaps.is_ok()) {
      for (const auto& s : *snaps) {
        if (s.name.starts_with(kTempSnapshotPrefix)) (void)volumes_.snapshot_remove(name, s.name);
      }
    }
    std::lock_guard lk(v->mu);
    // Held when the daemon stopped, nothing mounted: the final backup (or the
    // release after it) did not finish. The renewal loop runs it again.
    if (info.record.mount_ids.empty() && v->lease_held && v->fenced.empty()) v->final_pending = true;
  }
}

void BackupAgent::renew_loop() {
  // Connect first: local volumes are served meanwhile (docs/MIGRATION.md).
  int64_t backoff_ns = 200'000'000;
  while (!connected()) {
    Status st = connect();
    {
      std::lock_guard lk(connect_mu_);
      ++attempts_;
      if (!st.is_ok()) connect_error_ = st.message();
    }
    connect_cv_.notify_all();
    if (st.is_ok()) break;
    log_.warn("backup repository not reachable; volumes with backups cannot be mounted until it is, retrying",
              {{"error", st.message()}, {"retry_in_ms", std::to_string(backoff_ns / 1'000'000)}});
    std::unique_lock lk(mu_);
    stop_cv_.wait_for(lk, std::chrono::nanoseconds(backoff_ns), [&] { return stop_; });
    if (stop_) return;
    backoff_ns = std::min(backoff_ns * 2, opts_.renew_interval_ns);
  }
  bool first = true;
  while (true) {
    {
      std::unique_lock lk(mu_);
      if (!first) {
        stop_cv_.wait_for(lk, std::chrono::nanoseconds(opts_.renew_interval_ns), [&] { return stop_; });
      }
      if (stop_) return;
    }
    first = false;
    for (const auto& info : volumes_.list(false)) {
      const std::string& name = info.record.name;
      if (!info.problem.empty() || !enabled(name)) continue;
      auto v = vol(name);
      {
        std::lock_guard ll(v->lease_mu);
        std::optional<Lease> held;
        bool fenced = false;
        {
          std::lock_guard lk(v->mu);
          held = v->lease;
          fenced = !v->fenced.empty();
        }
        if (held) {
          Lease next = *held;
          Status st;
          {
            const StoreDeadline bound = lease_io();
            st = lease_->renew(next);
          }
          if (st.is_ok()) {
            std::lock_guard lk(v->mu);
            v->lease = next;
            v->renewed_mono_ns = mono_ns();
          } else if (is_lease_lost(st)) {
            fence(*v, st);
          } else {
            log_.warn("lease renewal failed; will retry", {{"volume", name}, {"error", st.message()}});
          }
        } else if (!info.record.mount_ids.empty() && !fenced) {
          // Mounted here but not held: a daemon restart, or a failed renewal.
          Status st = hold_lease(*v, false);
          if (st.code() == Code::kFailedPrecondition) {
            fence(*v, st);
          } else if (!st.is_ok()) {
            log_.warn("could not take the lease of a mounted volume; will retry",
                      {{"volume", name}, {"error", st.message()}});
          }
        }
      }
      bool unconfirmed = false;
      {
        std::lock_guard lk(v->mu);
        unconfirmed = v->mount_unconfirmed && v->lease.has_value();
      }
      if (unconfirmed) release_if_unused(*v);  // also retries one that failed
      bool run_final = false;
      {
        std::lock_guard lk(v->mu);
        if (v->final_pending && !v->final_running && info.record.mount_ids.empty()) {
          v->final_running = true;
          run_final = true;
        }
      }
      if (run_final) spawn([this, name] { final_backup(name); });
    }
  }
}

Status BackupAgent::ensure_local(const std::string& name) {
  auto info = volumes_.get(name, false);
  if (info.is_ok() || info.status().code() != Code::kNotFound) return info.status();
  STOWAGE_RETURN_IF_ERROR(need_repository(info.status().message() + " here, and the repository may have it"));
  auto latest = latest_snapshot_of(*repo_, name);
  if (!latest.is_ok() || !*latest) return info.status();
  log_.info("volume exists in the repository only: creating it here", {{"volume", name}});
  STOWAGE_RETURN_IF_ERROR(volumes_.create(name, {}).status());
  return after_create(name, true);
}

Status BackupAgent::after_create(const std::string& name, bool created_now) {
  if (!enabled(name)) return Status::ok();
  // Docker gives up on a plugin call after 120 s: a stalled repository must
  // not hold the call past the budget (docs/MIGRATION.md).
  StoreDeadline deadline{std::chrono::nanoseconds(opts_.call_budget_ns)};
  auto info = volumes_.get(name, false);
  if (!info.is_ok()) return info.status();
  auto v = vol(name);
  auto take = info->record.options.raw.find("takeover");
  if (take != info->record.options.raw.end() && take->second == "force") {
    STOWAGE_RETURN_IF_ERROR(need_repository("take over volume '" + name + "'"));
    std::lock_guard ll(v->lease_mu);
    bool held = false;
    {
      std::lock_guard lk(v->mu);
      held = v->lease.has_value();
    }
    if (!held) STOWAGE_RETURN_IF_ERROR(hold_lease(*v, true).with_context("take over volume '" + name + "'"));
  }
  // Not reached yet: the first Mount, which waits for it, looks for snapshots.
  if (!created_now || !connected()) return Status::ok();
  auto latest = latest_snapshot_of(*repo_, name);
  if (!latest.is_ok()) {
    // The first Mount looks again and fails if it still cannot tell.
    log_.warn("could not look for snapshots of a new volume", {{"volume", name}, {"error", latest.status().message()}});
    return Status::ok();
  }
  if (!*latest) return Status::ok();
  {
    std::lock_guard lk(v->mu);
    v->restore_pending = true;
    save_state(*v);
  }
  log_.info("restoring new volume from the repository", {{"volume", name}, {"snapshot", (*latest)->hex()}});
  start_restore(v, **latest);
  return Status::ok();
}

Status BackupAgent::before_mount(const std::string& name) {
  // Everything before the Mount's answer, restore wait included (as in after_create).
  StoreDeadline deadline{std::chrono::nanoseconds(opts_.call_budget_ns)};
  STOWAGE_RETURN_IF_ERROR(ensure_local(name));
  const bool backups = enabled(name);
  auto v = vol(name);
  bool took = false;       // this Mount took the lease
  // A further Mount of a volume mounted here under this host's lease takes
  // and fetches nothing: the repository may be away meanwhile. (A lease held
  // means the repository was reached.)
  auto further = [&] {
    auto info = volumes_.get(name, false);
    std::lock_guard lk(v->mu);
    return info.is_ok() && !info->record.mount_ids.empty() && v->lease.has_value();
  };
  if (backups && !further()) {
    STOWAGE_RETURN_IF_ERROR(need_repository("volume '" + name +
                                            "' needs its lease from the backup repository (volumes with -o backup=off do not)"));
  }
  {
    // Counted under lease_mu, where a finishing final backup decides whether
    // to release the lease and restore_volume() whether it may start.
    std::unique_lock ll(v->lease_mu, std::defer_lock);
    if (!ll.try_lock_for(time_left(opts_.call_budget_ns))) {
      return Status::deadline_exceeded("volume '" + name +
                                       "': out of time waiting for this host's lease work on it (the backup "
                                       "repository is not answering); retry the mount in a while");
    }
    {
      // Its swap would move the tree this Mount hands out aside, and delete it.
      std::lock_guard lk(v->mu);
      if (!v->restoring.empty()) {
        return Status::unavailable("volume '" + name + "' is being restored from snapshot " +
                                   v->restoring.substr(0, 12) + " (stowctl restore); retry the mount when that is done");
      }
    }
    const bool more = further();  // again, under lease_mu: the last Unmount may have released it since
    if (backups && !more) {
      {
        std::lock_guard lk(v->mu);
        took = !v->lease.has_value();
      }
      STOWAGE_RETURN_IF_ERROR(hold_lease(*v, false));
    }
    std::lock_guard lk(v->mu);
    ++v->mounting;
    if (took) v->mount_unconfirmed = true;
    if (!backups || more) return Status::ok();
  }
  Status st = bring_up_to_date(v);
  if (!st.is_ok()) mount_done(name, false);
  return st;
}

bool BackupAgent::unused_by_mount_locked(const Vol& v, const VolumeInfo* info) {
  return v.lease && v.mount_unconfirmed && idle_locked(v, info) && !v.restore_running && v.restoring.empty() &&
         v.fenced.empty();
}

void BackupAgent::release_if_unused(Vol& v) {
  std::lock_guard ll(v.lease_mu);
  auto info = volumes_.get(v.name, false);
  {
    std::lock_guard lk(v.mu);
    if (!unused_by_mount_locked(v, info.is_ok() ? &*info : nullptr)) return;
  }
  log_.info("releasing the lease: the Mount that took it failed and no container used this copy", {{"volume", v.name}});
  if (release_lease(v).is_ok()) {
    std::lock_guard lk(v.mu);
    v.mount_unconfirmed = false;
  }
}

void BackupAgent::mount_done(const std::string& name, bool mounted) {
  auto v = vol(name);
  {
    std::lock_guard lk(v->mu);
    if (v->mounting > 0) --v->mounting;
    if (mounted) v->mount_unconfirmed = false;
    if (mounted || !v->mount_unconfirmed || v->restore_running) return;
  }
  // A failed Mount, answered without waiting for the repository (a stalled
  // one may be why it failed); the restore job or the renewal loop tries
  // again if this finds the lease still needed.
  spawn([this, v] { release_if_unused(*v); });
}

Result<std::optional<Hash256>> BackupAgent::newest_snapshot(Vol& v) {
  STOWAGE_ASSIGN_OR_RETURN(const auto latest, latest_snapshot_of(*repo_, v.name));
  std::optional<Hash256> synced;
  uint64_t generation = 0;
  {
    std::lock_guard lk(v.mu);
    synced = v.synced;
    generation = v.synced_generation;
  }
  if (!latest || !synced || *latest == *synced || generation == 0) return latest;
  STOWAGE_ASSIGN_OR_RETURN(const Bytes bytes, repo_->load_snapshot(*latest));
  STOWAGE_ASSIGN_OR_RETURN(const SnapshotManifest m, parse_snapshot(bytes));
  // Generation 0: a path backup, which carries no lease (MIGRATION.md, Limits).
  if (m.lease_generation == 0 || m.lease_generation >= generation) return latest;
  log_.warn("ignoring a snapshot written by a holder that had lost the lease; this copy supersedes it",
            {{"volume", v.name}, {"snapshot", latest->hex()}, {"lease_generation", std::to_string(m.lease_generation)},
             {"held_generation", std::to_string(generation)}});
  return synced;
}

void BackupAgent::synced_under_lease(Vol& v) {
  if (!v.lease || v.synced_generation == v.lease->generation) return;
  v.synced_generation = v.lease->generation;
  save_state(v);
}

Status BackupAgent::bring_up_to_date(const std::shared_ptr<Vol>& v) {
  STOWAGE_ASSIGN_OR_RETURN(const auto latest, newest_snapshot(*v));
  {
    std::lock_guard lk(v->mu);
    if (!latest) {
      v->restore_pending = false;
      return Status::ok();
    }
    if (v->synced == *latest && !v->restore_pending && !v->restore_running) {
      synced_under_lease(*v);
      return Status::ok();
    }
    v->restore_pending = true;
    save_state(*v);
  }
  start_restore(v, *latest);
  STOWAGE_RETURN_IF_ERROR(wait_restored(*v, *latest, opts_.mount_wait_ns));
  std::lock_guard lk(v->mu);
  synced_under_lease(*v);
  return Status::ok();
}

void BackupAgent::start_restore(const std::shared_ptr<Vol>& v, const Hash256& id) {
  std::lock_guard lk(v->mu);
  v->restore_target = id;
  v->restore_error.clear();
  if (v->restore_running) return;  // the running job picks up the new target
  v->restore_running = true;
  spawn([this, v] { restore_job(v); });
}

void BackupAgent::restore_job(std::shared_ptr<Vol> v) {
  bool release = false;
  // Under v->mu: the job ends; a Mount that took the lease and failed while
  // it ran may have left the lease unused.
  auto end = [&] {
    v->restore_running = false;
    v->cv.notify_all();
    release = v->mount_unconfirmed && !v->removed;
  };
  while (true) {
    Hash256 target;
    {
      std::lock_guard lk(v->mu);
      target = *v->restore_target;
      if (v->removed || (v->synced == target && !v->restore_pending)) {
        end();
        break;
      }
    }
    Status st;
    {
      std::lock_guard op(v->op_mu);
      st = restore_into(*v, target);
    }
    std::lock_guard lk(v->mu);
    if (st.is_ok()) {
      v->synced = target;
      v->synced_generation = 0;  // the target may have been chosen without the lease
      v->restore_pending = false;
    } else {
      v->restore_error = st.message();
      log_.error("restore failed", {{"volume", v->name}, {"snapshot", target.hex()}, {"error", st.message()}});
    }
    save_state(*v);
    if (!st.is_ok() || *v->restore_target == target) {
      end();
      break;
    }
  }
  if (release) release_if_unused(*v);
}

Status BackupAgent::restore_into(Vol& v, const Hash256& id) {
  STOWAGE_ASSIGN_OR_RETURN(const VolumeInfo info, volumes_.get(v.name, false));
  if (!info.record.mount_ids.empty()) {
    return Status::failed_precondition("volume '" + v.name + "' is mounted; restoring it needs it unmounted");
  }
  const std::string data = info.mountpoint;
  const std::string vdir = parent_dir(data);
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "%lld", static_cast<long long>(mono_ns()));
  const std::string staging = vdir + "/" + std::string(kRestoreStagingPrefix) + suffix;
  v.progress.bytes_total = 0;
  v.progress.bytes_written = 0;
  v.progress.files_total = 0;
  RestoreOptions ro;
  ro.target = staging;
  ro.reuse_from = data;
  ro.sync = false;  // after the root's owner and mode, below
  ro.progress = &v.progress;
  ro.log = [this, name = v.name](std::string_view line) { log_.warn("restore", {{"volume", name}, {"detail", std::string(line)}}); };
  auto r = run_restore(*repo_, id, ro);
  if (!r.is_ok()) {
    (void)remove_tree(staging);
    return r.status().with_context("restore volume '" + v.name + "' from snapshot " + id.hex().substr(0, 12));
  }
  // A snapshot made before roots were recorded: the volume root keeps its
  // owner and mode (those its options set).
  struct stat st {};
  if (!r->root_restored && ::stat(data.c_str(), &st) == 0) {
    if (::chown(staging.c_str(), st.st_uid, st.st_gid) != 0 || ::chmod(staging.c_str(), st.st_mode & 07777) != 0) {
      Status e = errno_status(errno, "set owner and mode of " + staging);
      (void)remove_tree(staging);
      return e;
    }
  }
  // The restored copy must be on the disk before it replaces the data, which
  // is then deleted: on a full thin-provisioned device only this shows that
  // it is not.
  if (Status synced = sync_filesystem(staging); !synced.is_ok()) {
    (void)remove_tree(staging);
    return synced.with_context("restore volume '" + v.name + "'");
  }
  if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, data.c_str(), RENAME_EXCHANGE) != 0) {
    Status e = errno_status(errno, "swap restored data into " + data);
    (void)remove_tree(staging);
    return e;
  }
  STOWAGE_RETURN_IF_ERROR(fsync_dir(vdir));
  if (Status rm = remove_tree(staging); !rm.is_ok()) {
    log_.warn("old data of a restored volume not fully deleted", {{"volume", v.name}, {"error", rm.message()}});
  }
  {
    std::lock_guard lk(v.mu);
    v.last_restore = {{"snapshot", id.hex()}, {"files", r->files}, {"blobs_fetched", r->blobs_fetched},
                      {"blobs_reused", r->blobs_reused}, {"bytes_reused", r->bytes_reused},
                      {"bytes_written", r->bytes_written}};
  }
  log_.info("volume restored", {{"volume", v.name}, {"snapshot", id.hex()}, {"files", std::to_string(r->files)},
                                {"blobs_fetched", std::to_string(r->blobs_fetched)},
                                {"blobs_reused", std::to_string(r->blobs_reused)},
                                {"bytes_reused", std::to_string(r->bytes_reused)}});
  return Status::ok();
}

Status BackupAgent::wait_restored(Vol& v, const Hash256& id, int64_t wait_ns) {
  std::unique_lock lk(v.mu);
  auto done = [&] { return !v.restore_running || (v.synced == id && !v.restore_pending); };
  v.cv.wait_for(lk, time_left(wait_ns), done);
  if (v.synced == id && !v.restore_pending) return Status::ok();
  if (!v.restore_running) {
    return Status::unavailable("volume '" + v.name + "' could not be restored from snapshot " + id.hex().substr(0, 12) +
                               ": " + v.restore_error);
  }
  return Status::deadline_exceeded(
      "volume '" + v.name + "' is still being restored from snapshot " + id.hex().substr(0, 12) + " (" +
      mib(v.progress.bytes_written) + " of " + mib(v.progress.bytes_total) +
      "); the restore goes on in the background: retry the mount (docker start) in a while");
}

void BackupAgent::before_unmount(const std::string& name) {
  // Counted after the volume manager dropped the mount, a final backup could
  // see the volume unmounted and the count unchanged in between, and release
  // the lease on a snapshot older than the container's last writes.
  if (!volumes_.get(name, false).is_ok()) return;
  auto v = vol(name);
  std::lock_guard lk(v->mu);
  ++v->unmounts;
}

void BackupAgent::after_unmount(const std::string& name) {
  auto info = volumes_.get(name, false);
  if (!info.is_ok() || !info->record.mount_ids.empty() || !enabled(name)) return;
  auto v = vol(name);
  {
    std::lock_guard lk(v->mu);
    if (!v->lease) {
      // Held when the daemon stopped and not taken again yet: the renewal
      // loop runs the final backup once it holds the lease.
      if (v->lease_held && v->fenced.empty()) v->final_pending = true;
      return;
    }
    v->final_pending = true;
    if (v->final_running) return;  // it sees the count change and backs up again
    v->final_running = true;
  }
  spawn([this, name] { final_backup(name); });
}

void BackupAgent::final_backup(const std::string& name) {
  auto v = vol(name);
  while (true) {
    uint64_t unmounts = 0;
    {
      std::lock_guard lk(v->mu);
      unmounts = v->unmounts;
    }
    Status st = backup_volume(name, "final");
    std::lock_guard ll(v->lease_mu);
    auto info = volumes_.get(name, false);
    bool mounted = info.is_ok() && !info->record.mount_ids.empty();
    bool unmounted_meanwhile = false, unrestored = false;
    {
      std::lock_guard lk(v->mu);
      mounted = mounted || v->mounting > 0;
      unmounted_meanwhile = v->unmounts != unmounts;
      // A Mount that took the lease and then died or failed before its
      // restore was done (a daemon restart): no container used this copy
      // since, and what it held before is superseded by the newer snapshot.
      unrestored = !st.is_ok() && v->restore_pending && !v->restore_running && v->fenced.empty();
    }
    if (unrestored && !mounted && !unmounted_meanwhile) {
      log_.warn("final backup not needed: the local copy was never restored to the newest snapshot; releasing the lease",
                {{"volume", name}, {"why", st.message()}});
      // Taken again first when a restart lost it, so that it is released now
      // rather than left to run out (nothing is taken while another host holds it).
      st = hold_lease(*v, false);
      if (st.code() == Code::kFailedPrecondition) st = Status::ok();
    }
    // A container that mounted after this backup's snapshot and is gone
    // again wrote what the backup lacks: never release the lease on it.
    if (st.is_ok() && !mounted && !unmounted_meanwhile) st = release_lease(*v);
    std::lock_guard lk(v->mu);
    if (v->unmounts != unmounts && v->lease && v->fenced.empty()) {
      log_.info("volume unmounted again during its final backup; backing it up again", {{"volume", name}});
      continue;
    }
    v->final_running = false;
    v->cv.notify_all();
    v->final_error = st.is_ok() ? std::string() : st.message();
    if (mounted || st.is_ok() || !v->fenced.empty()) {
      v->final_pending = false;
      return;
    }
    // Keep the lease: releasing it without the final backup would let another
    // host mount older data. The renewal loop tries again.
    log_.error("final backup failed; keeping the lease and retrying", {{"volume", name}, {"error", st.message()}});
    return;
  }
}

Status BackupAgent::before_remove(const std::string& name) {
  auto info = volumes_.get(name, false);
  if (!info.is_ok() || !info->record.mount_ids.empty() || !enabled(name)) return Status::ok();
  const std::string ctx = "remove volume '" + name + "'";
  auto v = vol(name);
  std::string why, older;
  {
    std::unique_lock lk(v->mu);
    if (!v->cv.wait_for(lk, time_left(opts_.call_budget_ns), [&] { return !v->final_running; })) {
      return Status::deadline_exceeded(ctx + ": its final backup after the last Unmount is still running (the "
                                       "container's last writes are not in the backup repository yet); retry "
                                       "the removal in a while");
    }
    if (!v->final_pending || !v->fenced.empty()) return Status::ok();
    why = v->final_error;
    older = v->synced ? "snapshot " + v->synced->hex().substr(0, 12) + ", without them" : "none of its data";
  }
  if (why.empty()) {
    const json repo = repository_json();
    why = repo["error"].is_string() ? "the backup repository has not been reached: " + repo["error"].get<std::string>()
                                    : "it has not run yet since stowaged started";
  }
  return Status::failed_precondition(
      ctx + ": the writes made since its last backup are not in the backup repository yet: its final backup "
      "after the last Unmount failed (" + why + ") and is retried every " +
      std::to_string(opts_.renew_interval_ns / 1'000'000'000) + " s. Removing it now would release its lease and "
      "lose them (the next host to mount it would get " + older + "); retry the removal once the repository is "
      "reachable and the backup has run ('stowctl volume inspect " + name + "' shows it), or discard them "
      "deliberately with 'stowctl volume forget-unsynced " + name + "' and remove it then");
}

Result<bool> BackupAgent::forget_unsynced(const std::string& name) {
  STOWAGE_RETURN_IF_ERROR(validate_volume_name(name));
  const std::string ctx = "forget the unsynced writes of volume '" + name + "'";
  STOWAGE_ASSIGN_OR_RETURN(const VolumeInfo info, volumes_.get(name, false));
  if (!enabled(name)) return false;
  auto v = vol(name);
  // Decided under lease_mu, where before_mount() counts a Mount.
  std::unique_lock ll(v->lease_mu, std::defer_lock);
  if (!ll.try_lock_for(time_left(opts_.call_budget_ns))) {
    return Status::deadline_exceeded(ctx + ": out of time waiting for this host's lease work on it (the backup "
                                     "repository is not answering); retry in a while");
  }
  auto now = volumes_.get(name, false);
  {
    std::lock_guard lk(v->mu);
    if (now.is_ok() && (!now->record.mount_ids.empty() || v->mounting > 0)) {
      return Status::failed_precondition(ctx + ": it is mounted; its containers' writes are backed up after "
                                         "their last Unmount");
    }
    if (v->final_running) {
      return Status::unavailable(ctx + ": its final backup is running; wait for it to end ('stowctl volume "
                                 "inspect " + name + "')");
    }
    if (!v->final_pending) return false;
    v->final_pending = false;
  }
  log_.warn("unsynced writes discarded on request: the final backup is not retried and the lease goes",
            {{"volume", name}});
  Status st = connected() ? release_lease(*v) : Status::unavailable("the backup repository has not been reached");
  if (!st.is_ok()) {
    // Renewed no more, it runs out after the lease ttl.
    log_.warn("lease not released; it is no longer renewed and runs out", {{"volume", name}, {"error", st.message()}});
    std::lock_guard lk(v->mu);
    v->lease.reset();
    v->lease_held = false;
    save_state(*v);
  }
  return true;
}

void BackupAgent::after_remove(const std::string& name) {
  auto v = vol(name);
  {
    std::lock_guard ll(v->lease_mu);
    (void)release_lease(*v);
  }
  {
    std::lock_guard lk(v->mu);
    v->removed = true;
  }
  ::unlink((opts_.state_dir + "/" + name + ".json").c_str());
  std::lock_guard lk(mu_);
  vols_.erase(name);
}

Status BackupAgent::backup_volume(const std::string& name, std::string_view reason) {
  STOWAGE_RETURN_IF_ERROR(validate_volume_name(name));
  const std::string ctx = "back up volume '" + name + "'";
  STOWAGE_ASSIGN_OR_RETURN(const VolumeInfo info, volumes_.get(name, false));
  STOWAGE_RETURN_IF_ERROR(need_repository(ctx));
  if (!enabled(name)) return Status::failed_precondition(ctx + ": backups are off for it (backup=off)");
  auto v = vol(name);
  std::lock_guard op(v->op_mu);
  OpCount counted(*v);
  {
    std::lock_guard lk(v->mu);
    if (!v->fenced.empty()) {
      return Status::failed_precondition(ctx + ": this host was fenced (" + v->fenced +
                                         "); it no longer backs the volume up. 'stowctl volume takeover " + name +
                                         "' takes it back");
    }
    if (v->restore_pending) return Status::failed_precondition(ctx + ": it has not been restored from the repository yet");
  }
  const uint64_t unmounts = unmounts_seen(*v);
  STOWAGE_ASSIGN_OR_RETURN(const bool temporary, hold_for_operation(*v, ctx));
  auto release_temporary = [&] {
    counted.end();
    if (temporary) release_unused(*v, unmounts);
  };
  Lease held;
  std::optional<Hash256> synced;
  {
    std::lock_guard lk(v->mu);
    if (!v->lease) return Status::failed_precondition(ctx + ": the lease was lost meanwhile");
    held = *v->lease;
    synced = v->synced;
  }
  auto latest = newest_snapshot(*v);
  if (!latest.is_ok()) {
    release_temporary();
    return latest.status().with_context(ctx);
  }
  if (*latest && *latest != synced) {
    release_temporary();
    return Status::failed_precondition(
        ctx + ": the repository's newest snapshot of it (" + (*latest)->hex().substr(0, 12) +
        ") is not the one this host's copy comes from, so this copy may be older; mount it (which brings it up to "
        "date) or restore a snapshot into it first");
  }
  // A temporary local snapshot is the consistent source. Its files carry the
  // live files' identities where those provably did not change since the
  // copy began, so the next backup skips them (BackupOptions::identity_root).
  const int64_t clock_offset = realtime_minus_monotonic_ns();
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  const int64_t now = static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  const std::string snap = std::string(kTempSnapshotPrefix) + std::to_string(now);
  auto made = volumes_.snapshot_create(name, snap);
  if (!made.is_ok()) {
    release_temporary();
    return made.status().with_context(ctx);
  }
  BackupOptions bo;
  bo.source = parent_dir(info.mountpoint) + "/snapshots/" + snap + "/data";
  bo.name = name;
  bo.hostname = host();
  bo.tags = {std::string(reason)};
  bo.parent = *latest;
  bo.use_parent = latest->has_value();
  bo.lease_generation = held.generation;
  bo.identity_root = info.mountpoint;
  bo.identity_before_ns = now - identity_margin_ns_;
  bo.identity_clock_offset_ns = clock_offset;
  bo.log = [this, name](std::string_view line) { log_.warn("backup", {{"volume", name}, {"detail", std::string(line)}}); };
  bo.before_commit = [&]() -> Status {
    STOWAGE_ASSIGN_OR_RETURN(const LeaseCheck c, lease_->check(held));
    if (c.ours) return Status::ok();
    return Status::failed_precondition("lease lost: volume '" + name + "': " + c.why);
  };
  auto r = run_backup(*repo_, bo);
  if (Status rm = volumes_.snapshot_remove(name, snap); !rm.is_ok()) {
    log_.warn("temporary backup snapshot not removed", {{"volume", name}, {"error", rm.message()}});
  }
  if (!r.is_ok() && is_lease_lost(r.status())) fence(*v, r.status());
  {
    std::lock_guard lk(v->mu);
    v->last.reason = std::string(reason);
    v->last.time_ns = now;
    if (r.is_ok()) {
      v->synced = r->snapshot_id;
      v->synced_generation = held.generation;
      v->last.snapshot = r->snapshot_id.hex();
      v->last.error.clear();
    } else {
      v->last.error = r.status().message();
    }
    save_state(*v);
  }
  release_temporary();
  if (!r.is_ok()) return r.status().with_context(ctx);
  log_.info("volume backed up", {{"volume", name}, {"reason", std::string(reason)},
                                 {"snapshot", r->snapshot_id.hex()},
                                 {"new_bytes", std::to_string(r->manifest.stats.new_bytes)},
                                 {"lease_generation", std::to_string(held.generation)}});
  return Status::ok();
}

Result<std::string> BackupAgent::restore_volume(const std::string& name, const std::string& what) {
  STOWAGE_RETURN_IF_ERROR(validate_volume_name(name));
  const std::string ctx = "restore volume '" + name + "'";
  STOWAGE_ASSIGN_OR_RETURN(const VolumeInfo info, volumes_.get(name, false));
  STOWAGE_RETURN_IF_ERROR(need_repository(ctx));
  if (!info.record.mount_ids.empty()) {
    return Status::failed_precondition(ctx + ": it is mounted by " + std::to_string(info.record.mount_ids.size()) +
                                       " container(s); stop them first");
  }
  STOWAGE_ASSIGN_OR_RETURN(const auto latest, latest_snapshot_of(*repo_, name));
  Hash256 id;
  if (what.empty() || what == "latest") {
    if (!latest) return Status::not_found(ctx + ": the repository has no snapshot of it");
    id = *latest;
  } else {
    STOWAGE_ASSIGN_OR_RETURN(const auto ids, repo_->list_snapshots());
    int matches = 0;
    for (const auto& s : ids) {
      if (s.hex().starts_with(what)) {
        id = s;
        ++matches;
      }
    }
    if (matches == 0) return Status::not_found(ctx + ": no snapshot " + what);
    if (matches > 1) return Status::invalid_argument(ctx + ": snapshot prefix " + what + " is ambiguous");
  }
  auto v = vol(name);
  OpCount counted(*v);
  const uint64_t unmounts = unmounts_seen(*v);
  bool temporary = false;
  if (enabled(name)) {
    STOWAGE_ASSIGN_OR_RETURN(temporary, hold_for_operation(*v, ctx));
  }
  Status st;
  {
    // Marked under lease_mu, where before_mount() counts a Mount: no Mount is
    // under way when the restore starts, and none starts until it is done.
    std::lock_guard ll(v->lease_mu);
    auto now = volumes_.get(name, false);
    std::lock_guard lk(v->mu);
    if (now.is_ok() && (!now->record.mount_ids.empty() || v->mounting > 0)) {
      st = Status::failed_precondition(ctx + ": it is being mounted; stop its containers first");
    } else {
      v->restoring = id.hex();
    }
  }
  if (st.is_ok()) {
    std::lock_guard op(v->op_mu);
    st = restore_into(*v, id);
  }
  {
    std::lock_guard lk(v->mu);
    v->restoring.clear();
    if (st.is_ok()) {
      // The restored data supersedes whatever is newest now: the next backup
      // of this volume descends from it.
      v->synced = latest ? *latest : id;
      v->synced_generation = v->lease ? v->lease->generation : 0;
      v->restore_pending = false;
      save_state(*v);
    }
  }
  counted.end();
  if (temporary) release_unused(*v, unmounts);
  STOWAGE_RETURN_IF_ERROR(st);
  return id.hex();
}

Result<Lease> BackupAgent::takeover(const std::string& name) {
  STOWAGE_RETURN_IF_ERROR(validate_volume_name(name));
  STOWAGE_RETURN_IF_ERROR(need_repository("take over volume '" + name + "'"));
  auto local = volumes_.get(name, false);
  if (!local.is_ok() && local.status().code() == Code::kNotFound) {
    // Create it here (a restore starts if the repository has it).
    STOWAGE_RETURN_IF_ERROR(ensure_local(name));
  } else if (!local.is_ok()) {
    return local.status();
  }
  auto v = vol(name);
  {
    std::lock_guard ll(v->lease_mu);
    STOWAGE_RETURN_IF_ERROR(hold_lease(*v, true).with_context("take over volume '" + name + "'"));
  }
  auto latest = latest_snapshot_of(*repo_, name);
  if (latest.is_ok() && *latest) {
    bool need = false;
    {
      std::lock_guard lk(v->mu);
      need = v->synced != **latest || v->restore_pending;
      if (need) {
        v->restore_pending = true;
        save_state(*v);
      }
    }
    auto info = volumes_.get(name, false);
    if (need && info.is_ok() && info->record.mount_ids.empty()) start_restore(v, **latest);
  }
  std::lock_guard lk(v->mu);
  return *v->lease;
}

json BackupAgent::lease_json(const std::string& name) {
  auto v = vol(name);
  std::lock_guard lk(v->mu);
  if (!v->lease) return nullptr;
  const bool confirmed = mono_ns() - v->renewed_mono_ns < opts_.lease.ttl_ns;
  return lease_to_json(*v->lease, confirmed ? "held" : "unconfirmed");
}

json BackupAgent::last_backup_json(const std::string& name) {
  auto v = vol(name);
  std::lock_guard lk(v->mu);
  if (v->last.time_ns == 0) return nullptr;
  return {{"time", format_rfc3339_ns(v->last.time_ns)},
          {"reason", v->last.reason},
          {"snapshot", v->last.snapshot.empty() ? json(nullptr) : json(v->last.snapshot)},
          {"ok", v->last.error.empty()},
          {"error", v->last.error.empty() ? json(nullptr) : json(v->last.error)}};
}

json BackupAgent::volume_status(const std::string& name) {
  json out = {{"enabled", enabled(name)}, {"host", host()}, {"repository", repository_json()}};
  out["lease"] = lease_json(name);
  out["last_backup"] = last_backup_json(name);
  auto v = vol(name);
  std::lock_guard lk(v->mu);
  out["fenced"] = v->fenced.empty() ? json(nullptr)
                                    : json{{"reason", v->fenced}, {"since", format_rfc3339_ns(v->fenced_ns)}};
  out["synced_snapshot"] = v->synced ? json(v->synced->hex()) : json(nullptr);
  out["final_backup"] = v->final_running ? json("running") : v->final_pending ? json("pending") : json(nullptr);
  out["final_backup_error"] = v->final_error.empty() ? json(nullptr) : json(v->final_error);
  if (v->restore_running || v->restore_pending || !v->restore_error.empty()) {
    out["restore"] = {{"running", v->restore_running},
                      {"snapshot", v->restore_target ? json(v->restore_target->hex()) : json(nullptr)},
                      {"bytes_total", v->progress.bytes_total.load()},
                      {"bytes_written", v->progress.bytes_written.load()},
                      {"error", v->restore_error.empty() ? json(nullptr) : json(v->restore_error)}};
  } else {
    out["restore"] = nullptr;
  }
  out["last_restore"] = v->last_restore;
  return out;
}

}  // namespace stowage
