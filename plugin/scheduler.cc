#include "scheduler.h"

#include <algorithm>
#include <chrono>
#include <exception>

#include <nlohmann/json.hpp>

#include "fs_util.h"
#include "stowage/volume.h"

namespace stowage {

namespace {

using json = nlohmann::json;

class SystemSchedulerClock : public SchedulerClock {
 public:
  int64_t now_ns() const override { return system_clock()->now_ns(); }
  void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, int64_t deadline_ns) override {
    cv.wait_until(lock, std::chrono::system_clock::time_point(
                            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                std::chrono::nanoseconds(deadline_ns))));
  }
};

// Runs a callback; an exception escaping it becomes a status.
template <typename F>
Status call_guarded(std::string_view what, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    return Status::internal(std::string(what) + " threw: " + e.what());
  } catch (...) {
    return Status::internal(std::string(what) + " threw a non-standard exception");
  }
}

}  // namespace

std::shared_ptr<SchedulerClock> system_scheduler_clock() { return std::make_shared<SystemSchedulerClock>(); }

int64_t ManualSchedulerClock::now_ns() const {
  std::lock_guard l(mu_);
  return now_;
}
void ManualSchedulerClock::wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, int64_t) {
  cv.wait(lock);
}
void ManualSchedulerClock::set(int64_t now_ns) {
  std::lock_guard l(mu_);
  now_ = now_ns;
}
void ManualSchedulerClock::advance(int64_t delta_ns) {
  std::lock_guard l(mu_);
  now_ += delta_ns;
}

// What status() shows (the schedule and keep texts as given, run times and
// counters) plus what only the scheduler needs.
struct Scheduler::Entry : ScheduleStatus {
  Schedule parsed_schedule;
  ForgetPolicy keep_policy;
  int64_t next_slot_ns = 0;  // the slot next_run_ns belongs to (before jitter)
  bool catch_up = false;  // the next run makes up for a missed or interrupted one
  bool removed = false;   // volume gone while a run was going: drop when it ends
};

std::string schedules_to_json(const std::vector<ScheduleStatus>& rows) {
  auto time_or_null = [](int64_t ns) { return ns == 0 ? json(nullptr) : json(format_rfc3339(ns)); };
  json arr = json::array();
  for (const auto& r : rows) {
    arr.push_back({{"volume", r.volume},
                   {"schedule", r.schedule},
                   {"keep", r.keep},
                   {"next_run", time_or_null(r.next_run_ns)},
                   {"last_start", time_or_null(r.last_start_ns)},
                   {"last_end", time_or_null(r.last_end_ns)},
                   {"last_result", r.last_result.empty() ? json(nullptr) : json(r.last_result)},
                   {"last_error", r.last_error},
                   {"running", r.running},
                   {"due", r.due},
                   {"runs", r.runs},
                   {"failures", r.failures},
                   {"skipped", r.skipped}});
  }
  return json{{"schedules", std::move(arr)}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

Scheduler::Scheduler(Options opts, Logger& log) : opts_(std::move(opts)), log_(log) {
  if (!opts_.clock) opts_.clock = system_scheduler_clock();
  if (opts_.max_concurrent == 0) opts_.max_concurrent = 1;
  if (opts_.max_sleep_ns <= 0) opts_.max_sleep_ns = int64_t{30} * 1'000'000'000;
  rng_.seed(opts_.seed ? *opts_.seed : std::random_device{}());
}

Result<std::unique_ptr<Scheduler>> Scheduler::open(Options opts, Logger& log) {
  if (opts.state_path.empty()) return Status::invalid_argument("scheduler: no state path");
  if (!opts.volumes || !opts.backup) return Status::invalid_argument("scheduler: volumes and backup callbacks are required");
  std::unique_ptr<Scheduler> s(new Scheduler(std::move(opts), log));
  STOWAGE_RETURN_IF_ERROR(s->load());
  return s;
}

Scheduler::~Scheduler() { stop(); }

Status Scheduler::load() {
  auto data = read_small_file(opts_.state_path);
  if (!data.is_ok()) {
    if (data.status().code() == Code::kNotFound) return Status::ok();
    return data.status().with_context("read schedule state");
  }
  try {
    json j = json::parse(*data);
    if (!j.is_object() || j.value("format", 0) != 1 || !j["volumes"].is_object()) {
      throw std::runtime_error("not a format-1 schedule state");
    }
    for (const auto& [name, v] : j["volumes"].items()) {
      auto e = std::make_unique<Entry>();
      e->volume = name;
      e->schedule = v.at("schedule").get<std::string>();
      e->keep = v.value("keep", "");
      e->next_slot_ns = v.value("next_slot_ns", int64_t{0});
      e->next_run_ns = v.value("next_run_ns", int64_t{0});
      e->last_start_ns = v.value("last_start_ns", int64_t{0});
      e->last_end_ns = v.value("last_end_ns", int64_t{0});
      e->last_result = v.value("last_result", "");
      e->last_error = v.value("last_error", "");
      e->runs = v.value("runs", uint64_t{0});
      e->failures = v.value("failures", uint64_t{0});
      e->skipped = v.value("skipped", uint64_t{0});
      if (v.value("running", false)) {
        // The daemon stopped (or crashed) during this run: its backup may or
        // may not have been stored, so it runs again.
        e->last_result = "interrupted";
        e->last_error = "stowaged stopped while this backup ran";
        e->last_end_ns = 0;
        e->catch_up = true;
      }
      loaded_[name] = std::move(e);
    }
  } catch (const std::exception& e) {
    // Only timing state is lost: every schedule starts afresh from now.
    log_.error("schedule state unreadable; starting every schedule afresh",
               {{"file", opts_.state_path}, {"error", e.what()}});
    loaded_.clear();
  }
  return Status::ok();
}

void Scheduler::save_locked() {
  json vols = json::object();
  for (const auto& [name, e] : entries_) {
    if (e->removed) continue;
    vols[name] = {{"schedule", e->schedule}, {"keep", e->keep},
                  {"next_slot_ns", e->next_slot_ns}, {"next_run_ns", e->next_run_ns},
                  {"last_start_ns", e->last_start_ns}, {"last_end_ns", e->last_end_ns},
                  {"last_result", e->last_result}, {"last_error", e->last_error},
                  {"running", e->running}, {"runs", e->runs}, {"failures", e->failures}, {"skipped", e->skipped}};
  }
  std::string text = json{{"format", 1}, {"volumes", std::move(vols)}}.dump(2, ' ', false,
                                                                            json::error_handler_t::replace) + "\n";
  if (Status st = write_file_atomic(opts_.state_path, text, 0600); !st.is_ok()) {
    // The next change writes the whole state again.
    log_.error("could not save schedule state", {{"file", opts_.state_path}, {"error", st.message()}});
  }
}

void Scheduler::schedule_next_locked(Entry& e, int64_t after_ns) {
  std::optional<int64_t> anchor;
  if (e.next_slot_ns != 0) anchor = e.next_slot_ns;
  auto slot = next_slot(e.parsed_schedule, after_ns, anchor);
  if (!slot) {
    e.next_slot_ns = e.next_run_ns = 0;
    return;
  }
  int64_t bound = max_jitter_ns(e.parsed_schedule, *slot);
  int64_t jitter = bound > 0 ? std::uniform_int_distribution<int64_t>(0, bound)(rng_) : 0;
  e.next_slot_ns = *slot;
  e.next_run_ns = *slot + jitter;
}

std::vector<ScheduledVolume> Scheduler::fetch_volumes() {
  std::vector<ScheduledVolume> out;
  Status st = call_guarded("volume list", [&] {
    out = opts_.volumes();
    return Status::ok();
  });
  if (!st.is_ok()) log_.error("scheduler could not list volumes", {{"error", st.message()}});
  return out;
}

void Scheduler::reconcile_locked(const std::vector<ScheduledVolume>& vols, int64_t now) {
  bool changed = false;
  std::map<std::string, const ScheduledVolume*> wanted;
  for (const auto& v : vols) {
    if (!v.backup.empty()) wanted[v.name] = &v;
  }
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = *it->second;
    if (wanted.contains(it->first) || e.removed) {
      ++it;
      continue;
    }
    log_.info("volume gone: schedule removed", {{"volume", it->first}});
    changed = true;
    if (e.running) {
      e.removed = true;  // run() drops it when the backup returns
      ++it;
    } else {
      it = entries_.erase(it);
    }
  }
  for (const auto& [name, v] : wanted) {
    auto it = entries_.find(name);
    if (it != entries_.end() && !it->second->removed && it->second->schedule == v->backup &&
        it->second->keep == v->keep) {
      continue;
    }
    auto schedule = parse_schedule(v->backup);
    auto keep = v->keep.empty() ? Result<ForgetPolicy>(ForgetPolicy{}) : parse_keep_policy(v->keep);
    if (!schedule.is_ok() || !keep.is_ok()) {
      // Create validated both; only a hand-edited record gets here.
      log_.error("volume has an invalid backup policy; not scheduled",
                 {{"volume", name},
                  {"error", (schedule.is_ok() ? keep.status() : schedule.status()).message()}});
      continue;
    }
    changed = true;
    if (it != entries_.end() && !it->second->removed) {
      // Same name, other policy (the volume was re-created): a new schedule,
      // the run history stays.
      Entry& e = *it->second;
      e.schedule = v->backup;
      e.keep = v->keep;
      e.parsed_schedule = std::move(schedule).value();
      e.keep_policy = std::move(keep).value();
      e.next_slot_ns = 0;
      schedule_next_locked(e, now);
      continue;
    }
    std::unique_ptr<Entry> e;
    auto old = loaded_.find(name);
    if (old != loaded_.end() && old->second->schedule == v->backup) {
      e = std::move(old->second);
      e->parsed_schedule = std::move(schedule).value();
      if (!e->parsed_schedule.off() && (e->catch_up || e->next_run_ns <= now)) {
        // Missed while the daemon was down: one run now, however many slots passed.
        e->catch_up = true;
        e->next_run_ns = now;
        log_.info("backup missed while stowaged was down: running it now", {{"volume", name}});
      }
    } else {
      e = std::make_unique<Entry>();
      e->volume = name;
      e->parsed_schedule = std::move(schedule).value();
      e->schedule = v->backup;
      schedule_next_locked(*e, now);
    }
    e->keep = v->keep;
    e->keep_policy = std::move(keep).value();
    if (it != entries_.end()) {
      it->second->removed = true;  // its run is still going; the new entry takes over the name
      it->second.swap(e);
      // The old entry's run() finds it by pointer below; keep it alive.
      orphans_.push_back(std::move(e));
    } else {
      entries_[name] = std::move(e);
    }
  }
  if (!reconciled_) {
    reconciled_ = true;
    if (!loaded_.empty() || changed) changed = true;
    loaded_.clear();
  }
  if (changed) save_locked();
}

int64_t Scheduler::poll_locked(int64_t now) {
  for (auto id : finished_) {
    auto w = workers_.find(id);
    if (w != workers_.end()) {
      w->second.join();
      workers_.erase(w);
    }
  }
  finished_.clear();

  std::vector<Entry*> due;
  for (auto& [_, e] : entries_) {
    if (!e->removed && !e->parsed_schedule.off() && e->next_run_ns != 0 && e->next_run_ns <= now) {
      due.push_back(e.get());
    }
  }
  std::stable_sort(due.begin(), due.end(), [](Entry* a, Entry* b) { return a->next_run_ns < b->next_run_ns; });
  bool changed = false;
  for (Entry* e : due) {
    if (e->running) {
      ++e->skipped;
      log_.warn("previous backup still running: slot skipped",
                {{"volume", e->volume}, {"slot", format_rfc3339(e->next_slot_ns)}});
      schedule_next_locked(*e, now);
      changed = true;
      continue;
    }
    if (running_ >= opts_.max_concurrent) {
      if (!e->due) log_.info("backup due; waiting for a free place", {{"volume", e->volume}});
      e->due = true;
      continue;
    }
    std::string reason = e->catch_up ? "catch-up" : "scheduled";
    e->due = false;
    e->catch_up = false;
    e->running = true;
    e->last_start_ns = now;
    ++e->runs;
    ++running_;
    schedule_next_locked(*e, now);
    changed = true;
    log_.info("scheduled backup starting", {{"volume", e->volume}, {"reason", reason},
                                            {"next_run", format_rfc3339(e->next_run_ns)}});
    std::thread t([this, e, reason, keep = e->keep_policy] { run(e, reason, keep); });
    workers_.emplace(t.get_id(), std::move(t));
  }
  if (changed) save_locked();

  int64_t wake = now + opts_.max_sleep_ns;
  for (auto& [_, e] : entries_) {
    if (!e->removed && !e->due && e->next_run_ns > now) wake = std::min(wake, e->next_run_ns);
  }
  return wake;
}

void Scheduler::run(Entry* e, std::string reason, ForgetPolicy keep) {
  const std::string volume = e->volume;
  Status st = call_guarded("backup", [&] { return opts_.backup(volume, reason); });
  Status forgot;
  if (st.is_ok() && !keep.empty() && opts_.forget) {
    forgot = call_guarded("forget", [&] { return opts_.forget(volume, keep); });
  }
  std::lock_guard l(mu_);
  e->running = false;
  e->last_end_ns = opts_.clock->now_ns();
  if (st.is_ok() && forgot.is_ok()) {
    e->last_result = "ok";
    e->last_error.clear();
    log_.info("scheduled backup done", {{"volume", volume}, {"reason", reason}});
  } else {
    ++e->failures;
    e->last_result = "failed";
    e->last_error = st.is_ok() ? "backup stored, but applying keep=" + e->keep + " failed: " + forgot.message()
                               : st.message();
    log_.error("scheduled backup failed", {{"volume", volume}, {"reason", reason}, {"error", e->last_error}});
  }
  if (e->removed) {
    auto it = entries_.find(volume);
    if (it != entries_.end() && it->second.get() == e) entries_.erase(it);
    std::erase_if(orphans_, [e](const std::unique_ptr<Entry>& o) { return o.get() == e; });
  }
  --running_;
  dirty_ = true;
  finished_.push_back(std::this_thread::get_id());
  save_locked();
  cv_.notify_all();
  idle_cv_.notify_all();
}

void Scheduler::loop() {
  std::unique_lock l(mu_);
  while (!stop_) {
    const uint64_t gen = poke_;
    dirty_ = false;
    l.unlock();
    auto vols = fetch_volumes();
    l.lock();
    if (stop_) break;
    const int64_t now = opts_.clock->now_ns();
    reconcile_locked(vols, now);
    const int64_t wake = poll_locked(now);
    polled_ = gen;
    idle_cv_.notify_all();
    if (stop_ || poke_ != gen || dirty_) continue;
    opts_.clock->wait_until(l, cv_, wake);
  }
}

void Scheduler::start() {
  std::lock_guard l(mu_);
  if (started_) return;
  started_ = true;
  loop_ = std::thread([this] { loop(); });
}

void Scheduler::stop() {
  {
    std::lock_guard l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  idle_cv_.notify_all();
  if (loop_.joinable()) loop_.join();
  std::map<std::thread::id, std::thread> workers;
  {
    std::lock_guard l(mu_);
    workers.swap(workers_);
  }
  for (auto& [_, t] : workers) t.join();
}

std::vector<ScheduleStatus> Scheduler::list() {
  auto vols = fetch_volumes();
  std::lock_guard l(mu_);
  reconcile_locked(vols, opts_.clock->now_ns());
  cv_.notify_all();  // a new volume may be due before the loop's planned wake-up
  std::vector<ScheduleStatus> out;
  for (const auto& [name, e] : entries_) {
    if (e->removed) continue;
    ScheduleStatus row = *e;  // the shown part of the entry
    row.volume = name;
    out.push_back(std::move(row));
  }
  return out;
}

void Scheduler::sync(bool wait_for_runs) {
  std::unique_lock l(mu_);
  const uint64_t gen = ++poke_;
  cv_.notify_all();
  idle_cv_.wait(l, [&] {
    if (stop_ || !started_) return true;
    if (polled_ < gen) return false;
    if (!wait_for_runs) return true;
    if (running_ > 0 || dirty_) return false;
    return std::none_of(entries_.begin(), entries_.end(), [](const auto& kv) { return kv.second->due; });
  });
}

}  // namespace stowage
