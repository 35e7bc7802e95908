// forget policies, two-phase prune (also against a concurrent backup), check
// and check --read-data, crash points, hostile snapshots, restore containment.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "backup/backup_env.h"
#include "backup/test_data.h"
#include "backup/tree_fixture.h"
#include "stowage/index.h"
#include "stowage/pack.h"
#include "stowage/store_faults.h"
#include "stowage/store_retry.h"
#include "stowage/tree.h"
#include "stowage/upkeep.h"

namespace stowage {
namespace {

using test::TempDir;
constexpr int64_t kHour = int64_t{3600} * 1'000'000'000;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kT0 = 1'767'225'600'000'000'000;  // 2026-01-01T00:00:00Z, a Thursday

// ---- forget policy (pure)

std::vector<std::pair<Hash256, SnapshotManifest>> series(const std::vector<int64_t>& times, const std::string& vol = "v") {
  std::vector<std::pair<Hash256, SnapshotManifest>> out;
  for (size_t i = 0; i < times.size(); ++i) {
    SnapshotManifest m;
    m.volume = vol;
    m.hostname = "h";
    m.time_ns = times[i];
    out.emplace_back(sha256(vol + std::to_string(i)), m);
  }
  return out;
}

std::vector<int64_t> kept_times(const std::vector<ForgetDecision>& d) {
  std::vector<int64_t> out;
  for (const auto& x : d) {
    if (x.keep) out.push_back(x.manifest.time_ns);
  }
  return out;
}

TEST(ForgetPolicy, KeepLastKeepsNewest) {
  auto d = apply_forget_policy(series({kT0, kT0 + 1, kT0 + 2, kT0 + 3}), {.keep_last = 2});
  EXPECT_EQ(kept_times(d), (std::vector<int64_t>{kT0 + 3, kT0 + 2}));
}

TEST(ForgetPolicy, DailyKeepsNewestOfEachOfTheNewestDays) {
  // Three snapshots a day for five days (at 01:00, 09:00, 17:00).
  std::vector<int64_t> t;
  for (int day = 0; day < 5; ++day) {
    for (int h : {1, 9, 17}) t.push_back(kT0 + day * kDay + h * kHour);
  }
  auto d = apply_forget_policy(series(t), {.keep_daily = 3});
  EXPECT_EQ(kept_times(d), (std::vector<int64_t>{kT0 + 4 * kDay + 17 * kHour, kT0 + 3 * kDay + 17 * kHour,
                                                 kT0 + 2 * kDay + 17 * kHour}));
  // Rules combine: last 2 + 3 days keeps 4 distinct snapshots.
  d = apply_forget_policy(series(t), {.keep_last = 2, .keep_daily = 3});
  EXPECT_EQ(kept_times(d).size(), 4u);
}

TEST(ForgetPolicy, WeeklyMonthlyYearlyUseIsoWeeksAndUtc) {
  // Daily for 70 days from Thursday 2026-01-01.
  std::vector<int64_t> t;
  for (int day = 0; day < 70; ++day) t.push_back(kT0 + day * kDay + 12 * kHour);
  // ISO weeks run Monday..Sunday: day 69 is Wednesday 2026-03-11 (week 11),
  // the newest of week 10 is Sunday 2026-03-08, day 66.
  auto d = apply_forget_policy(series(t), {.keep_weekly = 2});
  EXPECT_EQ(kept_times(d), (std::vector<int64_t>{kT0 + 69 * kDay + 12 * kHour, kT0 + 66 * kDay + 12 * kHour}));
  // Months: March (day 69), February (day 58 = Feb 28), January (day 30).
  d = apply_forget_policy(series(t), {.keep_monthly = 5});
  EXPECT_EQ(kept_times(d), (std::vector<int64_t>{kT0 + 69 * kDay + 12 * kHour, kT0 + 58 * kDay + 12 * kHour,
                                                 kT0 + 30 * kDay + 12 * kHour}));
  d = apply_forget_policy(series(t), {.keep_yearly = 1});
  EXPECT_EQ(kept_times(d), (std::vector<int64_t>{kT0 + 69 * kDay + 12 * kHour}));
}

TEST(ForgetPolicy, GroupsBySourceAndKeepsTags) {
  auto a = series({kT0, kT0 + kDay}, "a");
  auto b = series({kT0 + 5, kT0 + kDay + 5}, "b");
  a[0].second.tags = {"keep-me"};
  a.insert(a.end(), b.begin(), b.end());
  auto d = apply_forget_policy(a, {.keep_last = 1, .keep_tags = {"keep-me"}});
  EXPECT_EQ(kept_times(d), (std::vector<int64_t>{kT0 + kDay, kT0, kT0 + kDay + 5}));
  EXPECT_TRUE(ForgetPolicy{}.empty());
}

// ---- repository-level tests

class UpkeepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_dir_ = dir_ / "repo";
    auto r = Repository::init(test::must_file_store(repo_dir_), test::small_pack_config());
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    repo_ = std::move(r).value();
  }
  std::string make_source(const std::string& name, uint64_t seed) {
    const std::string src = dir_ / name;
    EXPECT_EQ(::mkdir(src.c_str(), 0755), 0);
    test::make_tree(src, {.seed = seed, .dirs = 2, .files_per_dir = 3});
    test::write_file(src + "/unique", test::random_bytes(1500000, seed));
    return src;
  }
  Result<BackupResult> backup(Repository& repo, const std::string& src, const std::string& name, int64_t t) {
    return run_backup(repo, test::backup_opts(src, name, t));
  }
  void expect_restores_to(const Hash256& id, const std::string& expected) {
    test::expect_restores_to(*repo_, id, dir_ / ("restore-" + std::to_string(restores_++)), expected);
  }
  CheckReport check(bool read_data) {
    auto c = run_check(*repo_, {.read_data = read_data});
    EXPECT_TRUE(c.is_ok()) << c.status().to_string();
    return c.is_ok() ? std::move(c).value() : CheckReport{};
  }
  // Where the index has the first chunk of `data`, cut the way backups do.
  std::optional<BlobLocation> first_chunk_of(const std::string& data) {
    auto index = repo_->load_index();
    EXPECT_TRUE(index.is_ok());
    auto chunker = Chunker::create(repo_->config().chunker);
    EXPECT_TRUE(chunker.is_ok());
    if (!index.is_ok() || !chunker.is_ok()) return std::nullopt;
    return index->find(sha256(std::string_view(data).substr(0, chunker->cut(data))));
  }
  // Flips one bit in the middle of the blob at `loc`.
  void flip_byte(const BlobLocation& loc) {
    const std::string pack_path = repo_dir_ + "/" + pack_key(loc.pack);
    const int fd = ::open(pack_path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    char c;
    ASSERT_EQ(::pread(fd, &c, 1, loc.offset + loc.stored_length / 2), 1);
    c ^= 0x40;
    ASSERT_EQ(::pwrite(fd, &c, 1, loc.offset + loc.stored_length / 2), 1);
    ::close(fd);
  }
  // A source with sub/victim (random_bytes(victim_size, 77)) and bystander.
  std::string make_victim_source(size_t victim_size = 200000) {
    const std::string a = dir_ / "a";
    EXPECT_EQ(::mkdir(a.c_str(), 0755), 0);
    EXPECT_EQ(::mkdir((a + "/sub").c_str(), 0755), 0);
    test::write_file(a + "/sub/victim", test::random_bytes(victim_size, 77));
    test::write_file(a + "/bystander", test::random_bytes(150000, 78));
    return a;
  }
  size_t count(const std::string& prefix) {
    auto l = repo_->store().list(prefix);
    EXPECT_TRUE(l.is_ok());
    return l.is_ok() ? l->size() : 0;
  }
  TempDir dir_{"stowage-upkeep"};
  std::string repo_dir_;
  std::unique_ptr<Repository> repo_;
  int restores_ = 0;
};

TEST_F(UpkeepTest, ForgetThenTwoPhasePruneDeletesOnlyUnreferencedDataAfterGrace) {
  // `a` shares no content with `b`: make_tree's fixed small files ("x",
  // "space", …) would be deduplicated into b, and which of a's packs they
  // land in depends on how the workers interleave — with bad luck every one
  // of them, leaving nothing to prune (seen once under load).
  const std::string a = dir_ / "a";
  ASSERT_EQ(::mkdir(a.c_str(), 0755), 0);
  for (int i = 0; i < 4; ++i) test::write_file(a + "/r" + std::to_string(i), test::random_bytes(700000, 100 + i));
  const std::string b = make_source("b", 2);
  auto ra = backup(*repo_, a, "a", kT0);
  ASSERT_TRUE(ra.is_ok()) << ra.status().to_string();
  auto rb = backup(*repo_, b, "b", kT0 + kHour);
  ASSERT_TRUE(rb.is_ok());
  const size_t packs_before = count("data/");

  auto f = run_forget(*repo_, {.policy = {.keep_last = 1}, .name = "a"});
  ASSERT_TRUE(f.is_ok());
  EXPECT_EQ(count("snapshots/"), 2u);  // each source keeps its last
  auto empty = run_forget(*repo_, {});
  EXPECT_EQ(empty.status().code(), Code::kInvalidArgument);

  // Drop a's only snapshot (what forget does with a stricter policy).
  ASSERT_TRUE(repo_->store().remove(snapshot_key(ra->snapshot_id)).is_ok());

  auto clock = std::make_shared<test::ManualClock>(kT0 + kDay);
  PruneOptions po{.grace_ns = kDay, .clock = clock};
  auto p1 = run_prune(*repo_, po);
  ASSERT_TRUE(p1.is_ok()) << p1.status().to_string();
  EXPECT_GT(p1->packs_marked, 0u);
  EXPECT_EQ(p1->packs_deleted, 0u);
  EXPECT_EQ(count("data/"), packs_before);  // phase 1 deletes nothing
  EXPECT_EQ(count("prune/"), 1u);

  clock->advance(kHour);  // still within the grace period
  auto p2 = run_prune(*repo_, po);
  ASSERT_TRUE(p2.is_ok());
  EXPECT_EQ(p2->packs_deleted, 0u);
  EXPECT_EQ(p2->marks_pending, 1u);

  clock->advance(kDay);
  auto p3 = run_prune(*repo_, po);
  ASSERT_TRUE(p3.is_ok()) << p3.status().to_string();
  EXPECT_EQ(p3->packs_deleted, p1->packs_marked);
  EXPECT_EQ(count("data/"), packs_before - p1->packs_marked);
  EXPECT_EQ(count("prune/"), 0u);
  EXPECT_GE(p3->index_files_rewritten, 1u);

  expect_restores_to(rb->snapshot_id, b);
  const auto c = check(true);
  EXPECT_TRUE(c.ok()) << ::testing::PrintToString(c.errors);
  EXPECT_TRUE(c.warnings.empty()) << ::testing::PrintToString(c.warnings);
}

// A backup that uploaded packs but has not indexed them when prune marks must
// lose nothing: the sweep finds its snapshot and keeps the packs.
// An index file lost (deleted by hand, or by a store) while the one listing
// the trees survives: the snapshot's trees load, but its data packs are in no
// index, which is what a dead backup's packs look like. Prune must keep them
// (it reads their headers), and check --repair must index them again.
TEST_F(UpkeepTest, PacksALostIndexFileListedAreKeptByPruneAndIndexedByCheckRepair) {
  const std::string a = make_source("a", 9);
  auto r = backup(*repo_, a, "a", kT0);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  auto files = repo_->load_index_files();
  ASSERT_TRUE(files.is_ok());
  IndexFile trees_only;
  size_t data_only = 0;
  for (const auto& [id, f] : *files) {
    for (const auto& p : f.packs) {
      const bool trees = std::any_of(p.blobs.begin(), p.blobs.end(), [](const PackBlob& b) { return b.type == BlobType::kTree; });
      if (trees) {
        trees_only.packs.push_back(p);
      } else {
        ++data_only;
      }
    }
    ASSERT_TRUE(repo_->store().remove(index_key(id)).is_ok());
  }
  ASSERT_GE(data_only, 2u) << "the source must fill packs of data only";
  ASSERT_TRUE(repo_->save_index(trees_only).is_ok());
  const size_t packs = count("data/");
  EXPECT_FALSE(check(false).ok());  // the file's chunks are in no index

  auto clock = std::make_shared<test::ManualClock>(kT0);
  PruneOptions po{.grace_ns = kDay, .clock = clock};
  for (int round = 0; round < 2; ++round) {
    auto p = run_prune(*repo_, po);
    ASSERT_TRUE(p.is_ok()) << p.status().to_string();
    EXPECT_EQ(p->packs_marked, 0u);
    EXPECT_EQ(p->packs_deleted, 0u);
    EXPECT_EQ(p->unindexed_kept.size(), data_only);
    clock->advance(2 * kDay);
  }
  EXPECT_EQ(count("data/"), packs);

  auto repaired = run_check(*repo_, {.repair = true});
  ASSERT_TRUE(repaired.is_ok()) << repaired.status().to_string();
  EXPECT_EQ(repaired->packs_indexed.size(), data_only);
  const auto c = check(true);
  EXPECT_TRUE(c.ok()) << ::testing::PrintToString(c.errors);
  EXPECT_TRUE(c.warnings.empty()) << ::testing::PrintToString(c.warnings);
  expect_restores_to(r->snapshot_id, a);
  auto p = run_prune(*repo_, po);
  ASSERT_TRUE(p.is_ok());
  EXPECT_TRUE(p->unindexed_kept.empty());
}

TEST_F(UpkeepTest, PruneDuringABackupLosesNothing) {
  const std::string a = make_source("a", 3);
  auto clock = std::make_shared<test::ManualClock>(kT0);
  PruneOptions po{.grace_ns = kDay, .clock = clock};
  Status prune_in_hook;
  auto opts = test::backup_opts(a, "a", kT0);
  opts.after_data_uploaded = [&]() -> Status {
    // Second process: its own Repository over the same store.
    auto other = test::must_open(test::must_file_store(repo_dir_));
    auto p = run_prune(*other, po);
    if (!p.is_ok()) return p.status();
    EXPECT_GT(p->packs_marked, 0u);  // the backup's unindexed packs
    return Status::ok();
  };
  auto r = run_backup(*repo_, opts);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  clock->advance(2 * kDay);
  auto p = run_prune(*repo_, po);
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_EQ(p->packs_deleted, 0u);
  EXPECT_GT(p->packs_rescued, 0u);
  expect_restores_to(r->snapshot_id, a);
  EXPECT_TRUE(check(true).ok());

  // A backup that starts while a mark exists does not dedup against marked
  // packs, so it cannot come to depend on them.
  ASSERT_TRUE(repo_->store().remove(snapshot_key(r->snapshot_id)).is_ok());
  ASSERT_TRUE(run_prune(*repo_, po).is_ok());  // marks everything
  auto again = backup(*repo_, a, "a2", kT0 + 3 * kDay);
  ASSERT_TRUE(again.is_ok());
  EXPECT_GE(again->manifest.stats.new_bytes, 1500000u);
  clock->advance(2 * kDay);
  auto swept = run_prune(*repo_, po);
  ASSERT_TRUE(swept.is_ok());
  EXPECT_GT(swept->packs_deleted, 0u);
  expect_restores_to(again->snapshot_id, a);
  EXPECT_TRUE(check(true).ok());
}

// Crash points: the store refuses every put of one kind from some point on.
TEST_F(UpkeepTest, CrashPointsLeaveACheckableRepositoryAndTheNextBackupWorks) {
  const std::string a = make_source("a", 4);
  struct Point {
    const char* prefix;
    int allow;
  };
  int64_t t = kT0;
  for (const Point& pt : {Point{"data/", 1}, Point{"index/", 0}, Point{"snapshots/", 0}}) {
    SCOPED_TRACE(pt.prefix);
    auto crashing = std::make_unique<test::CrashingStore>(test::must_file_store(repo_dir_), pt.prefix, pt.allow);
    auto repo = test::must_open(std::move(crashing));
    // Data only the run that loses its index has: its packs stay unindexed.
    // (Packs are named by their bytes, so a later run that packs the same
    // chunks the same way stores, and indexes, the same pack again.)
    const std::string extra = a + "/extra";
    const bool index_point = std::string_view(pt.prefix) == "index/";
    if (index_point) test::write_file(extra, test::random_bytes(300000, 77));
    auto r = backup(*repo, a, "a", t += kHour);
    if (index_point) {
      ASSERT_EQ(::unlink(extra.c_str()), 0);
    }
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("injected crash"), std::string::npos) << r.status().to_string();
    EXPECT_EQ(count("snapshots/"), 0u);
    const auto c = check(true);
    EXPECT_TRUE(c.ok()) << ::testing::PrintToString(c.errors);
  }
  // Crashed runs left unindexed packs: reported as harmless.
  EXPECT_FALSE(check(false).warnings.empty());
  auto ok = backup(*repo_, a, "a", t += kHour);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  expect_restores_to(ok->snapshot_id, a);
  EXPECT_TRUE(check(true).ok());
  // Prune removes the crashed runs' leftovers after the grace period.
  auto clock = std::make_shared<test::ManualClock>(t);
  ASSERT_TRUE(run_prune(*repo_, {.grace_ns = kDay, .clock = clock}).is_ok());
  clock->advance(2 * kDay);
  ASSERT_TRUE(run_prune(*repo_, {.grace_ns = kDay, .clock = clock}).is_ok());
  EXPECT_TRUE(check(false).warnings.empty()) << ::testing::PrintToString(check(false).warnings);
  expect_restores_to(ok->snapshot_id, a);
}

// A prune interrupted after writing its replacement index leaves the files
// that index supersedes in the store. They must never come back into the
// index: found against radosgw, where a later prune superseded and deleted
// the replacement, the old index file listing already deleted packs was
// merged again, and the next backup deduplicated against them.
TEST_F(UpkeepTest, SupersededIndexFilesLeftByAnInterruptedPruneNeverComeBack) {
  const std::string a = make_source("a", 6);
  const std::string b = dir_ / "b";
  ASSERT_EQ(::mkdir(b.c_str(), 0755), 0);
  test::write_file(b + "/shared", test::read_file(a + "/unique"));  // b's backup deduplicates it
  test::write_file(b + "/own", test::random_bytes(900000, 61));
  auto ra = backup(*repo_, a, "a", kT0);
  ASSERT_TRUE(ra.is_ok()) << ra.status().to_string();
  auto rb = backup(*repo_, b, "b", kT0 + kHour);
  ASSERT_TRUE(rb.is_ok()) << rb.status().to_string();

  auto clock = std::make_shared<test::ManualClock>(kT0 + kDay);
  const PruneOptions po{.grace_ns = kDay, .clock = clock};
  ASSERT_TRUE(repo_->store().remove(snapshot_key(ra->snapshot_id)).is_ok());
  ASSERT_TRUE(run_prune(*repo_, po).is_ok());  // marks what only a used
  clock->advance(2 * kDay);
  {
    // The sweep writes its replacement index, then every delete is refused.
    FaultPlan refuse;
    refuse.ops = static_cast<unsigned>(StoreOp::kRemove);
    refuse.fail_rate = 1;
    refuse.fail_codes = {Code::kPermissionDenied};
    auto denied = test::must_open(make_fault_injecting_store(test::must_file_store(repo_dir_), refuse));
    ASSERT_FALSE(run_prune(*denied, po).is_ok());
  }
  const size_t index_files = count("index/");
  auto p = run_prune(*repo_, po);
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_GE(p->index_files_removed, 1u) << "the superseded file the interrupted sweep left";
  EXPECT_LT(count("index/"), index_files);

  // Now b goes too: its packs, including the shared one the replacement
  // lists, are swept, and the replacement is superseded in turn.
  ASSERT_TRUE(repo_->store().remove(snapshot_key(rb->snapshot_id)).is_ok());
  ASSERT_TRUE(run_prune(*repo_, po).is_ok());
  clock->advance(2 * kDay);
  auto swept = run_prune(*repo_, po);
  ASSERT_TRUE(swept.is_ok()) << swept.status().to_string();
  EXPECT_GE(swept->index_files_rewritten, 1u);
  const auto c = check(false);
  EXPECT_TRUE(c.ok()) << ::testing::PrintToString(c.errors);
  // The next backup of a must store its data again, not find it in a
  // resurrected index entry.
  auto again = backup(*repo_, a, "a", kT0 + 10 * kDay);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  expect_restores_to(again->snapshot_id, a);
  EXPECT_TRUE(check(true).ok());
}

TEST_F(UpkeepTest, FlakyStoreWithRetriesStillRoundTrips) {
  const std::string a = make_source("a", 5);
  FaultPlan plan;
  plan.seed = 11;
  plan.fail_rate = 0.2;
  plan.ops = static_cast<unsigned>(StoreOp::kPut) | static_cast<unsigned>(StoreOp::kGet);
  RetryPolicy rp;
  rp.max_attempts = 10;
  rp.base_delay = std::chrono::milliseconds(1);
  auto faulty = make_fault_injecting_store(test::must_file_store(repo_dir_), plan);
  auto repo = test::must_open(make_retrying_store(std::move(faulty), rp));
  auto r = backup(*repo, a, "a", kT0);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const std::string target = dir_ / "flaky-restore";
  auto rr = run_restore(*repo, r->snapshot_id, test::restore_opts(target));
  ASSERT_TRUE(rr.is_ok()) << rr.status().to_string();
  EXPECT_TRUE(test::diff_trees(a, target).empty());
}

// A flipped byte in a data blob of a pack: structure check may pass (the
// header is intact); --read-data finds it and names every snapshot and file.
TEST_F(UpkeepTest, ReadDataFindsACorruptedPackAndNamesSnapshotsAndFiles) {
  const std::string a = make_victim_source();
  auto s1 = backup(*repo_, a, "a", kT0);
  ASSERT_TRUE(s1.is_ok());
  test::write_file(a + "/later", "x");
  auto s2 = backup(*repo_, a, "a", kT0 + kHour);
  ASSERT_TRUE(s2.is_ok());

  // Find the pack and blob holding victim's first chunk, flip a byte in it.
  const auto loc = first_chunk_of(test::random_bytes(200000, 77));
  ASSERT_TRUE(loc.has_value());
  ASSERT_NO_FATAL_FAILURE(flip_byte(*loc));
  const auto c = check(true);
  EXPECT_FALSE(c.ok());
  ASSERT_EQ(c.damaged_packs.size(), 1u);
  EXPECT_EQ(c.damaged_packs[0], loc->pack);
  std::set<std::pair<Hash256, std::string>> hit;
  for (const auto& d : c.damaged) hit.emplace(d.snapshot, d.path);
  EXPECT_EQ(hit, (std::set<std::pair<Hash256, std::string>>{{s1->snapshot_id, "sub/victim"},
                                                            {s2->snapshot_id, "sub/victim"}}));
  // Restore refuses the damaged blob instead of writing wrong bytes.
  auto r = run_restore(*repo_, s1->snapshot_id, test::restore_opts(dir_ / "r"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
}

// A damaged manifest (one that does not parse, one whose bytes do not match
// its name) used to stop ls, restore, forget, prune and check at the first.
// Now check names each and checks the rest, forget by policy keeps them,
// prune refuses to delete anything while they are there (they may reference
// any pack), and forget by id removes them.
TEST_F(UpkeepTest, UnreadableManifestsAreReportedKeptByPoliciesAndBlockPruneUntilForgotten) {
  const std::string a = make_source("a", 1);
  auto s1 = backup(*repo_, a, "a", kT0);
  ASSERT_TRUE(s1.is_ok());
  test::write_file(a + "/unique", test::random_bytes(1500000, 99));
  auto s2 = backup(*repo_, a, "a", kT0 + kHour);
  ASSERT_TRUE(s2.is_ok());
  const std::string unparsable = R"({"version":1})";
  const Hash256 bad1 = sha256(unparsable);
  ASSERT_TRUE(repo_->store().put(snapshot_key(bad1), unparsable, {}).is_ok());
  const Hash256 bad2 = sha256("the name of other bytes");
  ASSERT_TRUE(repo_->store().put(snapshot_key(bad2), R"({"version":1,"flipped":true})", {}).is_ok());

  auto c = check(false);
  EXPECT_EQ(c.snapshots, 4u);
  ASSERT_EQ(c.errors.size(), 2u) << ::testing::PrintToString(c.errors);
  for (const auto& bad : {bad1, bad2}) {
    EXPECT_TRUE(std::any_of(c.errors.begin(), c.errors.end(), [&](const std::string& e) {
      return e.find(snapshot_key(bad)) != std::string::npos && e.find("stowctl forget " + bad.hex()) != std::string::npos;
    })) << bad.hex() << ": " << ::testing::PrintToString(c.errors);
  }
  auto forget = run_forget(*repo_, {.policy = {.keep_last = 1}});
  ASSERT_TRUE(forget.is_ok()) << forget.status().to_string();
  std::set<std::pair<Hash256, bool>> decided;
  for (const auto& d : *forget) decided.emplace(d.id, d.keep);
  EXPECT_EQ(decided, (std::set<std::pair<Hash256, bool>>{
                         {s1->snapshot_id, false}, {s2->snapshot_id, true}, {bad1, true}, {bad2, true}}));
  EXPECT_EQ(count("snapshots/"), 3u);

  const size_t packs = count("data/");
  auto p = run_prune(*repo_, {.grace_ns = 0});
  ASSERT_FALSE(p.is_ok());
  EXPECT_EQ(p.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(p.status().message().find("stowctl forget "), std::string::npos) << p.status().message();
  EXPECT_EQ(count("prune/"), 0u);
  EXPECT_EQ(count("data/"), packs);

  ForgetOptions by_id;
  by_id.snapshots = {bad1.hex().substr(0, 8), bad2.hex()};
  auto gone = run_forget(*repo_, by_id);
  ASSERT_TRUE(gone.is_ok()) << gone.status().to_string();
  ASSERT_EQ(gone->size(), 2u);
  EXPECT_TRUE((*gone)[0].unreadable && !(*gone)[0].keep);
  EXPECT_EQ(count("snapshots/"), 1u);
  EXPECT_TRUE(check(false).ok());
  // Which packs hold only s1's data depends on the order the workers
  // chunked the files in: what prune deletes is not asserted, only that it
  // runs again and keeps what s2 needs.
  ASSERT_TRUE(run_prune(*repo_, {.grace_ns = 0}).is_ok());
  ASSERT_TRUE(run_prune(*repo_, {.grace_ns = 0}).is_ok());
  EXPECT_TRUE(check(true).ok());
  expect_restores_to(s2->snapshot_id, a);
}

// A pack lost from the store used to poison every later backup: the index
// still listed its blobs, backups deduplicated against them ("0 B new") and
// prune kept the entries. prune now drops the index entries of missing
// packs; until the next backup only the old snapshot is damaged, and that
// backup stores the data again (which makes the old snapshot whole too).
TEST_F(UpkeepTest, PruneDropsTheIndexEntriesOfALostPackSoTheNextBackupStoresItsDataAgain) {
  // Victim's first chunk is in a pack filled (1 MiB) before the tree blobs
  // are written: s1's trees stay readable.
  const size_t kVictim = 3u << 20;
  const std::string a = make_victim_source(kVictim);
  auto s1 = backup(*repo_, a, "a", kT0);
  ASSERT_TRUE(s1.is_ok());
  const auto loc = first_chunk_of(test::random_bytes(kVictim, 77));
  ASSERT_TRUE(loc.has_value());
  ASSERT_EQ(::unlink((repo_dir_ + "/" + pack_key(loc->pack)).c_str()), 0);

  auto dry = run_prune(*repo_, {.grace_ns = 0, .dry_run = true});
  ASSERT_TRUE(dry.is_ok()) << dry.status().to_string();
  EXPECT_EQ(dry->lost_packs, std::vector<PackId>{loc->pack});
  auto p = run_prune(*repo_, {.grace_ns = 0});
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_EQ(p->lost_packs, std::vector<PackId>{loc->pack});
  EXPECT_FALSE(first_chunk_of(test::random_bytes(kVictim, 77)).has_value());
  auto c = check(false);
  EXPECT_FALSE(c.damaged.empty());
  for (const auto& d : c.damaged) EXPECT_EQ(d.snapshot, s1->snapshot_id) << d.path << ": " << d.problem;

  auto s2 = backup(*repo_, a, "a", kT0 + kHour);
  ASSERT_TRUE(s2.is_ok()) << s2.status().to_string();
  EXPECT_GT(s2->manifest.stats.new_bytes, 0u);
  expect_restores_to(s2->snapshot_id, a);
  // The same blobs are indexed again: s1, which uses them, is whole again too.
  c = check(true);
  EXPECT_TRUE(c.ok()) << ::testing::PrintToString(c.errors);
  expect_restores_to(s1->snapshot_id, a);
}

// check --read-data --repair takes a damaged pack out of the index after
// copying its intact blobs into a new pack: only the damaged file of the
// old snapshot is then damaged, and the next backup stores its data again.
TEST_F(UpkeepTest, CheckRepairTakesADamagedPackOutOfServiceAndKeepsItsIntactBlobs) {
  const std::string a = make_victim_source();
  auto s1 = backup(*repo_, a, "a", kT0);
  ASSERT_TRUE(s1.is_ok());
  const auto loc = first_chunk_of(test::random_bytes(200000, 77));
  ASSERT_TRUE(loc.has_value());
  ASSERT_NO_FATAL_FAILURE(flip_byte(*loc));

  auto repaired = run_check(*repo_, {.read_data = true, .repair = true});
  ASSERT_TRUE(repaired.is_ok()) << repaired.status().to_string();
  EXPECT_EQ(repaired->packs_unindexed, std::vector<PackId>{loc->pack});
  EXPECT_EQ(repaired->packs_salvaged, 1u);
  using Hits = std::set<std::pair<Hash256, std::string>>;
  auto hits = [](const CheckReport& c) {
    Hits h;
    for (const auto& d : c.damaged) h.emplace(d.snapshot, d.path);
    return h;
  };
  EXPECT_EQ(hits(*repaired), (Hits{{s1->snapshot_id, "sub/victim"}}));
  auto after = check(true);
  EXPECT_TRUE(after.damaged_packs.empty());
  EXPECT_EQ(hits(after), (Hits{{s1->snapshot_id, "sub/victim"}}));

  auto s2 = backup(*repo_, a, "a", kT0 + kHour);
  ASSERT_TRUE(s2.is_ok()) << s2.status().to_string();
  EXPECT_GT(s2->manifest.stats.new_bytes, 0u);
  expect_restores_to(s2->snapshot_id, a);
  // The damaged blob is stored again under its id: s1 is whole again too.
  after = check(true);
  EXPECT_TRUE(after.ok()) << ::testing::PrintToString(after.errors);
  expect_restores_to(s1->snapshot_id, a);
}

// An index file that describes a healthy pack wrongly makes check call the
// pack damaged. Repair, even without --read-data, must not take data out of
// service: it copies every blob the pack's own header lists, each verified,
// and prune may then delete the old pack without any snapshot losing data.
TEST_F(UpkeepTest, CheckRepairOfAPackAnIndexFileDescribesWronglyLosesNothing) {
  const std::string a = make_victim_source();
  auto s1 = backup(*repo_, a, "a", kT0);
  ASSERT_TRUE(s1.is_ok());
  const auto loc = first_chunk_of(test::random_bytes(200000, 77));
  ASSERT_TRUE(loc.has_value());
  auto files = repo_->load_index_files();
  ASSERT_TRUE(files.is_ok());
  for (const auto& [id, f] : *files) {
    if (std::none_of(f.packs.begin(), f.packs.end(), [&](const IndexPack& p) { return p.id == loc->pack; })) continue;
    IndexFile wrong = f;
    for (auto& p : wrong.packs) {
      if (p.id == loc->pack) p.length += 1;
    }
    wrong.supersedes = {id};
    ASSERT_TRUE(repo_->save_index(wrong).is_ok());
    ASSERT_TRUE(repo_->store().remove(index_key(id)).is_ok());
  }

  auto repaired = run_check(*repo_, {.read_data = false, .repair = true});
  ASSERT_TRUE(repaired.is_ok()) << repaired.status().to_string();
  EXPECT_EQ(repaired->packs_unindexed, std::vector<PackId>{loc->pack});
  EXPECT_EQ(repaired->packs_salvaged, 1u);
  // Copied whole, the pack has the same bytes, so the same id: it is simply
  // indexed correctly again. Prune, past the grace period, finds nothing of
  // it to delete, and nothing is damaged.
  auto clock = std::make_shared<test::ManualClock>(kT0 + kDay);
  ASSERT_TRUE(run_prune(*repo_, {.grace_ns = kDay, .clock = clock}).is_ok());
  clock->advance(2 * kDay);
  ASSERT_TRUE(run_prune(*repo_, {.grace_ns = kDay, .clock = clock}).is_ok());
  EXPECT_TRUE(repo_->store().head(pack_key(loc->pack)).is_ok()) << "the healthy pack was deleted";
  const auto after = check(true);
  EXPECT_TRUE(after.ok()) << ::testing::PrintToString(after.errors);
  expect_restores_to(s1->snapshot_id, a);
}

// ---- hostile snapshots

class HostileTest : public UpkeepTest {
 protected:
  // Stores `trees` (raw JSON, root last) as tree blobs in one pack, indexes
  // it and writes a manifest whose root is the last tree. Returns the id.
  Hash256 plant(const std::vector<std::string>& root_trees, const std::vector<std::string>& data = {}) {
    BlobCodec codec;
    PackWriter w;
    std::vector<BlobId> roots;
    for (const auto& d : data) {
      auto e = codec.encode(BlobType::kData, d);
      EXPECT_TRUE(e.is_ok() && w.add(*e).is_ok());
    }
    for (const auto& t : root_trees) {
      auto e = codec.encode(BlobType::kTree, t);
      EXPECT_TRUE(e.is_ok() && w.add(*e).is_ok());
      roots.push_back(e->id);
    }
    store(w);
    SnapshotManifest m;
    m.volume = "evil";
    m.hostname = "h";
    m.time_ns = kT0;
    m.tree = roots;
    auto json = serialize_snapshot(m);
    auto id = repo_->save_snapshot(*json);
    EXPECT_TRUE(id.is_ok());
    return *id;
  }
  // Finishes `w`, stores the pack and an index file listing it.
  void store(PackWriter& w) {
    auto pack = w.finish();
    ASSERT_TRUE(pack.is_ok());
    ASSERT_TRUE(repo_->save_pack(*pack).is_ok());
    IndexFile f;
    f.packs.push_back({pack->id, static_cast<uint32_t>(pack->data.size()), pack->blobs});
    ASSERT_TRUE(repo_->save_index(f).is_ok());
  }
  // Restores `id` into a fresh target inside an otherwise empty sandbox and
  // checks that it fails naming `entry`, and that nothing is left: nothing
  // appeared next to the target, and the target, which the failed restore
  // made, is removed again.
  void expect_refused(const Hash256& id, const std::string& entry) {
    const std::string sandbox = dir_ / ("sandbox" + std::to_string(restores_++));
    ASSERT_EQ(::mkdir(sandbox.c_str(), 0755), 0);
    auto r = run_restore(*repo_, id, test::restore_opts(sandbox + "/target"));
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find(entry), std::string::npos) << r.status().to_string();
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(sandbox)) names.push_back(e.path().filename());
    EXPECT_EQ(names, std::vector<std::string>{});
  }
};

std::string file_entry(const std::string& name, const std::string& extra = "") {
  return R"({"type":"file","name":")" + name + R"(","mode":420,"uid":0,"gid":0,"mtime_ns":1,"ctime_ns":1,"inode":1,"size":0)" +
         extra + "}";
}

std::string dir_entry(const std::string& name, const BlobId& subtree) {
  return R"({"type":"dir","name":")" + name + R"(","mode":493,"uid":0,"gid":0,"mtime_ns":1,"ctime_ns":1,"inode":2,"subtree":[")" +
         subtree.hex() + R"("]})";
}

TEST_F(HostileTest, DotDotSlashAbsoluteAndDuplicateNamesAreRefused) {
  expect_refused(plant({R"({"entries":[)" + file_entry("..") + "]}"}), "..");
  expect_refused(plant({R"({"entries":[)" + file_entry("a/../../escape") + "]}"}), "a/../../escape");
  expect_refused(plant({R"({"entries":[)" + file_entry("/etc/passwd") + "]}"}), "/etc/passwd");
  expect_refused(plant({R"({"entries":[)" + file_entry("dup") + "," + file_entry("dup") + "]}"}), "dup");
}

TEST_F(HostileTest, SymlinkThenFileThroughItAcrossSplitTreesIsRefused) {
  // A directory split in two tree blobs: blob 1 makes "a" a symlink to the
  // outside, blob 2 tries "a" again as a directory holding a file.
  const std::string sub = R"({"entries":[)" + file_entry("pwned") + "]}";
  BlobCodec codec;
  auto sub_blob = codec.encode(BlobType::kTree, sub);
  ASSERT_TRUE(sub_blob.is_ok());
  const std::string link =
      R"({"entries":[{"type":"symlink","name":"a","mode":511,"uid":0,"gid":0,"mtime_ns":1,"ctime_ns":1,"inode":2,"target":"/tmp"}]})";
  const std::string dir = R"({"entries":[{"type":"dir","name":"a","mode":493,"uid":0,"gid":0,"mtime_ns":1,"ctime_ns":1,"inode":3,"subtree":[")" +
                          sub_blob->id.hex() + R"("]}]})";
  // The sub tree must be stored too: plant it as data of the same pack.
  PackWriter w;
  ASSERT_TRUE(w.add(*sub_blob).is_ok());
  ASSERT_NO_FATAL_FAILURE(store(w));
  expect_refused(plant({link, dir}), "a");
}

TEST_F(HostileTest, SizeThatContradictsChunksIsRefused) {
  const std::string data = "hello";
  const std::string tree = R"({"entries":[{"type":"file","name":"liar","mode":420,"uid":0,"gid":0,"mtime_ns":1,"ctime_ns":1,"inode":1,"size":999999,"chunks":[")" +
                           sha256(data).hex() + R"("]}]})";
  expect_refused(plant({tree}, {data}), "liar");
}

// Members of one hard link group must hold the same content (FORMAT.md
// §6.2). A crafted tree whose second member differs used to be restored with
// the first member's content and no error.
TEST_F(HostileTest, HardLinkMembersWithOtherContentAreRefused) {
  const std::string one = "hello", two = "other content";
  auto member = [](const std::string& name, const std::string& data) {
    return R"({"type":"file","name":")" + name + R"(","mode":420,"uid":0,"gid":0,"mtime_ns":1,"ctime_ns":1,"inode":7,"size":)" +
           std::to_string(data.size()) + R"(,"chunks":[")" + sha256(data).hex() + R"("],"hardlink":1})";
  };
  expect_refused(plant({R"({"entries":[)" + member("a", one) + "," + member("b", two) + "]}"}, {one, two}), "b: hard link of a");
  const Hash256 same = plant({R"({"entries":[)" + member("a", one) + "," + member("b", one) + "]}"}, {one});
  ASSERT_TRUE(run_restore(*repo_, same, test::restore_opts(dir_ / "linked")).is_ok());
  EXPECT_EQ(test::read_file(dir_ / "linked/b"), one);
}

// Two index entries at one place in a pack: the real chunk of "a" and, from
// a planted index file, another id of the same length for "b". Restore
// decodes a blob once for all files that share it, but only when it is the
// same blob: "b" must not get a's bytes unchecked.
TEST_F(HostileTest, AnIndexListingAnotherBlobAtAChunksPlaceIsCaught) {
  const std::string one = "the bytes of a", two = "what b must be";
  ASSERT_EQ(one.size(), two.size());
  auto entry = [](const std::string& name, const std::string& data, int inode) {
    return R"({"type":"file","name":")" + name + R"(","mode":420,"uid":0,"gid":0,"mtime_ns":1,"ctime_ns":1,"inode":)" +
           std::to_string(inode) + R"(,"size":)" + std::to_string(data.size()) + R"(,"chunks":[")" + sha256(data).hex() +
           R"("]})";
  };
  const Hash256 id = plant({R"({"entries":[)" + entry("a", one, 1) + "," + entry("b", two, 2) + "]}"}, {one});
  auto index = repo_->load_index();
  ASSERT_TRUE(index.is_ok());
  const auto at = index->find(sha256(one));
  ASSERT_TRUE(at.has_value());
  ASSERT_EQ(at->compression, Compression::kRaw);
  auto stored = repo_->store().get(pack_key(at->pack));
  ASSERT_TRUE(stored.is_ok());
  IndexFile planted;
  planted.packs.push_back({at->pack, static_cast<uint32_t>(stored->size()),
                           {PackBlob{sha256(two), BlobType::kData, Compression::kRaw, at->offset,
                                     static_cast<uint32_t>(two.size()), static_cast<uint32_t>(two.size())}}});
  ASSERT_TRUE(repo_->save_index(planted).is_ok());
  expect_refused(id, sha256(two).hex());
}

// A parent snapshot whose entry for an unchanged file lists chunks that do
// not add up to the file (a damaged or planted tree) must not pass that on:
// the next backup reads the file again instead of copying the entry.
TEST_F(HostileTest, AParentEntryWhoseChunksDoNotCoverTheFileIsNotReused) {
  const std::string src = dir_ / "live";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  test::write_file(src + "/liar", "hello world");
  struct stat st {};
  ASSERT_EQ(::stat((src + "/liar").c_str(), &st), 0);
  auto ns = [](const timespec& t) { return std::to_string(int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec); };
  const std::string tree = R"({"entries":[{"type":"file","name":"liar","mode":)" + std::to_string(st.st_mode & 07777) +
                           R"(,"uid":)" + std::to_string(st.st_uid) + R"(,"gid":)" + std::to_string(st.st_gid) +
                           R"(,"mtime_ns":)" + ns(st.st_mtim) + R"(,"ctime_ns":)" + ns(st.st_ctim) + R"(,"inode":)" +
                           std::to_string(st.st_ino) + R"(,"size":11,"chunks":[")" + sha256("hello").hex() + R"("]}]})";
  const Hash256 parent = plant({tree}, {"hello"});
  auto opts = test::backup_opts(src, "evil", kT0 + 1);
  opts.parent = parent;
  auto b = run_backup(*repo_, opts);
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  ASSERT_TRUE(run_restore(*repo_, b->snapshot_id, test::restore_opts(dir_ / "back")).is_ok());
  EXPECT_EQ(test::read_file(dir_ / "back/liar"), "hello world");
}

// Trees are read ahead of the planner (TreePrefetcher). A hostile entry in
// the first of many directories stops the restore with that entry's error
// while the reader is blocked further ahead; nothing hangs or leaks.
TEST_F(HostileTest, AnErrorEarlyInALargeTreeStopsTheTreesReadAhead) {
  const std::string data = "hello";
  BlobCodec codec;
  PackWriter w;
  std::string root = R"({"entries":[)";
  for (int i = 0; i < 60; ++i) {
    char name[8];
    std::snprintf(name, sizeof name, "d%02d", i);
    const std::string size = i == 0 ? "999999" : "5";  // d00/f00 contradicts its chunk
    const std::string sub = R"({"entries":[{"type":"file","name":"f","mode":420,"uid":0,"gid":0,"mtime_ns":1,"ctime_ns":1,"inode":)" +
                            std::to_string(i + 10) + R"(,"size":)" + size + R"(,"chunks":[")" + sha256(data).hex() + R"("]}]})";
    auto blob = codec.encode(BlobType::kTree, sub);
    ASSERT_TRUE(blob.is_ok());
    ASSERT_TRUE(w.add(*blob).is_ok());
    root += std::string(i ? "," : "") + R"({"type":"dir","name":")" + name +
            R"(","mode":493,"uid":0,"gid":0,"mtime_ns":1,"ctime_ns":1,"inode":)" + std::to_string(i + 100) +
            R"(,"subtree":[")" + blob->id.hex() + R"("]})";
  }
  root += "]}";
  ASSERT_NO_FATAL_FAILURE(store(w));
  expect_refused(plant({root}, {data}), "d00/f");
}

// A tree whose chunk sum does not match the chunk's bytes restores fine, but
// the next backup of the file would trust the sum: check --read-data reports
// it, naming the snapshot and file; a structure-only check cannot see it.
TEST_F(HostileTest, ReadDataFindsAChunkSumThatDoesNotMatchItsChunk) {
  const std::string data = "hello, chunk";
  auto tree = [&](const ChunkSum& sum) {
    return R"({"entries":[{"type":"file","name":"f","mode":420,"uid":0,"gid":0,"mtime_ns":1,"ctime_ns":1,"inode":1,"size":)" +
           std::to_string(data.size()) + R"(,"chunks":[")" + sha256(data).hex() + R"("],"chunk_xxh128":")" + sum.hex() +
           R"("}]})";
  };
  const ChunkSummer sum(repo_->config().id);
  plant({tree(sum(data))}, {data});
  EXPECT_TRUE(check(true).ok());  // the right sum
  const Hash256 bad = plant({tree(sum("something else"))});
  EXPECT_TRUE(check(false).ok());
  const auto c = check(true);
  ASSERT_EQ(c.errors.size(), 1u) << ::testing::PrintToString(c.errors);
  EXPECT_NE(c.errors[0].find("snapshot " + bad.hex() + ": f: chunk 0"), std::string::npos) << c.errors[0];
  EXPECT_NE(c.errors[0].find("chunk_xxh128"), std::string::npos) << c.errors[0];
  EXPECT_TRUE(c.damaged.empty());
  EXPECT_TRUE(run_restore(*repo_, bad, test::restore_opts(dir_ / "restored")).is_ok());
  EXPECT_EQ(test::read_file(dir_ / "restored/f"), data);
}

// 40 levels of directories {a, b}, both naming the same subtree, over one
// file whose chunk is missing: 2^40 paths, 41 distinct trees. check reads
// each tree once (it used to walk every path: hours), reports the file at
// the first path that reaches it, and each other way into the damaged
// subtree once, naming that first path.
TEST_F(HostileTest, CheckReadsASharedSubtreeOnceAndNamesEachWayIntoIt) {
  const std::string missing = sha256("not stored").hex();
  BlobCodec codec;
  PackWriter w;
  std::string tree = R"({"entries":[{"type":"file","name":"f","mode":420,"uid":0,"gid":0,"mtime_ns":1,"ctime_ns":1,"inode":1,"size":3,"chunks":[")" +
                     missing + R"("]}]})";
  constexpr int kLevels = 40;
  for (int level = 0; level < kLevels; ++level) {
    auto blob = codec.encode(BlobType::kTree, tree);
    ASSERT_TRUE(blob.is_ok());
    ASSERT_TRUE(w.add(*blob).is_ok());
    tree = R"({"entries":[)" + dir_entry("a", blob->id) + "," + dir_entry("b", blob->id) + "]}";
  }
  ASSERT_NO_FATAL_FAILURE(store(w));
  const Hash256 id = plant({tree});
  const auto c = check(false);
  ASSERT_EQ(c.damaged.size(), kLevels + 1u);
  std::string deepest;
  for (int i = 0; i < kLevels; ++i) deepest += "a/";
  EXPECT_EQ(c.damaged[0].snapshot, id);
  EXPECT_EQ(c.damaged[0].path, deepest + "f");
  EXPECT_NE(c.damaged[0].problem.find(missing), std::string::npos) << c.damaged[0].problem;
  // Deepest first: the walk finds the file before it returns to each "b".
  EXPECT_EQ(c.damaged[1].path, deepest.substr(0, 2 * (kLevels - 1)) + "b");
  EXPECT_NE(c.damaged[1].problem.find("same directory as " + deepest.substr(0, 2 * kLevels - 1)), std::string::npos)
      << c.damaged[1].problem;
  EXPECT_EQ(c.damaged.back().path, "b");
  EXPECT_EQ(c.errors.size(), c.damaged.size());
}

// Trees may nest 4096 directories deep (FORMAT.md §6.2). Restore planned
// them recursively and overflowed the stack long before (depth 1500 under
// ASan); it now walks them with a stack of its own. One level more is refused.
TEST_F(HostileTest, RestoreAndCheckWorkAtTheDepthLimitAndRefuseOneMore) {
  for (const int depth : {4096, 4097}) {
    BlobCodec codec;
    PackWriter w;
    std::string tree = R"({"entries":[)" + file_entry("bottom") + "]}";
    for (int level = 0; level < depth; ++level) {
      auto blob = codec.encode(BlobType::kTree, tree);
      ASSERT_TRUE(blob.is_ok());
      ASSERT_TRUE(w.add(*blob).is_ok());
      tree = R"({"entries":[)" + dir_entry("d", blob->id) + "]}";
    }
    ASSERT_NO_FATAL_FAILURE(store(w));
    const Hash256 id = plant({tree});
    const std::string target = dir_ / ("deep" + std::to_string(depth));
    auto r = run_restore(*repo_, id, test::restore_opts(target));
    if (depth == 4096) {
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
      EXPECT_EQ(r->dirs, 4096u);
      EXPECT_EQ(r->files, 1u);
    } else {
      ASSERT_FALSE(r.is_ok());
      EXPECT_NE(r.status().message().find("nesting deeper than 4096"), std::string::npos) << r.status().to_string();
    }
  }
  const auto c = check(false);
  ASSERT_EQ(c.damaged.size(), 1u) << ::testing::PrintToString(c.errors);
  EXPECT_NE(c.damaged[0].problem.find("nesting deeper than 4096"), std::string::npos);
}

// A symlink planted in a target that the user restores into with overwrite
// is replaced, never followed.
TEST_F(UpkeepTest, RestoreNeverFollowsASymlinkPlantedInTheTarget) {
  const std::string src = dir_ / "src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((src + "/victim").c_str(), 0755), 0);
  test::write_file(src + "/victim/f", "payload");
  test::write_file(src + "/file", "payload2");
  auto b = backup(*repo_, src, "s", kT0);
  ASSERT_TRUE(b.is_ok());

  const std::string outside = dir_ / "outside";
  ASSERT_EQ(::mkdir(outside.c_str(), 0755), 0);
  const std::string target = dir_ / "target";
  ASSERT_EQ(::mkdir(target.c_str(), 0755), 0);
  ASSERT_EQ(::symlink(outside.c_str(), (target + "/victim").c_str()), 0);
  ASSERT_EQ(::symlink((outside + "/file").c_str(), (target + "/file").c_str()), 0);

  auto refused = run_restore(*repo_, b->snapshot_id, test::restore_opts(target));
  EXPECT_EQ(refused.status().code(), Code::kFailedPrecondition);
  auto o = test::restore_opts(target);
  o.overwrite = true;
  auto r = run_restore(*repo_, b->snapshot_id, o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(std::filesystem::is_empty(outside));
  struct stat st {};
  ASSERT_EQ(::lstat((target + "/victim").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(test::read_file(target + "/victim/f"), "payload");
  EXPECT_EQ(test::read_file(target + "/file"), "payload2");
}

}  // namespace
}  // namespace stowage
