// The backup scheduler (plugin/scheduler.h) against a manual clock and a
// recording backup callback — the scheduler's boundary. Time moves only when
// a test says so; Scheduler::sync() makes the scheduler look at the clock, so
// nothing here sleeps or asserts on elapsed time.
#include "scheduler.h"

#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace stowage {
namespace {

using test::TempDir;
using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kMin = 60 * kSec;
constexpr int64_t kHour = 60 * kMin;
// 2026-11-26 12:34:56 UTC.
constexpr int64_t kStart = int64_t{1795696496} * kSec;
constexpr int64_t kNoon = kStart - (34 * kMin + 56 * kSec);

struct Call {
  std::string volume, reason;
  int64_t at_ns;
};

// Records backup and forget calls. While the gate is closed, backups block.
class Recorder {
 public:
  explicit Recorder(std::shared_ptr<ManualSchedulerClock> clock) : clock_(std::move(clock)) {}

  Status backup(const std::string& v, std::string_view reason) {
    std::unique_lock l(mu_);
    calls_.push_back({v, std::string(reason), clock_->now_ns()});
    called_.notify_all();
    ++running_;
    peak_ = std::max(peak_, running_);
    cv_.wait(l, [&] { return open_; });
    --running_;
    auto it = results_.find(v);
    return it == results_.end() ? Status::ok() : it->second;
  }
  Status forget(const std::string& v, const ForgetPolicy& p) {
    std::lock_guard l(mu_);
    forgets_.emplace_back(v, p);
    return forget_result_;
  }
  // Blocks until `n` backups have been called (they start on worker threads).
  void wait_for_calls(size_t n) {
    std::unique_lock l(mu_);
    called_.wait(l, [&] { return calls_.size() >= n; });
  }
  void close() {
    std::lock_guard l(mu_);
    open_ = false;
  }
  void open() {
    {
      std::lock_guard l(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void fail(const std::string& v, Status st) {
    std::lock_guard l(mu_);
    results_[v] = std::move(st);
  }
  void fail_forget(Status st) {
    std::lock_guard l(mu_);
    forget_result_ = std::move(st);
  }
  std::vector<Call> calls() {
    std::lock_guard l(mu_);
    return calls_;
  }
  std::vector<std::pair<std::string, ForgetPolicy>> forgets() {
    std::lock_guard l(mu_);
    return forgets_;
  }
  int peak() {
    std::lock_guard l(mu_);
    return peak_;
  }
  size_t count(const std::string& v) {
    size_t n = 0;
    for (const auto& c : calls()) n += c.volume == v;
    return n;
  }

 private:
  std::shared_ptr<ManualSchedulerClock> clock_;
  std::mutex mu_;
  std::condition_variable cv_, called_;
  bool open_ = true;
  int running_ = 0, peak_ = 0;
  std::vector<Call> calls_;
  std::map<std::string, Status> results_;
  Status forget_result_;
  std::vector<std::pair<std::string, ForgetPolicy>> forgets_;
};

class SchedulerTest : public ::testing::Test {
 protected:
  Scheduler& open(unsigned max_concurrent = 1, uint64_t seed = 1, bool start = true) {
    sched_.reset();
    Scheduler::Options o;
    o.state_path = state_path();
    o.clock = clock_;
    o.volumes = [this] {
      std::lock_guard l(vol_mu_);
      return vols_;
    };
    o.backup = [this](const std::string& v, std::string_view r) { return rec_.backup(v, r); };
    o.forget = [this](const std::string& v, const ForgetPolicy& p) { return rec_.forget(v, p); };
    o.max_concurrent = max_concurrent;
    o.seed = seed;
    auto s = Scheduler::open(std::move(o), log_);
    EXPECT_TRUE(s.is_ok()) << s.status().to_string();
    sched_ = std::move(s).value();
    // Plan at the current clock before the thread runs, so that a test moving
    // the clock right away does not race the first plan.
    (void)sched_->list();
    if (start) sched_->start();
    return *sched_;
  }
  void set_volumes(std::vector<ScheduledVolume> v) {
    std::lock_guard l(vol_mu_);
    vols_ = std::move(v);
  }
  std::string state_path() const { return dir_ / "schedules.json"; }
  ScheduleStatus row(const std::string& volume) {
    for (const auto& r : sched_->list()) {
      if (r.volume == volume) return r;
    }
    ADD_FAILURE() << "no schedule for " << volume;
    return {};
  }
  // Moves the clock to `t` and lets the scheduler act on it.
  void at(int64_t t, bool wait_for_runs = true) {
    clock_->set(t);
    sched_->sync(wait_for_runs);
  }
  bool logged(const std::string& fragment) {
    std::lock_guard l(log_mu_);
    for (const auto& line : lines_) {
      if (line.find(fragment) != std::string::npos) return true;
    }
    return false;
  }

  TempDir dir_{"stowage-sched"};
  std::shared_ptr<ManualSchedulerClock> clock_ = std::make_shared<ManualSchedulerClock>(kStart);
  Recorder rec_{clock_};
  std::mutex log_mu_;
  std::vector<std::string> lines_;
  Logger log_{LogFormat::kLogfmt, LogLevel::kDebug, [this](std::string_view line) {
                std::lock_guard l(log_mu_);
                lines_.emplace_back(line);
              }};
  std::mutex vol_mu_;
  std::vector<ScheduledVolume> vols_;
  std::unique_ptr<Scheduler> sched_;
};

TEST_F(SchedulerTest, RunsAtTheSlotPlusBoundedJitterAndRecordsTheResult) {
  set_volumes({{"db", "@hourly", ""}, {"plain", "", ""}});
  open();
  auto rows = sched_->list();
  ASSERT_EQ(rows.size(), 1u);  // volumes without backup= have no schedule
  ScheduleStatus r = rows[0];
  EXPECT_EQ(r.volume, "db");
  EXPECT_EQ(r.schedule, "@hourly");
  EXPECT_GE(r.next_run_ns, kNoon + kHour);
  EXPECT_LE(r.next_run_ns, kNoon + kHour + 5 * kMin);
  EXPECT_EQ(r.last_start_ns, 0);
  EXPECT_EQ(r.last_result, "");

  at(kNoon + kHour - 1);
  at(r.next_run_ns - 1);
  EXPECT_TRUE(rec_.calls().empty());
  at(r.next_run_ns);
  ASSERT_EQ(rec_.calls().size(), 1u);
  EXPECT_EQ(rec_.calls()[0].volume, "db");
  EXPECT_EQ(rec_.calls()[0].reason, "scheduled");
  r = row("db");
  EXPECT_EQ(r.last_result, "ok");
  EXPECT_EQ(r.last_start_ns, clock_->now_ns());
  EXPECT_EQ(r.runs, 1u);
  EXPECT_GE(r.next_run_ns, kNoon + 2 * kHour);
  EXPECT_LE(r.next_run_ns, kNoon + 2 * kHour + 5 * kMin);
  // Nothing more until that slot.
  at(r.next_run_ns - 1);
  EXPECT_EQ(rec_.calls().size(), 1u);
  at(r.next_run_ns);
  EXPECT_EQ(rec_.calls().size(), 2u);
}

TEST_F(SchedulerTest, JitterSpreadsVolumesWithinTheBoundAndFollowsTheSeed) {
  std::vector<ScheduledVolume> vols;
  for (int i = 0; i < 40; ++i) vols.push_back({"v" + std::to_string(i), "every:10m", ""});
  set_volumes(vols);
  open(1, 42);
  std::set<int64_t> distinct;
  std::map<std::string, int64_t> first;
  for (const auto& r : sched_->list()) {
    EXPECT_GE(r.next_run_ns, kStart + 10 * kMin) << r.volume;
    EXPECT_LE(r.next_run_ns, kStart + 11 * kMin) << r.volume;  // a tenth of 10m
    distinct.insert(r.next_run_ns);
    first[r.volume] = r.next_run_ns;
  }
  EXPECT_GT(distinct.size(), 30u);
  // The same seed on a fresh state gives the same plan.
  sched_.reset();
  fs::remove(state_path());
  open(1, 42);
  for (const auto& r : sched_->list()) EXPECT_EQ(r.next_run_ns, first[r.volume]) << r.volume;
}

TEST_F(SchedulerTest, StatePersistsAndMissedSlotsRunOnceAfterDowntime) {
  set_volumes({{"db", "every:10m", "last:3"}});
  open();
  int64_t first = row("db").next_run_ns;
  at(first);
  ASSERT_EQ(rec_.calls().size(), 1u);
  ScheduleStatus before = row("db");
  sched_->stop();
  sched_.reset();

  // The state file is a complete JSON document, and no temp file is left.
  json j = json::parse(test::read_file(state_path()));
  EXPECT_EQ(j["volumes"]["db"]["last_result"], "ok");
  EXPECT_EQ(j["volumes"]["db"]["running"], false);
  for (const auto& f : fs::directory_iterator(dir_.path())) {
    EXPECT_EQ(f.path().filename().string().find(".tmp"), std::string::npos) << f.path();
  }
  struct stat st {};
  ASSERT_EQ(::stat(state_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // Down for 5 hours: 30 slots missed.
  clock_->set(first + 5 * kHour);
  open(1, 1, /*start=*/false);
  ScheduleStatus after_restart = row("db");
  EXPECT_EQ(after_restart.last_start_ns, before.last_start_ns);
  EXPECT_EQ(after_restart.last_result, "ok");
  EXPECT_EQ(after_restart.runs, 1u);
  sched_->start();
  sched_->sync();
  ASSERT_EQ(rec_.calls().size(), 2u);  // one catch-up run, not 30
  EXPECT_EQ(rec_.calls()[1].reason, "catch-up");
  EXPECT_EQ(rec_.calls()[1].at_ns, first + 5 * kHour);
  EXPECT_TRUE(logged("backup missed while stowaged was down"));
  ScheduleStatus r = row("db");
  EXPECT_EQ(r.runs, 2u);
  // Back on the 10-minute grid of the first slot (before jitter).
  EXPECT_GT(r.next_run_ns, first + 5 * kHour);
  EXPECT_LE(r.next_run_ns, first + 5 * kHour + 11 * kMin);
  at(first + 5 * kHour + kMin);
  EXPECT_EQ(rec_.calls().size(), 2u);
  // keep= was applied after each successful backup.
  ASSERT_EQ(rec_.forgets().size(), 2u);
  EXPECT_EQ(rec_.forgets()[0].first, "db");
  EXPECT_EQ(rec_.forgets()[0].second.keep_last, 3);
}

TEST_F(SchedulerTest, NotYetDueAfterRestartKeepsItsPlannedRun) {
  set_volumes({{"db", "@daily", ""}});
  open();
  int64_t planned = row("db").next_run_ns;
  sched_.reset();
  clock_->advance(kHour);
  open(1, 999);  // another seed: the plan comes from the file, not the RNG
  EXPECT_EQ(row("db").next_run_ns, planned);
  sched_->sync();
  EXPECT_TRUE(rec_.calls().empty());
}

TEST_F(SchedulerTest, ARunACrashInterruptedRunsAgainAtStart) {
  set_volumes({{"db", "@hourly", ""}});
  open();
  rec_.close();
  int64_t slot = row("db").next_run_ns;
  at(slot, false);
  rec_.wait_for_calls(1);
  ASSERT_EQ(rec_.calls().size(), 1u);
  EXPECT_TRUE(row("db").running);
  // What the disk holds at this moment is what a crash would leave.
  std::string crashed = test::read_file(state_path());
  EXPECT_EQ(json::parse(crashed)["volumes"]["db"]["running"], true);
  rec_.open();
  sched_->stop();
  sched_.reset();
  test::write_file(state_path(), crashed);

  clock_->advance(kMin);  // restarted well before the next slot
  open(1, 1, /*start=*/false);
  ScheduleStatus r = row("db");
  EXPECT_EQ(r.last_result, "interrupted");
  EXPECT_FALSE(r.running);
  sched_->start();
  sched_->sync();
  ASSERT_EQ(rec_.calls().size(), 2u);
  EXPECT_EQ(rec_.calls()[1].reason, "catch-up");
  EXPECT_EQ(row("db").last_result, "ok");
}

TEST_F(SchedulerTest, NeverTwoRunsOfOneVolumeAndOverlappedSlotsAreSkipped) {
  set_volumes({{"db", "every:10m", ""}});
  open(4);
  rec_.close();
  int64_t slot = row("db").next_run_ns;
  at(slot, false);
  rec_.wait_for_calls(1);
  ASSERT_EQ(rec_.calls().size(), 1u);
  // Two more slots pass while the first backup still runs.
  at(slot + 12 * kMin, false);
  at(slot + 24 * kMin, false);
  EXPECT_EQ(rec_.calls().size(), 1u);
  EXPECT_EQ(rec_.peak(), 1);
  ScheduleStatus r = row("db");
  EXPECT_TRUE(r.running);
  EXPECT_EQ(r.skipped, 2u);
  EXPECT_TRUE(logged("previous backup still running: slot skipped"));
  rec_.open();
  sched_->sync();
  r = row("db");
  EXPECT_FALSE(r.running);
  EXPECT_EQ(r.runs, 1u);
  EXPECT_EQ(rec_.calls().size(), 1u);  // the skipped slots do not run afterwards
  EXPECT_GT(r.next_run_ns, slot + 24 * kMin);
  at(r.next_run_ns);
  EXPECT_EQ(rec_.calls().size(), 2u);
}

TEST_F(SchedulerTest, BoundedConcurrencyQueuesDueVolumes) {
  for (unsigned limit : {1u, 2u}) {
    SCOPED_TRACE("max_concurrent=" + std::to_string(limit));
    set_volumes({{"a", "@hourly", ""}, {"b", "@hourly", ""}, {"c", "@hourly", ""}});
    fs::remove(state_path());
    clock_->set(kStart);
    auto calls_before = rec_.calls().size();
    open(limit);
    rec_.close();
    at(kNoon + kHour + 6 * kMin, false);  // past every jitter
    rec_.wait_for_calls(calls_before + limit);
    EXPECT_EQ(rec_.calls().size() - calls_before, limit);
    size_t due = 0;
    for (const auto& r : sched_->list()) due += r.due;
    EXPECT_EQ(due, 3 - limit);
    rec_.open();
    sched_->sync();
    EXPECT_EQ(rec_.calls().size() - calls_before, 3u);
    for (const auto& r : sched_->list()) {
      EXPECT_EQ(r.last_result, "ok") << r.volume;
      EXPECT_FALSE(r.due) << r.volume;
    }
    EXPECT_EQ(rec_.peak(), static_cast<int>(limit));
    sched_.reset();
  }
}

TEST_F(SchedulerTest, FailuresAreRecordedAndKeepOnlyFollowsSuccess) {
  set_volumes({{"fenced", "@hourly", "daily:7"}, {"ok", "@hourly", "last:24,weekly:4"}});
  rec_.fail("fenced", Status::failed_precondition("volume 'fenced' is fenced: another host took its lease"));
  open(2);
  at(kNoon + kHour + 6 * kMin);
  ScheduleStatus f = row("fenced");
  EXPECT_EQ(f.last_result, "failed");
  EXPECT_EQ(f.failures, 1u);
  EXPECT_NE(f.last_error.find("another host took its lease"), std::string::npos) << f.last_error;
  EXPECT_GT(f.next_run_ns, kNoon + 2 * kHour - 1);  // it stays scheduled
  ScheduleStatus o = row("ok");
  EXPECT_EQ(o.last_result, "ok");
  EXPECT_EQ(o.last_error, "");
  ASSERT_EQ(rec_.forgets().size(), 1u);
  EXPECT_EQ(rec_.forgets()[0].first, "ok");
  EXPECT_EQ(rec_.forgets()[0].second.keep_last, 24);
  EXPECT_EQ(rec_.forgets()[0].second.keep_weekly, 4);
  EXPECT_TRUE(logged("scheduled backup failed"));

  rec_.fail_forget(Status::unavailable("repository unreachable"));
  at(kNoon + 2 * kHour + 6 * kMin);
  o = row("ok");
  EXPECT_EQ(o.last_result, "failed");
  EXPECT_NE(o.last_error.find("backup stored, but applying keep=last:24,weekly:4 failed: repository unreachable"),
            std::string::npos)
      << o.last_error;
  // A success clears the error.
  rec_.fail("fenced", Status::ok());
  rec_.fail_forget(Status::ok());
  at(kNoon + 3 * kHour + 6 * kMin);
  EXPECT_EQ(row("fenced").last_result, "ok");
  EXPECT_EQ(row("fenced").last_error, "");
}

TEST_F(SchedulerTest, RemovedVolumesLoseTheirScheduleAndOffNeverRuns) {
  set_volumes({{"a", "@hourly", ""}, {"b", "@hourly", ""}, {"quiet", "off", ""}});
  open();
  EXPECT_EQ(sched_->list().size(), 3u);
  EXPECT_EQ(row("quiet").next_run_ns, 0);
  set_volumes({{"a", "@hourly", ""}, {"quiet", "off", ""}});
  at(kNoon + kHour + 6 * kMin);
  EXPECT_EQ(rec_.count("a"), 1u);
  EXPECT_EQ(rec_.count("b"), 0u);
  EXPECT_EQ(rec_.count("quiet"), 0u);
  auto rows = sched_->list();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].volume, "a");
  EXPECT_EQ(rows[1].volume, "quiet");
  json j = json::parse(test::read_file(state_path()));
  EXPECT_FALSE(j["volumes"].contains("b"));
  at(kNoon + 30 * 24 * kHour);
  EXPECT_EQ(rec_.count("quiet"), 0u);
}

TEST_F(SchedulerTest, VolumeRemovedDuringItsRunIsDroppedWhenTheRunEnds) {
  set_volumes({{"a", "@hourly", ""}});
  open();
  rec_.close();
  at(kNoon + kHour + 6 * kMin, false);
  rec_.wait_for_calls(1);
  ASSERT_EQ(rec_.calls().size(), 1u);
  set_volumes({});
  EXPECT_TRUE(sched_->list().empty());
  // Re-created under the same name with another schedule while the old run goes.
  set_volumes({{"a", "every:10m", ""}});
  ScheduleStatus r = row("a");
  EXPECT_EQ(r.schedule, "every:10m");
  EXPECT_FALSE(r.running);
  rec_.open();
  sched_->sync();
  r = row("a");
  EXPECT_EQ(r.schedule, "every:10m");
  EXPECT_EQ(r.last_result, "");  // the old volume's run is not the new one's
}

TEST_F(SchedulerTest, UnreadableStateStartsAfreshAndIsReplaced) {
  test::write_file(state_path(), "{not json");
  set_volumes({{"db", "@hourly", ""}});
  open();
  EXPECT_TRUE(logged("schedule state unreadable"));
  ScheduleStatus r = row("db");
  EXPECT_GE(r.next_run_ns, kNoon + kHour);
  json j = json::parse(test::read_file(state_path()));
  EXPECT_EQ(j["format"], 1);
  EXPECT_TRUE(j["volumes"].contains("db"));
}

TEST_F(SchedulerTest, ChangedScheduleForTheSameNameIsReplanned) {
  set_volumes({{"db", "@daily", ""}});
  open();
  EXPECT_GE(row("db").next_run_ns, kNoon + 11 * kHour);
  sched_.reset();
  set_volumes({{"db", "*/15 * * * *", ""}});
  open();
  ScheduleStatus r = row("db");
  EXPECT_EQ(r.schedule, "*/15 * * * *");
  EXPECT_GE(r.next_run_ns, kNoon + 45 * kMin);
  EXPECT_LE(r.next_run_ns, kNoon + 45 * kMin + 90 * kSec);
}

TEST_F(SchedulerTest, CallbackExceptionsBecomeFailures) {
  Scheduler::Options o;
  o.state_path = state_path();
  o.clock = clock_;
  o.volumes = [] { return std::vector<ScheduledVolume>{{"x", "@hourly", ""}}; };
  o.backup = [](const std::string&, std::string_view) -> Status { throw std::runtime_error("boom"); };
  o.seed = 3;
  auto s = Scheduler::open(std::move(o), log_);
  ASSERT_TRUE(s.is_ok());
  sched_ = std::move(s).value();
  (void)sched_->list();
  sched_->start();
  at(kNoon + kHour + 6 * kMin);
  ScheduleStatus r = row("x");
  EXPECT_EQ(r.last_result, "failed");
  EXPECT_EQ(r.last_error, "backup threw: boom");
}

TEST(SchedulerOpen, RefusesMissingPieces) {
  Logger log;
  Scheduler::Options o;
  EXPECT_EQ(Scheduler::open(o, log).status().code(), Code::kInvalidArgument);
  o.state_path = "/nonexistent/schedules.json";
  EXPECT_EQ(Scheduler::open(o, log).status().code(), Code::kInvalidArgument);
}

TEST(SchedulesJson, Shape) {
  ScheduleStatus s;
  s.volume = "db";
  s.schedule = "@hourly";
  s.keep = "daily:7";
  s.next_run_ns = kNoon + kHour;
  json j = json::parse(schedules_to_json({s}));
  ASSERT_EQ(j["schedules"].size(), 1u);
  const json& r = j["schedules"][0];
  EXPECT_EQ(r["volume"], "db");
  EXPECT_EQ(r["schedule"], "@hourly");
  EXPECT_EQ(r["keep"], "daily:7");
  EXPECT_EQ(r["next_run"], "2026-11-26T13:00:00.000000000Z");
  EXPECT_TRUE(r["last_start"].is_null());
  EXPECT_TRUE(r["last_result"].is_null());
  EXPECT_EQ(r["running"], false);
  EXPECT_EQ(r["runs"], 0);
}

}  // namespace
}  // namespace stowage
