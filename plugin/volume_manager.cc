#include "volume_manager.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <ctime>
#include <random>

#include "fs_util.h"

namespace stowage {

namespace {

constexpr std::string_view kStagingPrefix = ".staging-";
constexpr std::string_view kTrashPrefix = ".trash-";
// In a volume directory: the volume is held broken, with this file's text as
// its problem, until an operator removes the file (or the directory). Written
// when a damaged journal leaves the volume's state unknown, so that the next
// start, which no longer reads that journal, does not take it for something
// it can decide on (a Create to discard, a ready volume).
constexpr std::string_view kHeldBroken = "held-broken";
// In a volume directory: made by a Create from a snapshot before the clone is
// renamed into place, deleted once the Create is committed. A directory that
// holds it and has no record is a Create that was never acknowledged, however
// much data its clone holds, and is discarded at the next start.
constexpr std::string_view kClonePending = "create-pending";

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

struct VolumeManager::Entry : std::enable_shared_from_this<Entry> {
  enum class State { kCreating, kReady, kBroken, kRemoved };
  // Serialises operations on this volume's data for their whole length:
  // snapshot create/remove/rollback, a clone from it, Mount, Unmount, Remove,
  // release. Taken before `mu`. Get, List, Path and the checkpoint take only
  // `mu`, so a long snapshot copy (minutes on ext4, or a scheduled backup's
  // temporary snapshot) does not hold up Docker's Get and List, which
  // dockerd calls on the plugin's I/O threads, nor other volumes' answers.
  std::mutex busy;
  std::mutex mu;  // guards the fields below; held only briefly by long operations
  State state = State::kCreating;
  // True from the moment create() publishes the entry until it is done with
  // it. Read without `mu` (that is the point); never becomes true again.
  std::atomic<bool> being_created{false};
  // Set when create()'s record is committed (log_commit). A checkpoint skips
  // an entry being created whose record is not: it has nothing to write, and
  // waiting for its lock would wait for a whole snapshot copy.
  std::atomic<bool> create_committed{false};
  VolumeRecord record;
  std::string problem;  // why a kBroken record could not be read
  std::optional<VolumeUsage> usage;
  int64_t usage_at_ns = 0;
  bool usage_queued = false;  // a background measure is queued or running
  bool usage_expired = false;  // `usage` is shown until measured again, but not reused as recent
  uint64_t usage_epoch = 0;    // bumped by expire_usage(): walks begun before do not count
};

VolumeManager::VolumeManager(Options options, VolumeBackend& backend, Logger& log)
    : opts_(std::move(options)), backend_(backend), log_(log), journal_dir_(opts_.state_root + "/journal") {
  if (!opts_.now_unix_ns) opts_.now_unix_ns = system_now_ns;
}

VolumeManager::~VolumeManager() {
  {
    std::lock_guard lock(loop_mu_);
    loop_stop_ = true;
  }
  loop_cv_.notify_all();
  if (loop_.joinable()) loop_.join();
  if (chores_.joinable()) chores_.join();
}

Result<std::unique_ptr<VolumeManager>> VolumeManager::open(Options options, VolumeBackend& backend, Logger& log) {
  if (options.state_root.empty() || options.state_root[0] != '/') {
    return Status::invalid_argument("state root must be an absolute path, got '" + options.state_root + "'");
  }
  std::unique_ptr<VolumeManager> m(new VolumeManager(std::move(options), backend, log));
  STOWAGE_RETURN_IF_ERROR(m->load().with_context("load volumes from " + m->opts_.state_root));
  m->loop_ = std::thread([p = m.get()] { p->checkpoint_loop(); });
  m->chores_ = std::thread([p = m.get()] { p->chores_loop(); });
  return m;
}

std::string VolumeManager::volume_dir(const std::string& name) const {
  return opts_.state_root + "/volumes/" + name;
}

std::string VolumeManager::trash_path(const std::string& name) const {
  return opts_.state_root + "/volumes/" + std::string(kTrashPrefix) + name + "-" + unique_suffix();
}

void VolumeManager::delete_in_background(std::string trash) {
  std::lock_guard lock(loop_mu_);
  trash_.push_back(std::move(trash));
  loop_cv_.notify_all();
}

Status VolumeManager::log_commit(const std::string& name, std::string payload, Durability durability,
                                 bool* appended, std::atomic<bool>* committed_flag) {
  uint64_t size = 0;
  Status committed;
  {
    std::shared_lock jl(journal_mu_);
    committed = journal_->commit(payload, durability, appended);
    if (committed.is_ok()) {
      if (committed_flag) *committed_flag = true;
      std::lock_guard dl(dirty_mu_);
      dirty_.insert(name);
      size = journal_->bytes();
    }
  }
  // A failed flush leaves the journal refusing every commit (what reached the
  // disk is unknown, and a flush is not retried); only a checkpoint, which
  // writes the state afresh and starts a new journal, gets out of it. The
  // background loop makes one, retrying with backoff until the disk takes it.
  if (!committed.is_ok() || size > opts_.checkpoint_bytes) {
    std::lock_guard lock(loop_mu_);
    loop_wanted_ = true;
    loop_cv_.notify_all();
  }
  return committed;
}

// Payloads: 'P' + the full record as JSON, or 'D' + the volume name. (Built
// with append: GCC 12 -O3 warns falsely on `"P" + std::string`.)
Status VolumeManager::log_put(const VolumeRecord& rec, Durability durability, bool* appended,
                              std::atomic<bool>* committed) {
  return log_commit(rec.name, std::string("P").append(volume_record_to_json(rec)), durability, appended, committed);
}

Status VolumeManager::log_delete(const std::string& name) {
  return log_commit(name, std::string("D").append(name), Durability::kDisk);
}

uint64_t VolumeManager::journal_flushes() {
  std::shared_lock jl(journal_mu_);
  return retired_flushes_ + (journal_ ? journal_->flushes() : 0);
}

uint64_t VolumeManager::journal_preallocate() const {
  return opts_.checkpoint_bytes + opts_.checkpoint_bytes / 4;
}

void VolumeManager::checkpoint_loop() {
  using Clock = std::chrono::steady_clock;
  // After a failure the cause (a full disk, say) rarely goes away at once,
  // and every commit past checkpoint_bytes asks again: wait before retrying.
  Clock::time_point not_before{};
  std::unique_lock lock(loop_mu_);
  while (!loop_stop_) {
    if (loop_wanted_ && Clock::now() >= not_before) {
      loop_wanted_ = false;
      lock.unlock();
      Status st = checkpoint();
      if (!st.is_ok()) {
        log_.error("checkpoint failed; will retry",
                   {{"error", st.message()}, {"retry_in_ms", std::to_string(opts_.checkpoint_retry_ns / 1000000)}});
      }
      lock.lock();
      if (!st.is_ok()) {
        loop_wanted_ = true;
        not_before = Clock::now() + std::chrono::nanoseconds(opts_.checkpoint_retry_ns);
      }
      continue;
    }
    if (loop_wanted_) {
      loop_cv_.wait_until(lock, not_before);
    } else {
      loop_cv_.wait(lock);
    }
  }
}

void VolumeManager::chores_loop() {
  std::unique_lock lock(loop_mu_);
  // Measures and deletions take turns: Gets that keep asking for measures
  // must not hold removed volumes' data on the disk, nor a long deletion
  // every measure.
  bool measured_last = false;
  while (!loop_stop_) {
    if (!usage_queue_.empty() && (trash_.empty() || !measured_last)) {
      auto e = std::move(usage_queue_.front());
      usage_queue_.pop_front();
      usage_running_ = true;
      lock.unlock();
      measure_usage(*e, nullptr, true);
      lock.lock();
      usage_running_ = false;
      measured_last = true;
      loop_cv_.notify_all();  // settle_usage() waits for this
      continue;
    }
    measured_last = false;
    if (!trash_.empty()) {
      std::string trash = trash_.front();
      lock.unlock();
      if (Status st = remove_tree(trash); !st.is_ok()) {
        log_.warn("removed volume's data not fully deleted; will retry at next start",
                  {{"dir", trash}, {"error", st.message()}});
      }
      lock.lock();
      trash_.pop_front();
      loop_cv_.notify_all();  // finish_removals() waits for an empty queue
      continue;
    }
    loop_cv_.wait(lock);
  }
}

void VolumeManager::finish_removals() {
  std::unique_lock lock(loop_mu_);
  loop_cv_.wait(lock, [&] { return loop_stop_ || trash_.empty(); });
}

void VolumeManager::settle_usage() {
  std::unique_lock lock(loop_mu_);
  loop_cv_.wait(lock, [&] { return loop_stop_ || (usage_queue_.empty() && !usage_running_); });
}

void VolumeManager::measure_usage(Entry& e, VolumeInfo* info, bool background) {
  std::string name;
  uint64_t epoch = 0;
  {
    std::lock_guard vlock(e.mu);
    name = e.record.name;
    epoch = e.usage_epoch;
  }
  auto u = backend_.usage(volume_dir(name), opts_.usage_max_entries);
  // Stamped with the walk's end, so that a walk longer than the TTL is not
  // stale as it is stored (and queued again by the next Get, and again).
  const int64_t done = opts_.now_unix_ns();
  std::lock_guard vlock(e.mu);
  if (background) e.usage_queued = false;
  if (!u.is_ok()) {
    // Removed meanwhile, most likely; a later call measures again.
    if (e.state == Entry::State::kReady) {
      log_.warn("usage measurement failed", {{"volume", name}, {"error", u.status().message()}});
    }
    return;
  }
  if (e.state != Entry::State::kReady) return;
  if (info) {
    info->usage = *u;
    info->usage_measured_unix_ns = done;
  }
  if (e.usage_epoch != epoch) return;  // a snapshot change since the walk began
  e.usage = *u;
  e.usage_at_ns = done;
  e.usage_expired = false;
}

void VolumeManager::expire_usage(Entry& e) {
  e.usage_expired = true;
  ++e.usage_epoch;
}

Status VolumeManager::checkpoint() {
  std::lock_guard cl(checkpoint_mu_);
  std::set<std::string> names;
  uint64_t current = 0;
  // The next generation is made (and preallocated) before commits are held
  // up: only checkpoints replace journal_, and they run one at a time.
  std::unique_ptr<StateJournal> next;
  {
    std::shared_lock jl(journal_mu_);
    if (journal_->bytes() > 0) {
      STOWAGE_ASSIGN_OR_RETURN(next, StateJournal::create(journal_dir_, journal_->number() + 1, journal_preallocate(),
                                                          opts_.journal_sync));
    }
  }
  {
    std::unique_lock jl(journal_mu_);
    if (next) {
      retired_flushes_ += journal_->flushes();
      journal_ = std::move(next);
    }
    current = journal_->number();
    std::lock_guard dl(dirty_mu_);
    names.swap(dirty_);
  }
  // Older generations hold these names' latest records until each is in its
  // volume.json or in the current generation. If this checkpoint stops early,
  // the names not yet written go back to dirty_ and no generation is deleted.
  std::set<std::string> pending = names;
  auto stop = [&](Status st) {
    std::lock_guard dl(dirty_mu_);
    dirty_.merge(pending);
    return st.with_context("checkpoint");
  };
  for (const auto& name : names) {
    auto e = find(name);
    // Removed (the directory fsync below makes that durable), or made again
    // by a Create that has not committed yet (a Remove's frame put the name
    // here; that Create may be copying a snapshot for minutes, holding `mu`).
    // Generations were swapped above, so a record it commits from now on
    // lands in the current one, which stays.
    if (!e || (e->being_created && !e->create_committed)) {
      pending.erase(name);
      continue;
    }
    std::lock_guard vlock(e->mu);
    if (e->state != Entry::State::kReady) {
      pending.erase(name);
      continue;
    }
    std::string path = volume_dir(name) + "/volume.json";
    Status st = write_file_atomic(path, volume_record_to_json(e->record), 0600);
    if (st.is_ok()) {
      e->problem.clear();  // a kReady volume's only problem is an earlier failure here
    } else {
      // One volume must not hold up every other's checkpoint: its record goes
      // on in the current generation instead (and its name back into dirty_).
      log_.error("volume record could not be saved; kept in the journal, retried at each checkpoint",
                 {{"volume", name}, {"file", path}, {"error", st.message()}});
      e->problem = "record could not be saved to " + path + ": " + st.message() +
                   " (kept in the journal; retried at each checkpoint)";
      if (Status kept = log_put(e->record, Durability::kDisk); !kept.is_ok()) return stop(kept);
    }
    pending.erase(name);
  }
  // Creates and Removes renamed entries in volumes/ without a flush of their own.
  if (Status st = fsync_dir(opts_.state_root + "/volumes"); !st.is_ok()) return stop(st);
  STOWAGE_ASSIGN_OR_RETURN(auto gens, StateJournal::list(journal_dir_));
  for (const auto& g : gens) {
    if (g.number < current && ::unlink(g.path.c_str()) != 0 && errno != ENOENT) {
      return errno_status(errno, "remove old journal " + g.path);
    }
  }
  STOWAGE_RETURN_IF_ERROR(fsync_dir(journal_dir_));
  log_.debug("checkpoint done", {{"records", std::to_string(names.size())}, {"generation", std::to_string(current)}});
  return Status::ok();
}

Status VolumeManager::replay(const std::vector<StateJournal::Generation>& gens) {
  // A name's frames can alternate (Create, Remove, Create of one name), and
  // the directory on disk belongs to whichever came last. So the directories
  // are put in order only after every frame is read: a D frame followed by a
  // P frame must not touch the directory the later Create made.
  std::set<std::string> deleted;  // names whose last frame is a deletion
  for (const auto& g : gens) {
    for (size_t i = 0; i < g.payloads.size(); ++i) {
      const std::string& p = g.payloads[i];
      auto where = [&] { return g.path + ": journal record " + std::to_string(i); };
      if (!p.empty() && p[0] == 'P') {
        auto rec = volume_record_from_json(std::string_view(p).substr(1));
        if (!rec.is_ok()) return rec.status().with_context(where());
        std::string name = rec->name;
        auto& e = entries_[name];
        if (!e) e = std::make_shared<Entry>();
        e->state = Entry::State::kReady;
        e->problem.clear();
        e->record = std::move(rec).value();
        deleted.erase(name);
        dirty_.insert(name);
      } else if (!p.empty() && p[0] == 'D') {
        std::string name = p.substr(1);
        entries_.erase(name);
        deleted.insert(name);
      } else {
        return Status::corruption(where() + " has an unknown type");
      }
    }
  }
  for (const auto& name : deleted) {
    // An acknowledged Remove whose rename to trash did not reach the disk.
    std::string dir = volume_dir(name);
    if (::access(dir.c_str(), F_OK) != 0) continue;
    if (!damaged_journal_.empty()) {
      // What the damaged frame held is unknown (a later Create of this name?):
      // delete nothing in this start.
      auto e = std::make_shared<Entry>();
      e->state = Entry::State::kBroken;
      e->record.name = name;
      e->problem = "the journal says this volume was removed, but the journal is damaged (set aside as " +
                   damaged_journal_ + "); delete " + dir + " by hand if the volume should be gone (" + dir + "/" +
                   std::string(kHeldBroken) + " holds it broken until removed)";
      STOWAGE_RETURN_IF_ERROR(write_file_atomic(dir + "/" + std::string(kHeldBroken), e->problem));
      entries_[name] = std::move(e);
      continue;
    }
    log_.info("finishing acknowledged remove", {{"volume", name}});
    std::string trash = trash_path(name);
    STOWAGE_RETURN_IF_ERROR(rename_durable(dir, trash));
    delete_in_background(std::move(trash));
  }
  for (const auto& name : dirty_) {
    auto it = entries_.find(name);
    if (it == entries_.end() || it->second->state != Entry::State::kReady) continue;
    std::string dir = volume_dir(name);
    if (::access((backend_.data_path(dir)).c_str(), F_OK) == 0) continue;
    // An acknowledged Create whose directories never reached the disk: no
    // data can have been stored in it, so make it again, empty.
    log_.warn("recreating volume directory lost in a crash", {{"volume", name}});
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return errno_status(errno, "mkdir " + dir);
    STOWAGE_RETURN_IF_ERROR(backend_.provision(dir, it->second->record.options));
  }
  return Status::ok();
}

Status VolumeManager::load() {
  std::string vols = opts_.state_root + "/volumes";
  STOWAGE_RETURN_IF_ERROR(make_dirs(vols));
  STOWAGE_RETURN_IF_ERROR(make_dirs(journal_dir_));
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

  std::vector<std::string> unrecorded;  // directories without volume.json
  for (const auto& n : names) {
    std::string dir = vols + "/" + n;
    if (n.starts_with(kStagingPrefix)) {
      // A Create that never returned: nothing was acknowledged, discard it.
      // What cannot be deleted now is left for the next start: it must not
      // keep stowaged from starting.
      log_.info("discarding interrupted create", {{"dir", dir}});
      if (Status st = remove_tree(dir); !st.is_ok()) {
        log_.warn("could not delete; will retry at next start", {{"dir", dir}, {"error", st.message()}});
      }
      continue;
    }
    if (n.starts_with(kTrashPrefix)) {
      // An acknowledged Remove (journaled before the directory is moved
      // aside): finished by the background thread, so that a large or
      // undeletable tree neither delays nor stops the start.
      log_.info("finishing interrupted remove", {{"dir", dir}});
      delete_in_background(dir);
      continue;
    }
    if (n.starts_with(".")) continue;  // not ours: leave it alone
    if (Status st = validate_volume_name(n); !st.is_ok()) {
      // lost+found, a hand-made copy: no volume can have this name.
      log_.warn("not a volume directory; leaving it alone", {{"dir", dir}, {"reason", st.message()}});
      continue;
    }

    auto e = std::make_shared<Entry>();
    e->record.name = n;
    if (auto held = read_small_file(dir + "/" + std::string(kHeldBroken)); held.is_ok()) {
      e->state = Entry::State::kBroken;
      e->problem = *held;
      log_.warn("volume held broken by an earlier start", {{"volume", n}, {"problem", e->problem}});
      entries_[n] = std::move(e);
      continue;
    }
    auto data = read_small_file(dir + "/volume.json");
    Result<VolumeRecord> rec = data.is_ok() ? volume_record_from_json(*data) : Result<VolumeRecord>(data.status());
    if (!data.is_ok() && data.status().code() == Code::kNotFound) {
      // Either created since the last checkpoint (the journal has its record)
      // or a Create that crashed before its commit; decided after replay.
      e->state = Entry::State::kBroken;
      e->problem = "volume.json is missing";
      unrecorded.push_back(n);
    } else if (!rec.is_ok()) {
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
    }
    entries_[n] = std::move(e);
  }

  // The journal holds every change acknowledged since the last checkpoint.
  STOWAGE_ASSIGN_OR_RETURN(auto gens, StateJournal::read_all(journal_dir_));
  uint64_t next_gen = 1;
  size_t replayed = 0;
  std::vector<std::pair<std::string, std::string>> set_aside;  // damaged generations: path, new name
  for (const auto& g : gens) {
    if (!g.damaged.empty()) {
      // Not a crash: frames after the bad one check out. Replay what checks
      // out, keep every directory, and keep the file for an operator.
      std::string aside = g.path + ".damaged-" + unique_suffix();
      log_.error("journal damaged: a frame in the middle does not check out; replaying the others, deleting no "
                 "volume directory, and keeping the file",
                 {{"file", g.path}, {"offset", std::to_string(g.damaged.front())},
                  {"damaged_frames", std::to_string(g.damaged.size())}, {"kept_as", aside}});
      damaged_journal_ += (damaged_journal_.empty() ? "" : ", ") + aside;
      set_aside.emplace_back(g.path, std::move(aside));
    } else if (g.torn_tail) {
      log_.info("journal ends in an unacknowledged partial record", {{"file", g.path}});
    }
    replayed += g.payloads.size();
    next_gen = g.number + 1;
  }
  STOWAGE_RETURN_IF_ERROR(replay(gens));

  for (const auto& n : unrecorded) {
    auto it = entries_.find(n);
    if (it == entries_.end() || it->second->state == Entry::State::kReady) continue;  // the journal had it
    if (!damaged_journal_.empty()) {
      it->second->problem = "volume.json is missing and the journal, which may hold its record, is damaged (set "
                            "aside as " + damaged_journal_ + "); delete " + volume_dir(n) +
                            " by hand if the volume should be gone (" + volume_dir(n) + "/" + std::string(kHeldBroken) +
                            " holds it broken until removed)";
      STOWAGE_RETURN_IF_ERROR(
          write_file_atomic(volume_dir(n) + "/" + std::string(kHeldBroken), it->second->problem));
      // Now the operator's to decide: once held-broken goes, the marker must
      // not make the next start discard what may be an acknowledged clone.
      if (::unlink((volume_dir(n) + "/" + std::string(kClonePending)).c_str()) == 0) {
        STOWAGE_RETURN_IF_ERROR(fsync_dir(volume_dir(n)));
      }
      log_.warn("directory without a volume record kept: the journal is damaged", {{"dir", volume_dir(n)}});
      continue;
    }
    STOWAGE_ASSIGN_OR_RETURN(bool discarded, discard_unacknowledged(n));
    if (discarded) entries_.erase(it);
  }

  for (auto& [name, e] : entries_) {
    if (e->state != Entry::State::kReady) continue;
    std::string dir = volume_dir(name);
    if (opts_.snapshots) STOWAGE_RETURN_IF_ERROR(opts_.snapshots->recover(dir));
    // Leftover temp files of an interrupted record update, and the marker of
    // a clone whose Create was committed but not finished (the checkpoint at
    // the end of open() makes its deletion durable with the record).
    if (DIR* vd = ::opendir(dir.c_str())) {
      while (dirent* de = ::readdir(vd)) {
        std::string_view f = de->d_name;
        if (f.starts_with(".volume.json.tmp-")) ::unlinkat(::dirfd(vd), de->d_name, 0);
        if (f == kClonePending && ::unlinkat(::dirfd(vd), de->d_name, 0) == 0) dirty_.insert(name);
      }
      ::closedir(vd);
    }
    if (!e->record.mount_ids.empty() && !opts_.boot_id.empty() && e->record.boot_id != opts_.boot_id) {
      log_.info("host rebooted since these mounts: releasing them",
                {{"volume", name}, {"mount_ids", std::to_string(e->record.mount_ids.size())}});
      e->record.mount_ids.clear();
      e->record.boot_id = opts_.boot_id;
      dirty_.insert(name);
    }
  }

  // A copy (a hard link) outside the journal's file pattern, for the operator:
  // the checkpoint below keeps it. The generation itself stays until that
  // checkpoint has written its intact records into volume.json files, so a
  // failure or crash before then replays it again at the next start.
  for (const auto& [from, to] : set_aside) {
    if (::link(from.c_str(), to.c_str()) != 0 && errno != EEXIST) return errno_status(errno, "keep a copy of " + from);
  }
  if (!set_aside.empty()) STOWAGE_RETURN_IF_ERROR(fsync_dir(journal_dir_));
  auto journal = StateJournal::create(journal_dir_, next_gen, journal_preallocate(), opts_.journal_sync);
  if (!journal.is_ok() && journal.status().code() == Code::kResourceExhausted) {
    // A full disk must not keep stowaged from starting: dockerd forgets the
    // volumes whose Get fails. Without preallocated zeros, frames extend the
    // file as space allows; calls that find none are refused.
    log_.warn("disk full: journal generation started without preallocated space",
              {{"error", journal.status().message()}});
    journal = StateJournal::create(journal_dir_, next_gen, 0, opts_.journal_sync);
  }
  STOWAGE_ASSIGN_OR_RETURN(journal_, std::move(journal));
  // Fold what was replayed into volume.json files now, so the journal starts
  // empty. If that fails (disk full), the replayed generations stay until a
  // checkpoint succeeds, so nothing acknowledged is lost: the background
  // thread tries again at once, and logs and backs off as after any failure.
  if (!checkpoint().is_ok()) loop_wanted_ = true;
  log_.info("volumes loaded", {{"count", std::to_string(entries_.size())}, {"root", opts_.state_root},
                               {"journal_records", std::to_string(replayed)}});
  return Status::ok();
}

namespace {

// Entries of directory `path` other than . and .., up to `most`; empty if it
// cannot be read.
std::vector<std::string> dir_entries(const std::string& path, size_t most) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(path.c_str())) {
    while (dirent* de = ::readdir(d)) {
      std::string_view f = de->d_name;
      if (f == "." || f == "..") continue;
      out.emplace_back(f);
      if (out.size() >= most) break;
    }
    ::closedir(d);
  }
  return out;
}

}  // namespace

Result<bool> VolumeManager::discard_unacknowledged(const std::string& name) {
  // Docker never saw this volume, so nothing can have been stored in it
  // through Stowage. Only exactly what a Create makes before its commit is
  // discarded: the data directory, empty, and nothing else; or a clone's data
  // directory beside kClonePending. Data put there by other means is kept:
  // the directory then stays, refused for mounts and removal, for an
  // operator to look at.
  std::string dir = volume_dir(name);
  std::string data = backend_.data_path(dir);
  std::string why;
  struct stat st {};
  auto top = dir_entries(dir, 3);
  const bool clone = ::access((dir + "/" + std::string(kClonePending)).c_str(), F_OK) == 0;
  if (::lstat(data.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    why = data + " is missing";
  } else if (top.size() != (clone ? 2u : 1u)) {
    why = dir + " holds more than a Create makes";
  } else if (!clone && !dir_entries(data, 1).empty()) {
    why = data + " is not empty";
  }
  if (!why.empty()) {
    log_.warn("directory without a volume record is not an interrupted create; leaving it alone",
              {{"dir", dir}, {"reason", why}});
    entries_.find(name)->second->problem = "volume.json is missing and " + why;
    return false;
  }
  log_.info(clone ? "discarding interrupted create from a snapshot" : "discarding interrupted create", {{"dir", dir}});
  std::string trash = trash_path(name);
  STOWAGE_RETURN_IF_ERROR(rename_durable(dir, trash));
  delete_in_background(std::move(trash));  // a clone can be large
  return true;
}

std::shared_ptr<VolumeManager::Entry> VolumeManager::find(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : it->second;
}

namespace {
Status no_such_volume(const std::string& name) { return Status::not_found("no such volume: " + name); }
}  // namespace

VolumeInfo VolumeManager::info_locked(Entry& e, Usage usage, bool* walk_now) {
  VolumeInfo info;
  info.record = e.record;
  info.mountpoint = backend_.data_path(volume_dir(e.record.name));
  info.problem = e.problem;
  if (usage != Usage::kNone && e.state == Entry::State::kReady) {
    const bool stale = !e.usage || e.usage_expired || opts_.now_unix_ns() - e.usage_at_ns > opts_.usage_ttl_ns;
    if (stale && usage == Usage::kFresh && walk_now) *walk_now = true;
    if (stale && usage == Usage::kCached && !e.usage_queued) {
      e.usage_queued = true;
      std::lock_guard lock(loop_mu_);  // after e.mu, never before
      usage_queue_.push_back(e.shared_from_this());
      loop_cv_.notify_all();
    }
    info.usage = e.usage;
    info.usage_measured_unix_ns = e.usage_at_ns;
    if (opts_.snapshots) {
      auto snaps = opts_.snapshots->list(volume_dir(e.record.name));
      if (snaps.is_ok()) info.snapshots = std::move(snaps).value();
    }
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
    candidate->being_created = true;
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
      if (e->record.options == opts) return info_locked(*e, Usage::kNone);
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
    e->being_created = false;
    return st.with_context("create volume '" + name + "'");
  };
  if (!opts.from_volume.empty() && opts.from_volume == name) {
    return fail(Status::invalid_argument("a volume cannot be created from a snapshot of itself"));
  }
  if (opts_.check_create) {
    if (Status st = opts_.check_create(opts); !st.is_ok()) return fail(st);
  }

  std::string staging = opts_.state_root + "/volumes/" + std::string(kStagingPrefix) + name + "-" + unique_suffix();
  if (::mkdir(staging.c_str(), 0700) != 0) return fail(errno_status(errno, "mkdir " + staging));
  VolumeRecord rec;
  rec.name = name;
  rec.driver_kind = backend_.kind();
  rec.options = opts;
  rec.created_unix_ns = opts_.now_unix_ns();
  rec.boot_id = opts_.boot_id;
  // Nothing here is flushed: the journal commit below is the commit point and
  // holds the whole record. Replay recreates directories that did not reach
  // the disk, and the next checkpoint writes volume.json. A directory without
  // volume.json and without a journal record is therefore a Create that was
  // never acknowledged; load() discards it.
  //
  // A clone is the exception: replay could only make it again empty. So its
  // rename reaches the disk before the commit, and until the commit its
  // directory carries kClonePending, which tells the next start that its data
  // is an unacknowledged clone's and not something to keep.
  const bool cloned = !opts.from_volume.empty();
  Status st = cloned ? clone_into(staging, opts) : backend_.provision(staging, opts);
  // Measured now, so that Docker's first Get has a number (it never waits
  // for a walk): one empty directory, or a clone that took longer to copy.
  // Before the commit, while no checkpoint waits for this entry's lock.
  // Containers fill a new volume soon, so the next Get measures again.
  std::optional<VolumeUsage> first_usage;
  const int64_t measured = opts_.now_unix_ns();
  if (st.is_ok()) {
    if (auto u = backend_.usage(staging, opts_.usage_max_entries); u.is_ok()) first_usage = *u;
  }
  if (st.is_ok() && ::rename(staging.c_str(), volume_dir(name).c_str()) != 0) {
    st = errno == ENOTEMPTY || errno == EEXIST
             ? Status::already_exists("directory " + volume_dir(name) + " exists but is not a loaded volume")
             : errno_status(errno, "rename " + staging);
  }
  if (st.is_ok() && cloned) {
    st = fsync_dir(opts_.state_root + "/volumes");
    if (!st.is_ok() && ::rename(volume_dir(name).c_str(), staging.c_str()) != 0) {
      log_.error("could not undo unjournaled create", {{"volume", name}, {"error", std::strerror(errno)}});
    }
  }
  if (st.is_ok()) {
    bool appended = false;
    st = log_put(rec, Durability::kDisk, &appended, &e->create_committed);
    if (!st.is_ok() && cloned && appended) {
      // The record was written but not flushed: it may yet reach the disk and
      // be replayed, which must find the clone, not make the volume again
      // empty. So the clone stays, with its marker, and the next start decides
      // (a volume if the record is there, else discarded); the name is taken
      // until then.
      log_.error("create from a snapshot failed after its record was written; its directory stays until the next "
                 "start decides",
                 {{"volume", name}, {"dir", volume_dir(name)}, {"error", st.message()}});
      return fail(st.with_context("the record may have reached the disk: restart stowaged to settle it"));
    }
    if (!st.is_ok()) {
      // Not acknowledged: take the volume away again.
      if (::rename(volume_dir(name).c_str(), staging.c_str()) != 0) {
        log_.error("could not undo unjournaled create", {{"volume", name}, {"error", std::strerror(errno)}});
      }
    }
  }
  if (!st.is_ok()) {
    (void)remove_tree(staging);
    return fail(st);
  }
  if (cloned && ::unlink((volume_dir(name) + "/" + std::string(kClonePending)).c_str()) != 0) {
    // Harmless while the record exists (the journal now, volume.json after
    // the next checkpoint), but it would let a start that finds neither
    // discard the clone; say so.
    log_.warn("could not delete the pending-create marker of a committed clone; delete it by hand",
              {{"volume", name}, {"path", volume_dir(name) + "/" + std::string(kClonePending)},
               {"error", std::strerror(errno)}});
  }
  e->usage = first_usage;
  e->usage_at_ns = measured;
  e->usage_expired = true;
  e->record = std::move(rec);
  e->state = Entry::State::kReady;
  e->being_created = false;
  log_.info("volume created", {{"volume", name}, {"kind", backend_.kind()}});
  return info_locked(*e, Usage::kNone);
}

Status VolumeManager::remove(const std::string& name) {
  auto e = find(name);
  if (!e) return no_such_volume(name);
  std::lock_guard busy(e->busy);
  std::lock_guard vlock(e->mu);
  if (e->state == Entry::State::kRemoved || e->state == Entry::State::kCreating) return no_such_volume(name);
  if (e->state == Entry::State::kBroken) {
    // Its mount IDs are unknown: containers may still use the data.
    return refuse_broken(*e, "removed",
                         "so stowaged cannot tell whether containers still use it; repair " + volume_dir(name) +
                             "/volume.json (or restore it from a backup) and restart stowaged, or, if no container "
                             "uses the volume and its data is not needed, delete " + volume_dir(name) +
                             " by hand and restart stowaged");
  }
  if (!e->record.mount_ids.empty()) {
    std::string ids;
    for (const auto& id : e->record.mount_ids) ids += (ids.empty() ? "" : ", ") + id;
    return Status::failed_precondition("volume '" + name + "' is in use by " +
                                       std::to_string(e->record.mount_ids.size()) + " mount(s): " + ids);
  }
  if (opts_.snapshots) {
    auto snaps = opts_.snapshots->list(volume_dir(name));
    if (snaps.is_ok() && !snaps->empty()) {
      return Status::failed_precondition("volume '" + name + "' has " + std::to_string(snaps->size()) +
                                         " snapshot(s); remove them first with 'stowctl snapshot rm " + name +
                                         " SNAPSHOT'");
    }
  }
  std::string trash = trash_path(name);
  // The commit point comes first. A crash before it leaves the volume as it
  // was; after it, the next start finishes the Remove (replay). Moving the
  // directory aside first, a crash between the two brought the volume back
  // empty: its directory was deleted as trash, its record replayed.
  if (Status st = log_delete(name); !st.is_ok()) return st.with_context("remove volume '" + name + "'");
  const bool moved = ::rename(volume_dir(name).c_str(), trash.c_str()) == 0;
  if (!moved) {
    Status failed = errno_status(errno, "rename " + volume_dir(name)).with_context("remove volume '" + name + "'");
    // Not removed after all: journal the volume again. If that fails too,
    // the journal says removed, and the next start finishes the Remove.
    Status undone = log_put(e->record, Durability::kDisk);
    if (undone.is_ok()) return failed;
    log_.error("could not undo a journaled remove; the next start finishes it",
               {{"volume", name}, {"error", undone.message()}});
  }
  e->state = Entry::State::kRemoved;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(name);
    if (it != entries_.end() && it->second == e) entries_.erase(it);
  }
  // The data is deleted by the background thread, after the answer: a big
  // volume's files take long to delete, and the call is already durable.
  if (moved) delete_in_background(std::move(trash));
  log_.info("volume removed", {{"volume", name}});
  return Status::ok();
}

Status VolumeManager::refuse_broken(const Entry& e, std::string_view verb, const std::string& advice) const {
  return Status::failed_precondition("volume '" + e.record.name + "' cannot be " + std::string(verb) +
                                     ": its record is unreadable (" + e.problem + "), " + advice);
}

Result<std::string> VolumeManager::mount(const std::string& name, const std::string& mount_id) {
  if (mount_id.empty()) return Status::invalid_argument("mount of volume '" + name + "' needs a non-empty ID");
  auto e = find(name);
  if (!e) return no_such_volume(name);
  std::lock_guard busy(e->busy);
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
  STOWAGE_RETURN_IF_ERROR(log_put(next, Durability::kProcess).with_context("mount volume '" + name + "'"));
  e->record = std::move(next);
  log_.info("volume mounted", {{"volume", name}, {"id", mount_id},
                               {"mounts", std::to_string(e->record.mount_ids.size())}});
  return mp;
}

Status VolumeManager::unmount(const std::string& name, const std::string& mount_id) {
  auto e = find(name);
  if (!e) return no_such_volume(name);
  std::lock_guard busy(e->busy);
  std::lock_guard vlock(e->mu);
  if (e->state != Entry::State::kReady && e->state != Entry::State::kBroken) return no_such_volume(name);
  if (!e->record.mount_ids.contains(mount_id)) {
    log_.info("unmount of an ID that holds no mount; nothing to do", {{"volume", name}, {"id", mount_id}});
    return Status::ok();
  }
  VolumeRecord next = e->record;
  next.mount_ids.erase(mount_id);
  STOWAGE_RETURN_IF_ERROR(log_put(next, Durability::kProcess).with_context("unmount volume '" + name + "'"));
  e->record = std::move(next);
  log_.info("volume unmounted", {{"volume", name}, {"id", mount_id},
                                 {"mounts", std::to_string(e->record.mount_ids.size())}});
  return Status::ok();
}

Result<std::vector<std::string>> VolumeManager::release_all(const std::string& name) {
  auto e = find(name);
  if (!e) return no_such_volume(name);
  std::lock_guard busy(e->busy);
  std::lock_guard vlock(e->mu);
  if (e->state == Entry::State::kBroken) {
    return refuse_broken(*e, "released", "so its mount IDs are unknown; repair " + volume_dir(name) +
                                             "/volume.json (or restore it from a backup) and restart stowaged");
  }
  if (e->state != Entry::State::kReady) return no_such_volume(name);
  std::vector<std::string> ids(e->record.mount_ids.begin(), e->record.mount_ids.end());
  if (ids.empty()) return ids;
  VolumeRecord next = e->record;
  next.mount_ids.clear();
  STOWAGE_RETURN_IF_ERROR(log_put(next, Durability::kProcess).with_context("release mounts of volume '" + name + "'"));
  e->record = std::move(next);
  log_.warn("mount IDs released by operator", {{"volume", name}, {"count", std::to_string(ids.size())}});
  return ids;
}

Result<std::string> VolumeManager::path(const std::string& name) {
  auto e = find(name);
  if (!e || e->being_created) return no_such_volume(name);
  std::lock_guard vlock(e->mu);
  if (e->state != Entry::State::kReady && e->state != Entry::State::kBroken) return no_such_volume(name);
  return backend_.data_path(volume_dir(name));
}

Status VolumeManager::need_snapshots() const {
  return opts_.snapshots ? Status::ok() : Status::unimplemented("snapshots are not available in this daemon");
}

Result<std::pair<std::shared_ptr<VolumeManager::Entry>, std::unique_lock<std::mutex>>> VolumeManager::ready_entry(
    const std::string& name) {
  STOWAGE_RETURN_IF_ERROR(validate_volume_name(name));
  auto e = find(name);
  // A volume being created is not there yet, and its creator may be waiting
  // for us: a from-snapshot Create calls this while it holds its own new
  // entry, so two crossed ones (va from vb@s, vb from va@s) would wait for
  // each other forever.
  if (!e || e->being_created) return no_such_volume(name);
  std::unique_lock busy(e->busy);
  STOWAGE_RETURN_IF_ERROR(check_ready(*e, name));
  return std::make_pair(std::move(e), std::move(busy));
}

Status VolumeManager::check_ready(Entry& e, const std::string& name) {
  std::lock_guard vlock(e.mu);
  if (e.state == Entry::State::kBroken) {
    return Status::failed_precondition("volume '" + name + "' has an unreadable record: " + e.problem);
  }
  if (e.state != Entry::State::kReady) return no_such_volume(name);
  return Status::ok();
}

Status VolumeManager::clone_into(const std::string& staging, const VolumeOptions& opts) {
  STOWAGE_RETURN_IF_ERROR(need_snapshots());
  STOWAGE_ASSIGN_OR_RETURN(auto src, ready_entry(opts.from_volume));
  STOWAGE_RETURN_IF_ERROR(write_file_atomic(staging + "/" + std::string(kClonePending),
                                     "a Create from " + opts.from_volume + "@" + opts.from_snapshot +
                                         " that has not been acknowledged yet\n"));
  std::string data = backend_.data_path(staging);
  auto copied = opts_.snapshots->clone(volume_dir(opts.from_volume), opts.from_snapshot, data);
  if (!copied.is_ok()) {
    return copied.status().with_context("from snapshot " + opts.from_volume + "@" + opts.from_snapshot);
  }
  // Explicit options win over what the snapshot had.
  if ((opts.uid || opts.gid) && ::chown(data.c_str(), opts.uid ? *opts.uid : static_cast<uid_t>(-1),
                                        opts.gid ? *opts.gid : static_cast<gid_t>(-1)) != 0) {
    return errno_status(errno, "chown " + data);
  }
  if (opts.mode && ::chmod(data.c_str(), *opts.mode) != 0) return errno_status(errno, "chmod " + data);
  // The copy must be on the disk before the Create is acknowledged (a crash
  // would leave the new volume's files empty); on a full thin-provisioned
  // device only this shows that it is not.
  STOWAGE_RETURN_IF_ERROR(sync_filesystem(data));
  log_.info("volume cloned from snapshot", {{"source", opts.from_volume + "@" + opts.from_snapshot},
                                            {"strategy", std::string(strategy_name(copied->strategy))},
                                            {"bytes", std::to_string(copied->bytes)}});
  return Status::ok();
}

namespace {
std::string timestamp_name(int64_t unix_ns) {
  time_t secs = static_cast<time_t>(unix_ns / 1000000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}
}  // namespace

Result<SnapshotInfo> VolumeManager::snapshot_create(const std::string& volume, std::string name) {
  STOWAGE_RETURN_IF_ERROR(need_snapshots());
  if (name.empty()) name = timestamp_name(opts_.now_unix_ns());
  STOWAGE_RETURN_IF_ERROR(validate_volume_name(name).with_context("snapshot"));
  STOWAGE_ASSIGN_OR_RETURN(auto held, ready_entry(volume));
  Entry& e = *held.first;
  Quiesce quiesce;
  {
    std::lock_guard vlock(e.mu);
    quiesce = e.record.options.quiesce;
  }
  std::vector<std::string> paused;
  if (quiesce == Quiesce::kPause) {
    if (!opts_.quiescer) return Status::unimplemented("quiesce=pause needs the Docker API, which is not configured");
    STOWAGE_ASSIGN_OR_RETURN(paused, opts_.quiescer->pause(volume));
  }
  auto snap = opts_.snapshots->create(volume_dir(volume), backend_.data_path(volume_dir(volume)), name,
                                      opts_.now_unix_ns());
  // Unpause whatever happened: a container must never stay frozen because of us.
  Status unpaused = paused.empty() ? Status::ok() : opts_.quiescer->unpause(paused);
  if (!snap.is_ok()) return snap.status().with_context("snapshot volume '" + volume + "'");
  if (!unpaused.is_ok()) {
    return unpaused.with_context("snapshot '" + name + "' of volume '" + volume +
                                 "' was made, but unpausing its containers failed");
  }
  {
    std::lock_guard vlock(e.mu);
    expire_usage(e);
  }
  log_.info("snapshot created", {{"volume", volume}, {"snapshot", name}, {"strategy", snap->strategy},
                                 {"bytes", std::to_string(snap->bytes)},
                                 {"paused", std::to_string(paused.size())}});
  return snap;
}

Result<std::vector<SnapshotInfo>> VolumeManager::snapshot_list(const std::string& volume) {
  STOWAGE_RETURN_IF_ERROR(need_snapshots());
  // Without `busy`: a snapshot appears and goes by a rename, so a listing
  // never sees half of one, and it must not wait for a snapshot's copy
  // (metrics scrapes and `snapshot ls` answered on the I/O threads piled up
  // behind it until Docker's Get and Path were not answered either).
  STOWAGE_RETURN_IF_ERROR(validate_volume_name(volume));
  auto e = find(volume);
  if (!e || e->being_created) return no_such_volume(volume);
  STOWAGE_RETURN_IF_ERROR(check_ready(*e, volume));
  return opts_.snapshots->list(volume_dir(volume));
}

Status VolumeManager::snapshot_remove(const std::string& volume, const std::string& name) {
  STOWAGE_RETURN_IF_ERROR(need_snapshots());
  STOWAGE_RETURN_IF_ERROR(validate_volume_name(name).with_context("snapshot"));
  STOWAGE_ASSIGN_OR_RETURN(auto held, ready_entry(volume));
  STOWAGE_RETURN_IF_ERROR(opts_.snapshots->remove(volume_dir(volume), name));
  std::lock_guard vlock(held.first->mu);
  expire_usage(*held.first);
  log_.info("snapshot removed", {{"volume", volume}, {"snapshot", name}});
  return Status::ok();
}

Status VolumeManager::snapshot_rollback(const std::string& volume, const std::string& name, bool force) {
  STOWAGE_RETURN_IF_ERROR(need_snapshots());
  STOWAGE_RETURN_IF_ERROR(validate_volume_name(name).with_context("snapshot"));
  STOWAGE_ASSIGN_OR_RETURN(auto held, ready_entry(volume));
  Entry& e = *held.first;
  size_t mounts = 0;
  {
    std::lock_guard vlock(e.mu);
    mounts = e.record.mount_ids.size();
  }
  if (mounts > 0 && !force) {
    return Status::failed_precondition("volume '" + volume + "' is mounted by " + std::to_string(mounts) +
                                       " container(s); stop them first, or use --force (running containers keep "
                                       "the old data until they restart)");
  }
  STOWAGE_RETURN_IF_ERROR(opts_.snapshots->rollback(volume_dir(volume), backend_.data_path(volume_dir(volume)), name)
                              .with_context("roll back volume '" + volume + "'"));
  {
    std::lock_guard vlock(e.mu);
    expire_usage(e);
  }
  log_.warn("volume rolled back", {{"volume", volume}, {"snapshot", name}, {"forced", force ? "true" : "false"}});
  return Status::ok();
}

std::optional<VolumeInfo> VolumeManager::info_of(Entry& e, Usage usage) {
  std::optional<VolumeInfo> info;
  bool walk = false;
  {
    std::lock_guard vlock(e.mu);
    if (e.state != Entry::State::kReady && e.state != Entry::State::kBroken) return info;
    info = info_locked(e, usage, &walk);
  }
  if (walk) measure_usage(e, &*info, false);
  return info;
}

Result<VolumeInfo> VolumeManager::get(const std::string& name, Usage usage) {
  auto e = find(name);
  if (!e || e->being_created) return no_such_volume(name);
  auto info = info_of(*e, usage);
  if (!info) return no_such_volume(name);
  return *std::move(info);
}

std::vector<VolumeInfo> VolumeManager::list(Usage usage) {
  std::vector<std::shared_ptr<Entry>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [_, e] : entries_) all.push_back(e);
  }
  std::vector<VolumeInfo> out;
  for (auto& e : all) {
    // Not listed anyway; and a Create from a big snapshot holds its lock for long.
    if (e->being_created) continue;
    if (auto info = info_of(*e, usage)) out.push_back(*std::move(info));
  }
  return out;
}

}  // namespace stowage
