// The backup scheduler: runs each volume's `backup=` schedule (schedule.h)
// on a thread of its own, and after each successful backup applies the
// volume's `keep=` policy. Per-volume state (last run and its result, next
// run) is persisted crash-safely in one file under the state root, so that
//
//   - a slot missed while the daemon was down runs once at start-up (not once
//     per missed slot), and so does a run a crash interrupted;
//   - each run starts at its slot plus a random jitter of at most a tenth of
//     the gap to the following slot and at most 5 minutes, so that many
//     volumes on one schedule do not all start at once;
//   - one volume never has two runs at a time: a slot that comes while the
//     previous run still goes is skipped (and logged);
//   - at most Options::max_concurrent backups run at once daemon-wide; a due
//     volume waits for a free place (FIFO by due time).
//
// Volumes come from a callback polled on every wake-up (at least every
// Options::max_sleep_ns), so created volumes get a schedule and removed ones
// lose theirs without the volume manager knowing about the scheduler.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "logger.h"
#include "schedule.h"
#include "stowage/backup_pipeline.h"
#include "stowage/status.h"
#include "stowage/upkeep.h"

namespace stowage {

// Time as the scheduler sees it. The system one follows CLOCK_REALTIME;
// tests use a manual one whose time moves only when they say so.
class SchedulerClock : public Clock {
 public:
  // Blocks on `cv` (as std::condition_variable::wait does with `lock` held)
  // until it is notified or this clock passes `deadline_ns`. May return
  // early; callers re-check their condition.
  virtual void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, int64_t deadline_ns) = 0;
};
std::shared_ptr<SchedulerClock> system_scheduler_clock();

// A clock for tests: now_ns() is what set()/advance() made it; wait_until()
// waits only for a notification (Scheduler::sync() sends one).
class ManualSchedulerClock : public SchedulerClock {
 public:
  explicit ManualSchedulerClock(int64_t start_ns) : now_(start_ns) {}
  int64_t now_ns() const override;
  void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, int64_t deadline_ns) override;
  void set(int64_t now_ns);
  void advance(int64_t delta_ns);

 private:
  mutable std::mutex mu_;
  int64_t now_;
};

// A volume's backup options as the scheduler needs them (create options
// `backup` and `keep`, already validated).
struct ScheduledVolume {
  std::string name;
  std::string backup;  // schedule text; volumes without one are not scheduled
  std::string keep;    // keep policy text, may be empty (nothing is forgotten)
};

// One row of `stowctl schedule ls`.
struct ScheduleStatus {
  std::string volume, schedule, keep;
  int64_t next_run_ns = 0;    // 0 for backup=off
  int64_t last_start_ns = 0;  // 0 = never ran
  int64_t last_end_ns = 0;
  std::string last_result;    // "", "ok", "failed", "interrupted" (daemon stopped mid-run)
  std::string last_error;     // why the last run failed
  bool running = false;
  bool due = false;           // waiting for a free place among max_concurrent
  uint64_t runs = 0, failures = 0, skipped = 0;  // since the schedule was first seen
};

// The JSON form of the schedule table, for the admin API and `stowctl schedule ls --json`.
std::string schedules_to_json(const std::vector<ScheduleStatus>& rows);

class Scheduler {
 public:
  using BackupFn = std::function<Status(const std::string& volume, std::string_view reason)>;
  using ForgetFn = std::function<Status(const std::string& volume, const ForgetPolicy& policy)>;
  using VolumesFn = std::function<std::vector<ScheduledVolume>()>;

  struct Options {
    std::string state_path;                  // e.g. <state_root>/schedules.json
    std::shared_ptr<SchedulerClock> clock;   // empty = system_scheduler_clock()
    VolumesFn volumes;                       // every volume with its backup options
    // Backs a volume up; `reason` is "scheduled" or "catch-up" (a slot missed
    // while the daemon was down, or a run a crash interrupted). Called on a
    // worker thread, never twice at once for one volume.
    BackupFn backup;
    // Applies a keep policy to one volume's backups; called after each
    // successful backup of a volume with a non-empty keep policy.
    ForgetFn forget;
    unsigned max_concurrent = 1;             // backups at once, daemon-wide (at least 1)
    std::optional<uint64_t> seed;            // jitter RNG seed; empty = random
    int64_t max_sleep_ns = int64_t{30} * 1'000'000'000;  // longest wait between looks at the volumes
  };

  // Loads the persisted state (a missing file is an empty state; an
  // unreadable one is logged and replaced). The thread starts with start().
  [[nodiscard]] static Result<std::unique_ptr<Scheduler>> open(Options opts, Logger& log);
  ~Scheduler();  // stop()

  void start();
  // Stops the thread and waits for running backups to finish (they cannot be
  // cancelled; a daemon killed meanwhile re-runs them at start as "catch-up").
  void stop();

  // Looks at the volumes now (as every wake-up does) and returns the table,
  // sorted by volume.
  std::vector<ScheduleStatus> list();

  // For tests: wakes the thread and blocks until it has looked at the clock
  // as it is now and, when `wait_for_runs`, until no backup is running and
  // nothing is due. Only after start().
  void sync(bool wait_for_runs = true);

 private:
  struct Entry;
  Scheduler(Options opts, Logger& log);
  Status load();
  void save_locked();
  void reconcile_locked(const std::vector<ScheduledVolume>& vols, int64_t now);
  // Starts due runs and skips overlapped slots; returns when to look again.
  int64_t poll_locked(int64_t now);
  void schedule_next_locked(Entry& e, int64_t after_ns);
  void run(Entry* e, std::string reason, ForgetPolicy keep);
  void loop();
  std::vector<ScheduledVolume> fetch_volumes();

  Options opts_;
  Logger& log_;
  std::mutex mu_;
  std::condition_variable cv_;       // wakes the loop
  std::condition_variable idle_cv_;  // wakes sync()
  std::map<std::string, std::unique_ptr<Entry>> entries_;
  std::map<std::string, std::unique_ptr<Entry>> loaded_;  // persisted state not yet matched to a volume
  bool reconciled_ = false;
  std::vector<std::unique_ptr<Entry>> orphans_;  // removed entries whose run still goes
  std::mt19937_64 rng_;
  unsigned running_ = 0;
  std::map<std::thread::id, std::thread> workers_;
  std::vector<std::thread::id> finished_;  // workers to join
  uint64_t poke_ = 0, polled_ = 0;
  bool dirty_ = false;  // a run ended since the last poll
  bool stop_ = false;
  bool started_ = false;
  std::thread loop_;
};

}  // namespace stowage
