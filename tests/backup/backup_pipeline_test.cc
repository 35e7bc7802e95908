// Backup and restore round trips over the real file store: random trees with
// every entry kind, incremental backups after each kind of change, dedup
// across sources, concurrent backups into one repository.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "backup/backup_env.h"
#include "backup/test_data.h"
#include "backup/tree_fixture.h"
#include "repo_util.h"
#include "stowage/chunker.h"
#include "stowage/hash.h"
#include "stowage/upkeep.h"

namespace stowage {
namespace {

using test::TempDir;

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = Repository::init(test::must_file_store(dir_ / "repo"), test::small_pack_config());
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    repo_ = std::move(r).value();
  }
  BackupResult backup(const std::string& src, const std::string& name, int64_t t = 0) {
    auto r = run_backup(*repo_, test::backup_opts(src, name, t));
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? std::move(r).value() : BackupResult{};
  }
  void expect_restores_to(const Hash256& id, const std::string& expected) {
    test::expect_restores_to(*repo_, id, dir_ / ("restore-" + std::to_string(restores_++)), expected);
  }
  // Backs `src` up again without a parent: its root tree must be the one
  // `with_parent` got by reusing chunks in place (same chunks, same sums).
  void expect_tree_of_a_backup_without_parent(const std::string& src, const std::string& name, int64_t t,
                                              const BackupResult& with_parent) {
    BackupOptions o = test::backup_opts(src, name, t);
    o.use_parent = false;
    const auto fresh = run_backup(*repo_, o);
    ASSERT_TRUE(fresh.is_ok()) << fresh.status().to_string();
    EXPECT_EQ(fresh->manifest.stats.bytes_matched, 0u);
    EXPECT_EQ(fresh->manifest.tree, with_parent.manifest.tree) << "chunks or chunk sums differ";
  }
  void expect_check_clean() {
    auto c = run_check(*repo_, {.read_data = true});
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    EXPECT_TRUE(c->ok()) << ::testing::PrintToString(c->errors);
  }
  TempDir dir_{"stowage-pipeline"};
  std::unique_ptr<Repository> repo_;
  int restores_ = 0;
};

TEST_F(PipelineTest, RoundTripOfEveryEntryKindIncluding64MiBFile) {
  const std::string src = dir_ / "src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  test::make_tree(src, {.seed = 42, .dirs = 5, .files_per_dir = 4, .big_file = true});
  const auto b = backup(src, "vol1");
  EXPECT_GT(b.manifest.stats.files, 20u);
  EXPECT_EQ(b.manifest.volume, "vol1");
  EXPECT_EQ(b.manifest.hostname, "test-host");
  EXPECT_EQ(b.manifest.source_path, src);
  // Holes were neither read nor stored: less than the 8 MiB + 3 MiB of sparse files.
  EXPECT_LT(b.manifest.stats.bytes_read, b.manifest.stats.bytes - (10u << 20));
  expect_restores_to(b.snapshot_id, src);
  EXPECT_LT(test::allocated_bytes(dir_ / "restore-0/sparse"), 1u << 20);
  expect_check_clean();
}

// Files with 1 MiB of data or more are restored with O_DIRECT: whole blocks
// at once, the blocks that chunk boundaries cut collected from the fetchers
// that hold their pieces. Sizes, chunk boundaries and data ranges that are
// not block-aligned, a chunk that repeats within a file, and a hole all come
// back exactly, as through the page cache, also when the blocks that chunk
// boundaries cut are merged on the disk for want of memory.
TEST_F(PipelineTest, LargeFilesRestoreExactlyWithDirectWrites) {
  const std::string src = dir_ / "src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  auto write_at = [&](const std::string& name, const std::vector<std::pair<uint64_t, std::string>>& parts,
                      uint64_t size) {
    const int fd = ::open((src + "/" + name).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    for (const auto& [off, bytes] : parts) {
      ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(off)), static_cast<ssize_t>(bytes.size()));
    }
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
    ::close(fd);
  };
  write_at("unaligned", {{0, test::random_bytes((5u << 20) + 123, 1)}}, (5u << 20) + 123);
  write_at("aligned", {{0, test::random_bytes(2u << 20, 2)}}, 2u << 20);
  std::string repeated;
  for (int i = 0; i < 6; ++i) repeated += test::random_bytes(512 * 1024, 3);  // one chunk, repeated
  write_at("repeated", {{0, repeated + "tail"}}, repeated.size() + 4);
  // Data, a hole of 12 MiB, data, then a hole to the end.
  write_at("sparse", {{0, test::random_bytes((1u << 20) + 4096, 4)}, {16u << 20, test::random_bytes(3u << 20, 5)}},
           (20u << 20) + 77);
  write_at("small", {{0, test::random_bytes(100 * 1024 + 5, 6)}}, 100 * 1024 + 5);
  const auto b = backup(src, "direct");

  // Restores into dir_/name with `o` adjusted by `adjust`, expects src back,
  // and returns how many files went direct.
  auto restore = [&](const std::string& name, const std::function<void(RestoreOptions&)>& adjust) -> uint64_t {
    const std::string target = dir_ / name;
    RestoreOptions o = test::restore_opts(target);
    o.workers = 8;
    adjust(o);
    auto r = run_restore(*repo_, b.snapshot_id, o);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    if (!r.is_ok()) return 0;
    EXPECT_GT(r->blobs_fetched, 8u);
    EXPECT_TRUE(test::diff_trees(src, target).empty()) << name << ": " << ::testing::PrintToString(test::diff_trees(src, target));
    return r->files_direct;
  };
  EXPECT_EQ(restore("restore-direct", [](RestoreOptions&) {}), 4u)
      << "the four files of 1 MiB or more; the target's file system must allow O_DIRECT";
  EXPECT_LT(test::allocated_bytes(dir_ / "restore-direct/sparse"), 5u << 20) << "the hole was filled";
  // With no memory for partial blocks, each is merged on the disk.
  EXPECT_EQ(restore("restore-merged", [](RestoreOptions& o) { o.partial_block_memory = 0; }), 4u);
  // And the same through the page cache.
  EXPECT_EQ(restore("restore-buffered", [](RestoreOptions& o) { o.direct_io = false; }), 0u);
}

// Files backed up at the same time still have their chunks side by side in
// the packs, in file order (an encoder's batch, a small file), rather than
// interleaved chunk by chunk with the other threads': restore writes each
// such run with one call.
TEST_F(PipelineTest, AFilesChunksLieSideBySideInThePack) {
  const std::string src = dir_ / "src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  for (int i = 0; i < 8; ++i) {
    // Four large files (encoded by the encoders) and four of 1-3 MiB (by the workers).
    const size_t size = i < 4 ? (6u << 20) : ((1u + i % 3) << 20);
    test::write_file(src + "/f" + std::to_string(i), test::random_bytes(size, 100 + i));
  }
  BackupOptions o = test::backup_opts(src, "side");
  o.workers = 4;
  const auto b = run_backup(*repo_, o);
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  auto index = repo_->load_index();
  ASSERT_TRUE(index.is_ok()) << index.status().to_string();
  BlobCodec codec;
  auto entries = repo_util::load_dir(*repo_, *index, codec, b->manifest.tree);
  ASSERT_TRUE(entries.is_ok()) << entries.status().to_string();
  size_t chunks = 0, runs = 0;
  for (const auto& e : *entries) {
    std::optional<BlobLocation> prev;
    for (const auto& c : e.chunks) {
      const auto loc = index->find(c);
      ASSERT_TRUE(loc.has_value());
      ++chunks;
      if (!prev || prev->pack != loc->pack || prev->offset + prev->stored_length != loc->offset) ++runs;
      prev = loc;
    }
  }
  EXPECT_GT(chunks, 300u);
  // At most one run per encoder batch (1 MiB: 24 here), per 1 MiB a worker
  // collects of a small file (about 12), and per pack boundary (packs here
  // are 1 MiB: about 32), so about 70 of some 450 chunks (measured: 53-59).
  // Added one chunk at a time they made 113-117 runs.
  EXPECT_LT(runs, chunks / 5) << runs << " runs of " << chunks << " chunks";
}

// Directories get their metadata last, deepest first, each opened through
// its ancestors: every one of a branching tree, restrictive modes included,
// gets exactly its own mode and mtime.
TEST_F(PipelineTest, EveryDirectoryOfABranchingTreeGetsItsOwnModeAndTime) {
  const std::string src = dir_ / "branches";
  const std::vector<std::pair<std::string, unsigned>> dirs = {
      {"a", 0750}, {"a/b", 0700}, {"a/b/c", 0500}, {"a/b/c/d", 0555}, {"a/e", 0711}, {"a/e/f", 0755}, {"g", 0500}};
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  for (const auto& [rel, mode] : dirs) {
    ASSERT_EQ(::mkdir((src + "/" + rel).c_str(), 0755), 0);
    test::write_file(src + "/" + rel + "/file", rel);
  }
  // Deepest first, as restore does: a mode set on a parent must not stop the
  // setup (as another user) from reaching its children.
  int64_t sec = 1600000000;
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    const std::string path = src + "/" + it->first;
    ASSERT_EQ(::chmod(path.c_str(), it->second), 0);
    ++sec;
    const timespec times[2] = {{sec, 0}, {sec, sec % 1000 * 1000}};
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  }
  const auto b = backup(src, "branches");
  const std::string target = dir_ / "branches-back";
  ASSERT_TRUE(run_restore(*repo_, b.snapshot_id, test::restore_opts(target)).is_ok());
  for (const auto& [rel, mode] : dirs) {
    struct stat want {}, got {};
    ASSERT_EQ(::stat((src + "/" + rel).c_str(), &want), 0);
    ASSERT_EQ(::stat((target + "/" + rel).c_str(), &got), 0) << rel;
    EXPECT_EQ(got.st_mode & 07777, mode) << rel;
    EXPECT_EQ(got.st_mtim.tv_sec, want.st_mtim.tv_sec) << rel;
    EXPECT_EQ(got.st_mtim.tv_nsec, want.st_mtim.tv_nsec) << rel;
    EXPECT_EQ(test::read_file(target + "/" + rel + "/file"), rel);
  }
}

TEST_F(PipelineTest, RestoreRefusesNonEmptyTargetUnlessOverwrite) {
  const std::string src = dir_ / "src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  test::make_tree(src, {.seed = 3, .dirs = 1, .files_per_dir = 2});
  const auto b = backup(src, "vol");
  const std::string target = dir_ / "target";
  ASSERT_EQ(::mkdir(target.c_str(), 0755), 0);
  test::write_file(target + "/f0", "old content");
  auto r = run_restore(*repo_, b.snapshot_id, test::restore_opts(target));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(test::read_file(target + "/f0"), "old content");
  auto o = test::restore_opts(target);
  o.overwrite = true;
  r = run_restore(*repo_, b.snapshot_id, o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(test::diff_trees(src, target).empty());
}

// The backed-up directory's own owner, mode, xattrs and mtime are in the
// manifest and given to the restore target (a fresh one, or an existing one
// with overwrite); a manifest without the record leaves the target alone.
TEST_F(PipelineTest, RestoreGivesTheTargetTheSourceRootsMetadata) {
  const std::string src = dir_ / "src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  test::write_file(src + "/f", "data");
  ASSERT_EQ(::chmod(src.c_str(), 02750), 0);
  const bool as_root = ::geteuid() == 0;
  if (as_root) {
    ASSERT_EQ(::chown(src.c_str(), 1234, 5678), 0);
  }
  ASSERT_EQ(::setxattr(src.c_str(), "user.stowage.root", "r\0v", 3, 0), 0) << std::strerror(errno);
  const timespec times[2] = {{1700000000, 123456789}, {1700000000, 123456789}};
  ASSERT_EQ(::utimensat(AT_FDCWD, src.c_str(), times, 0), 0);
  struct stat want {};
  ASSERT_EQ(::stat(src.c_str(), &want), 0);

  const auto b = backup(src, "vol");
  ASSERT_TRUE(b.manifest.root.has_value());
  EXPECT_EQ(b.manifest.root->mode, 02750u);
  EXPECT_EQ(b.manifest.root->uid, want.st_uid);
  EXPECT_EQ(b.manifest.root->mtime_ns, 1700000000123456789);

  auto expect_root_like_src = [&](const std::string& target) {
    struct stat got {};
    ASSERT_EQ(::stat(target.c_str(), &got), 0);
    EXPECT_EQ(got.st_mode & 07777, 02750u);
    EXPECT_EQ(got.st_uid, want.st_uid);
    EXPECT_EQ(got.st_gid, want.st_gid);
    EXPECT_EQ(got.st_mtim.tv_sec, 1700000000);
    EXPECT_EQ(got.st_mtim.tv_nsec, 123456789);
    char value[8] = {};
    EXPECT_EQ(::getxattr(target.c_str(), "user.stowage.root", value, sizeof value), 3);
    EXPECT_EQ(std::string(value, 3), std::string("r\0v", 3));
    EXPECT_EQ(test::read_file(target + "/f"), "data");
  };
  const std::string fresh = dir_ / "fresh";
  auto r = run_restore(*repo_, b.snapshot_id, test::restore_opts(fresh));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r->root_restored);
  expect_root_like_src(fresh);

  const std::string existing = dir_ / "existing";
  ASSERT_EQ(::mkdir(existing.c_str(), 0777), 0);
  ASSERT_EQ(::chmod(existing.c_str(), 0777), 0);
  auto o = test::restore_opts(existing);
  o.overwrite = true;
  r = run_restore(*repo_, b.snapshot_id, o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  expect_root_like_src(existing);

  // A snapshot written before roots were recorded: the same manifest without
  // the record, stored under its own id.
  auto bytes = repo_->load_snapshot(b.snapshot_id);
  ASSERT_TRUE(bytes.is_ok());
  auto m = parse_snapshot(*bytes);
  ASSERT_TRUE(m.is_ok());
  m->root.reset();
  auto json = serialize_snapshot(*m);
  ASSERT_TRUE(json.is_ok());
  auto old_id = repo_->save_snapshot(*json);
  ASSERT_TRUE(old_id.is_ok()) << old_id.status().to_string();
  const std::string plain = dir_ / "plain";
  ASSERT_EQ(::mkdir(plain.c_str(), 0711), 0);
  ASSERT_EQ(::chmod(plain.c_str(), 0711), 0);
  o = test::restore_opts(plain);
  o.overwrite = true;
  r = run_restore(*repo_, *old_id, o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_FALSE(r->root_restored);
  struct stat got {};
  ASSERT_EQ(::stat(plain.c_str(), &got), 0);
  EXPECT_EQ(got.st_mode & 07777, 0711u);
  EXPECT_EQ(test::read_file(plain + "/f"), "data");
}

// Times before 1970 with a fraction of a second (mtime_ns -500000000 is
// 1969-12-31T23:59:59.5Z) used to be restored as {0, -500000000}, which
// utimensat refuses: "set times of f: Invalid argument".
TEST_F(PipelineTest, TimesBefore1970WithAFractionOfASecondRoundTrip) {
  const std::string src = dir_ / "src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((src + "/d").c_str(), 0755), 0);
  test::write_file(src + "/f", "old");
  test::write_file(src + "/d/g", "older");
  auto set = [](const std::string& path, time_t sec, long nsec) {
    const timespec t[2] = {{sec, nsec}, {sec, nsec}};
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), t, AT_SYMLINK_NOFOLLOW), 0) << path;
  };
  set(src + "/f", -1, 500000000);
  set(src + "/d/g", -86400 * 365, 1);
  set(src + "/d", -2, 999999999);
  set(src, -1, 500000000);
  const auto b = backup(src, "vol");
  ASSERT_TRUE(b.manifest.root.has_value());
  EXPECT_EQ(b.manifest.root->mtime_ns, -500000000);
  const std::string target = dir_ / "restored";
  test::expect_restores_to(*repo_, b.snapshot_id, target, src);
  struct stat root {};
  ASSERT_EQ(::stat(target.c_str(), &root), 0);
  EXPECT_EQ(root.st_mtim.tv_sec, -1);
  EXPECT_EQ(root.st_mtim.tv_nsec, 500000000);
}

// A backup of a copy (a volume's temporary snapshot) records the originals'
// identities where they provably did not change since the copy began, so an
// unchanged file is read neither by the next backup of a fresh copy nor by a
// backup of the live directory itself; anything else is read from the copy.
TEST_F(PipelineTest, CopiesCarryTheOriginalsIdentityOnlyWhenItIsProvablyUnchanged) {
  const std::string live = dir_ / "live";
  ASSERT_EQ(::mkdir(live.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((live + "/sub").c_str(), 0755), 0);
  test::write_file(live + "/big", test::random_bytes(3u << 20, 1));
  test::write_file(live + "/sub/small", test::random_bytes(100000, 2));
  test::write_file(live + "/other", test::random_bytes(200000, 3));
  int copies = 0;
  // The caller's protocol: take the time and clock offset, then copy; trust
  // only ctimes older than the time minus a margin over the file system's
  // timestamp granularity (ext4: a jiffy).
  constexpr int64_t kMargin = 100'000'000;
  auto age = [] { std::this_thread::sleep_for(std::chrono::milliseconds(250)); };  // files older than the margin
  auto backup_copy = [&](int64_t clock_skew_ns = 0, const std::function<void(const std::string&)>& after_copy = {}) {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    const int64_t t0 = int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
    const int64_t offset = realtime_minus_monotonic_ns() + clock_skew_ns;
    const std::string copy = dir_ / ("copy-" + std::to_string(copies++));
    EXPECT_EQ(::mkdir(copy.c_str(), 0755), 0);
    test::copy_tree(live, copy);
    if (after_copy) after_copy(copy);
    auto o = test::backup_opts(copy, "vol");
    o.identity_root = live;
    o.identity_before_ns = t0 - kMargin;
    o.identity_clock_offset_ns = offset;
    auto r = run_backup(*repo_, o);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? std::move(r).value() : BackupResult{};
  };
  const uint64_t total = (3u << 20) + 100000 + 200000;
  age();
  const auto first = backup_copy();
  EXPECT_EQ(first.manifest.stats.bytes_read, total);
  // Nothing changed: a fresh copy (new inodes) is not read at all.
  const auto second = backup_copy();
  EXPECT_EQ(second.manifest.stats.bytes_read, 0u);
  expect_restores_to(second.snapshot_id, live);
  // One file rewritten before the copy: only it is read.
  test::write_file(live + "/sub/small", test::random_bytes(100000, 4));
  age();
  const auto third = backup_copy();
  EXPECT_EQ(third.manifest.stats.bytes_read, 100000u);
  expect_restores_to(third.snapshot_id, live);
  // The live directory itself, with the copy's snapshot as parent: nothing to read.
  auto o = test::backup_opts(live, "vol");
  o.parent = third.snapshot_id;
  auto in_place = run_backup(*repo_, o);
  ASSERT_TRUE(in_place.is_ok()) << in_place.status().to_string();
  EXPECT_EQ(in_place->manifest.stats.bytes_read, 0u);

  // Changed after the copy began, same size and mtime put back (a ctime
  // newer than the copy's start): the copy's own bytes are read and kept,
  // and the live file is read again next time.
  const std::string old_other = test::read_file(live + "/other");
  const auto fourth = backup_copy(0, [&](const std::string&) {
    struct stat st {};
    ASSERT_EQ(::stat((live + "/other").c_str(), &st), 0);
    test::write_file(live + "/other", test::random_bytes(200000, 5));
    const timespec times[2] = {st.st_atim, st.st_mtim};
    ASSERT_EQ(::utimensat(AT_FDCWD, (live + "/other").c_str(), times, 0), 0);
  });
  EXPECT_EQ(fourth.manifest.stats.bytes_read, 200000u);
  const std::string check = dir_ / "check-fourth";
  ASSERT_TRUE(run_restore(*repo_, fourth.snapshot_id, test::restore_opts(check)).is_ok());
  EXPECT_EQ(test::read_file(check + "/other"), old_other);
  age();
  const auto fifth = backup_copy();
  EXPECT_EQ(fifth.manifest.stats.bytes_read, 200000u);
  expect_restores_to(fifth.snapshot_id, live);

  // A wall-clock step since the caller's reading: no original is trusted.
  const auto stepped = backup_copy(-1'000'000'000);
  EXPECT_EQ(stepped.manifest.stats.bytes_read, total);
  expect_check_clean();
}

// Which snapshot of a volume is newest must not depend on the hosts' clocks:
// the later lease holder wins even when an earlier holder's clock ran minutes
// ahead, and a path backup never outranks the daemon's leased backups.
TEST_F(PipelineTest, NewestSnapshotOfAVolumeFollowsLeaseGenerationsNotClocks) {
  const std::string src = dir_ / "src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  test::write_file(src + "/f", "x");
  auto backup_as = [&](uint64_t generation, int64_t time_ns) {
    auto o = test::backup_opts(src, "vol", time_ns);
    o.lease_generation = generation;
    auto r = run_backup(*repo_, o);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? r->snapshot_id : Hash256{};
  };
  const int64_t noon = 1'764'158'400'000'000'000;
  const int64_t minute = 60'000'000'000;
  const Hash256 a_gen1 = backup_as(1, noon + 5 * minute);  // host A's clock is 5 minutes fast
  const Hash256 b_gen2 = backup_as(2, noon + 1 * minute);  // host B took the lease later
  test::write_file(src + "/f", "y");
  const Hash256 path_backup = backup_as(0, noon + 60 * minute);
  auto latest = latest_snapshot_of(*repo_, "vol");
  ASSERT_TRUE(latest.is_ok()) << latest.status().to_string();
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ(**latest, b_gen2) << "A (gen 1) " << a_gen1.hex() << ", path backup " << path_backup.hex();
  // Within one holder, its own clock orders its snapshots.
  const Hash256 b_gen2_later = backup_as(2, noon + 2 * minute);
  latest = latest_snapshot_of(*repo_, "vol");
  ASSERT_TRUE(latest.is_ok() && latest->has_value());
  EXPECT_EQ(**latest, b_gen2_later);
  EXPECT_FALSE(latest_snapshot_of(*repo_, "other").value().has_value());
}

// Each change kind, one snapshot after each; every snapshot restores to the
// tree as it was, and unchanged files are not read again.
TEST_F(PipelineTest, IncrementalBackupsRestoreEachStateAndSkipUnchangedFiles) {
  const std::string src = dir_ / "src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  test::make_tree(src, {.seed = 7, .dirs = 3, .files_per_dir = 3});
  test::write_file(src + "/grow", test::random_bytes(300000, 1));
  test::write_file(src + "/shrink", test::random_bytes(400000, 2));
  test::write_file(src + "/edit", test::random_bytes(500000, 3));
  test::write_file(src + "/gone", "bye");
  test::write_file(src + "/old_name", test::random_bytes(200000, 4));

  std::vector<std::pair<Hash256, std::string>> states;
  auto snap = [&](int i) {
    const auto b = backup(src, "vol", 1'700'000'000'000'000'000 + i);
    const std::string copy = dir_ / ("state" + std::to_string(i));
    EXPECT_EQ(::mkdir(copy.c_str(), 0755), 0);
    test::copy_tree(src, copy);
    states.emplace_back(b.snapshot_id, copy);
    return b;
  };
  const auto first = snap(0);
  EXPECT_EQ(first.manifest.parent, std::nullopt);

  // Nothing changed: nothing read, nothing new but maybe nothing at all.
  const auto same = snap(1);
  EXPECT_EQ(same.manifest.parent, first.snapshot_id);
  EXPECT_EQ(same.manifest.stats.bytes_read, 0u);
  EXPECT_EQ(same.manifest.stats.new_blobs, 0u);

  // Modify in place (same size), append, truncate, rename, delete, and
  // change only the xattrs of a file (which changes its ctime, not its mtime).
  {
    const std::string x = src + "/xattr_file";
    ASSERT_EQ(::removexattr(x.c_str(), "user.a"), 0) << std::strerror(errno);
    ASSERT_EQ(::setxattr(x.c_str(), "user.added", "new", 3, 0), 0) << std::strerror(errno);
    const int fd = ::open((src + "/edit").c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "CHANGED", 7, 250000), 7);
    ::close(fd);
    std::string g = test::read_file(src + "/grow");
    test::write_file(src + "/grow", g + test::random_bytes(1000, 5));
    ASSERT_EQ(::truncate((src + "/shrink").c_str(), 100000), 0);
    ASSERT_EQ(::rename((src + "/old_name").c_str(), (src + "/dir0/new_name").c_str()), 0);
    ASSERT_EQ(::unlink((src + "/gone").c_str()), 0);
  }
  const auto changed = snap(2);
  // Exactly the modified files were read (the renamed one has a new ctime and
  // its name moved, so it is read too; its chunks dedup; so is the 1-byte
  // xattr_file, whose new xattrs the restore of this state must show).
  const uint64_t expected_read = 500000 + 301000 + 100000 + 200000 + 1;
  EXPECT_EQ(changed.manifest.stats.bytes_read, expected_read);
  // The rename uploads no data; the edits upload about one chunk each.
  EXPECT_LT(changed.manifest.stats.new_bytes, 3 * 262144u + 100000u);

  for (const auto& [id, copy] : states) expect_restores_to(id, copy);
  expect_check_clean();
}

// A blob is its bytes, whatever type it was first stored as: the tree of an
// empty directory is `{"entries":[]}`, and a file holding those 14 bytes
// shares that blob. Both orders: the tree stored first (a repository that
// already has an empty directory), and the file first (its chunk is claimed
// before the backup builds its trees). Restore and check once refused them.
TEST_F(PipelineTest, AFileHoldingATreesBytesSharesItsBlobEitherWay) {
  const std::string empty_tree = R"({"entries":[]})";
  auto round_trip = [&](Repository& repo, const std::string& label, bool tree_first) {
    SCOPED_TRACE(label);
    const std::string dirs = dir_ / (label + "-dirs"), both = dir_ / (label + "-both");
    ASSERT_EQ(::mkdir(dirs.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((dirs + "/empty").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(both.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((both + "/empty").c_str(), 0755), 0);
    test::write_file(both + "/looks_like_a_tree", empty_tree);
    std::vector<std::pair<Hash256, std::string>> snaps;
    for (const auto& src : tree_first ? std::vector{dirs, both} : std::vector{both, dirs}) {
      auto r = run_backup(repo, test::backup_opts(src, label + "-" + std::to_string(snaps.size())));
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
      snaps.emplace_back(r->snapshot_id, src);
    }
    auto index = repo.load_index();
    ASSERT_TRUE(index.is_ok());
    const auto loc = index->find(sha256(empty_tree));
    ASSERT_TRUE(loc.has_value());
    EXPECT_EQ(loc->type, tree_first ? BlobType::kTree : BlobType::kData);  // stored once, as whichever came first
    for (const auto& [id, src] : snaps) {
      test::expect_restores_to(repo, id, dir_ / ("restore-" + std::to_string(restores_++)), src);
    }
    auto c = run_check(repo, {.read_data = true});
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    EXPECT_TRUE(c->ok()) << ::testing::PrintToString(c->errors);
  };
  round_trip(*repo_, "tree-first", true);
  auto fresh = Repository::init(test::must_file_store(dir_ / "repo2"), test::small_pack_config());
  ASSERT_TRUE(fresh.is_ok()) << fresh.status().to_string();
  round_trip(**fresh, "file-first", false);
}

// A changed file is read whole, but of its chunks only the changed ones are
// cut, hashed and stored: the others are found in place by the chunk sums
// its parent entry records. Whether a chunk was found that way or cut anew,
// the snapshot is the one a backup without a parent writes. Both ways of
// encoding are covered: in the worker (< 4 MiB) and on the encoders.
TEST_F(PipelineTest, ChangedFilesReuseTheirParentsChunksInPlace) {
  const std::string src = dir_ / "db";
  ASSERT_EQ(::mkdir(src.c_str(), 0700), 0);
  const std::map<std::string, std::string> before = {
      {"big", test::random_bytes(9u << 20, 1)},
      {"small", test::random_bytes(1u << 20, 2)},
      {"log", test::compressible_bytes(3u << 20, 3)},
      {"short", test::random_bytes(20000, 4)},
  };
  for (const auto& [name, data] : before) test::write_file(src + "/" + name, data);
  const auto first = backup(src, "db", 1'700'000'000'000'000'000);
  EXPECT_EQ(first.manifest.stats.bytes_matched, 0u);

  // Pages overwritten in place, an append, a rewrite of a short file.
  std::map<std::string, std::string> after = before;
  std::mt19937_64 rng(11);
  for (const char* name : {"big", "big", "big", "small"}) {
    std::string& s = after[name];
    const size_t at = rng() % (s.size() / 8192) * 8192;
    s.replace(at, 8192, test::random_bytes(8192, rng()));
  }
  after["log"] += test::compressible_bytes(100000, 5);
  after["short"] = test::random_bytes(20000, 6);
  uint64_t total = 0, expect_matched = 0;
  auto chunker = Chunker::create(repo_->config().chunker);
  ASSERT_TRUE(chunker.is_ok());
  for (const auto& [name, data] : after) {
    test::write_file(src + "/" + name, data);
    total += data.size();
    // What can be found in place: a chunk of the new version that the old one
    // has at the same offset, and not the old one's last chunk unless it is
    // still last (it may have been cut by the end of the file).
    std::map<uint64_t, std::pair<size_t, bool>> old_chunks;  // offset -> (length, last)
    const auto old_lengths = chunker->split(before.at(name));
    uint64_t off = 0;
    for (size_t i = 0; i < old_lengths.size(); ++i) {
      old_chunks[off] = {old_lengths[i], i + 1 == old_lengths.size()};
      off += old_lengths[i];
    }
    const auto new_lengths = chunker->split(data);
    off = 0;
    for (size_t i = 0; i < new_lengths.size(); ++i) {
      const auto it = old_chunks.find(off);
      if (it != old_chunks.end() && it->second.first == new_lengths[i] &&
          (!it->second.second || i + 1 == new_lengths.size()) &&
          before.at(name).compare(off, new_lengths[i], data, off, new_lengths[i]) == 0) {
        expect_matched += new_lengths[i];
      }
      off += new_lengths[i];
    }
  }
  const auto second = backup(src, "db", 1'700'000'000'000'000'001);
  EXPECT_EQ(second.manifest.parent, first.snapshot_id);
  EXPECT_EQ(second.manifest.stats.bytes_read, total);
  EXPECT_EQ(second.manifest.stats.bytes_matched, expect_matched);
  EXPECT_GT(expect_matched, total * 3 / 4);  // the edits were small

  expect_tree_of_a_backup_without_parent(src, "db", 1'700'000'000'000'000'002, second);

  // Unchanged since: nothing read; the sums carry over to the next backup.
  const auto third = backup(src, "db", 1'700'000'000'000'000'003);
  EXPECT_EQ(third.manifest.stats.bytes_read, 0u);
  EXPECT_EQ(third.manifest.tree, second.manifest.tree);

  expect_restores_to(second.snapshot_id, src);
  expect_check_clean();
}

// A sparse file's chunks are cut over its data ranges; reuse works on that
// stream too, and the entry (holes included) is again the one a backup
// without a parent writes.
TEST_F(PipelineTest, SparseFilesChangedInPlaceReuseChunksToo) {
  const std::string src = dir_ / "sparse";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  const std::string path = src + "/disk.img";
  const std::string a = test::random_bytes(1u << 20, 31), b = test::random_bytes(5u << 20, 32);
  {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, a.data(), a.size(), 0), static_cast<ssize_t>(a.size()));
    ASSERT_EQ(::pwrite(fd, b.data(), b.size(), 16 << 20), static_cast<ssize_t>(b.size()));
    ::close(fd);
  }
  ASSERT_LT(test::allocated_bytes(path), 21u << 20) << "the test directory's file system must keep holes";
  const auto first = backup(src, "img", 1'700'000'000'000'000'000);
  {
    const int fd = ::open(path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    const std::string page = test::random_bytes(8192, 33);
    ASSERT_EQ(::pwrite(fd, page.data(), page.size(), (16 << 20) + (2 << 20)), 8192);
    ::close(fd);
  }
  const auto second = backup(src, "img", 1'700'000'000'000'000'001);
  EXPECT_EQ(second.manifest.parent, first.snapshot_id);
  EXPECT_EQ(second.manifest.stats.bytes_read, a.size() + b.size());
  EXPECT_GT(second.manifest.stats.bytes_matched, a.size() + b.size() - (1u << 20));
  expect_tree_of_a_backup_without_parent(src, "img", 1'700'000'000'000'000'002, second);
  expect_restores_to(second.snapshot_id, src);
}

// A file of thousands of data ranges, like a sparse disk image: each chunk
// spans many of them. Restore puts every byte back in its place and keeps
// the holes, both written whole (O_DIRECT) and into an old copy it reuses.
TEST_F(PipelineTest, AFileOfThousandsOfDataRangesRestoresExactly) {
  const std::string src = dir_ / "islands";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  const std::string path = src + "/disk.img";
  constexpr int kIslands = 3000;
  {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    for (int i = 0; i < kIslands; ++i) {
      const std::string page = test::random_bytes(4096, 700 + static_cast<uint64_t>(i));
      ASSERT_EQ(::pwrite(fd, page.data(), page.size(), off_t{i} * 12288), 4096);
    }
    ASSERT_EQ(::ftruncate(fd, off_t{kIslands} * 12288), 0);
    ::close(fd);
  }
  ASSERT_LT(test::allocated_bytes(path), 16u << 20) << "the test directory's file system must keep holes";
  const auto first = backup(src, "islands", 1'700'000'000'000'000'000);
  const std::string target = dir_ / "islands-back";
  test::expect_restores_to(*repo_, first.snapshot_id, target, src);
  EXPECT_LT(test::allocated_bytes(target + "/disk.img"), 16u << 20) << "the holes were filled";
  // One island in a hundred changes; a restore that may reuse the first
  // copy's chunks takes the others from it.
  {
    const int fd = ::open(path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    for (int i = 0; i < kIslands; i += 100) {
      const std::string page = test::random_bytes(4096, 9000 + static_cast<uint64_t>(i));
      ASSERT_EQ(::pwrite(fd, page.data(), page.size(), off_t{i} * 12288), 4096);
    }
    ::close(fd);
  }
  const auto second = backup(src, "islands", 1'700'000'000'000'000'001);
  auto o = test::restore_opts(dir_ / "islands-again");
  o.reuse_from = target;
  auto r = run_restore(*repo_, second.snapshot_id, o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_GT(r->blobs_reused, 0u);
  const auto diffs = test::diff_trees(src, dir_ / "islands-again");
  EXPECT_TRUE(diffs.empty()) << ::testing::PrintToString(diffs);
}

// A store failing while a changed file's batches mix reused and new chunks:
// the backup ends with the store's error (the reused ids it points to live
// until its chunks are done), and the next backup is the one a backup
// without a parent writes.
TEST_F(PipelineTest, StoreFailureWhileReusingParentChunksEndsTheBackup) {
  const std::string src = dir_ / "db";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  for (int i = 0; i < 3; ++i) test::write_file(src + "/f" + std::to_string(i), test::random_bytes(6u << 20, 40 + i));
  backup(src, "db", 1'700'000'000'000'000'000);
  for (int i = 0; i < 3; ++i) {
    const int fd = ::open((src + "/f" + std::to_string(i)).c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    for (off_t at = 0; at < (6 << 20); at += 512 << 10) {  // a page every 512 KiB: ≈ 1.5 MiB of new chunks
      const std::string page = test::random_bytes(8192, static_cast<uint64_t>(at) + i);
      ASSERT_EQ(::pwrite(fd, page.data(), page.size(), at), 8192);
    }
    ::close(fd);
  }
  for (int allow : {0, 2}) {
    SCOPED_TRACE(allow);
    auto crashing = std::make_unique<test::CrashingStore>(test::must_file_store(dir_ / "repo"), "data/", allow);
    auto repo = test::must_open(std::move(crashing));
    auto r = run_backup(*repo, test::backup_opts(src, "db", 1'700'000'000'000'000'001));
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("injected crash"), std::string::npos) << r.status().to_string();
  }
  const auto ok = backup(src, "db", 1'700'000'000'000'000'002);
  EXPECT_GT(ok.manifest.stats.bytes_matched, 0u);
  expect_tree_of_a_backup_without_parent(src, "db", 1'700'000'000'000'000'003, ok);
  expect_restores_to(ok.snapshot_id, src);
  expect_check_clean();
}

TEST_F(PipelineTest, DedupAcrossTwoSources) {
  const std::string a = dir_ / "a", b = dir_ / "b";
  ASSERT_EQ(::mkdir(a.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(b.c_str(), 0755), 0);
  const std::string shared = test::random_bytes(3u << 20, 99);
  test::write_file(a + "/data", shared);
  test::write_file(b + "/copy-of-data", shared);
  test::write_file(b + "/own", test::random_bytes(100000, 100));
  const auto ra = backup(a, "vol-a");
  const auto rb = backup(b, "vol-b");
  EXPECT_GE(ra.manifest.stats.new_bytes, 3u << 20);
  // Only b's own file (and trees: ≈ 100 bytes of id and sum per chunk) are new.
  EXPECT_LT(rb.manifest.stats.new_bytes, 100000u + 8192u);
  EXPECT_EQ(rb.manifest.parent, std::nullopt);  // different source: no parent
  expect_restores_to(ra.snapshot_id, a);
  expect_restores_to(rb.snapshot_id, b);
}

// Files of 4 MiB and more are cut by their worker and hashed/encoded by the
// encoder threads, out of order; the chunk list must still be in file order
// and hold exactly the chunks Chunker::split finds (counted as new blobs),
// at the sizes around the offload threshold and with chunks shared inside
// and between files.
TEST_F(PipelineTest, LargeFilesEncodedOffTheWorkerKeepChunkOrderAndCount) {
  const std::string src = dir_ / "large";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  const std::string a = test::random_bytes((4u << 20) - 1, 1);
  const std::string b = test::random_bytes(4u << 20, 2);
  const std::string c = test::compressible_bytes(9u << 20, 3) + a.substr(0, 1u << 20);  // repeats a's start
  const std::string d = b + b;                                                         // repeats itself
  const std::map<std::string, const std::string*> files = {{"a", &a}, {"b", &b}, {"c", &c}, {"d", &d}};
  auto chunker = Chunker::create(repo_->config().chunker);
  ASSERT_TRUE(chunker.is_ok());
  std::set<BlobId> distinct;
  for (const auto& [name, data] : files) {
    test::write_file(src + "/" + name, *data);
    size_t off = 0;
    for (size_t len : chunker->split(*data)) {
      distinct.insert(sha256(std::string_view(*data).substr(off, len)));
      off += len;
    }
  }
  const auto r = backup(src, "large");
  EXPECT_EQ(r.manifest.stats.new_blobs, distinct.size() + 1);  // + the root tree
  expect_restores_to(r.snapshot_id, src);
  expect_check_clean();
}

// A store failing while encoders hold chunks of large files: the backup ends
// with the store's error (no hang, nothing left waiting) and writes no
// snapshot; the next backup succeeds.
TEST_F(PipelineTest, StoreFailureWhileLargeFilesAreEncodedEndsTheBackup) {
  const std::string src = dir_ / "large";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  for (int i = 0; i < 3; ++i) test::write_file(src + "/f" + std::to_string(i), test::random_bytes(6u << 20, 10 + i));
  for (int allow : {0, 2}) {
    SCOPED_TRACE(allow);
    auto crashing = std::make_unique<test::CrashingStore>(test::must_file_store(dir_ / "repo"), "data/", allow);
    auto repo = test::must_open(std::move(crashing));
    auto r = run_backup(*repo, test::backup_opts(src, "large"));
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("injected crash"), std::string::npos) << r.status().to_string();
  }
  const auto ok = backup(src, "large");
  expect_restores_to(ok.snapshot_id, src);
}

// A file removed between the walk and its read, or put back as something
// else than a regular file, is left out of the snapshot with a warning (as
// one gone between listing and stat is), and so are the hard links of such
// a file: the backup succeeds and restores to the source without them.
TEST_F(PipelineTest, FilesGoneWhenTheyAreReadAreLeftOutWithAWarning) {
  const std::string src = dir_ / "van";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  const std::string big = test::random_bytes(6u << 20, 1);  // read on the encoders
  test::write_file(src + "/big", big);
  test::write_file(src + "/kept", "kept");
  test::write_file(src + "/large_gone", test::random_bytes(5u << 20, 2));
  test::write_file(src + "/link1", "every name removed");
  ASSERT_EQ(::link((src + "/link1").c_str(), (src + "/link2").c_str()), 0);
  test::write_file(src + "/to_fifo", "becomes a fifo");
  test::write_file(src + "/to_link", "becomes a symlink");
  test::write_file(src + "/zz", "removed");
  struct stat dir_st {};
  ASSERT_EQ(::stat(src.c_str(), &dir_st), 0);
  // The directory's times as the walk recorded them, so that the restore
  // compares equal to the source after the removals.
  auto reset_dir_times = [&] {
    const timespec times[2] = {dir_st.st_atim, dir_st.st_mtim};
    ASSERT_EQ(::utimensat(AT_FDCWD, src.c_str(), times, 0), 0);
  };
  BackupOptions o = test::backup_opts(src, "van");
  o.workers = 1;
  o.before_read = [&](const std::string& path) {
    const std::string name = path.substr(src.size() + 1);
    if (name == "zz" || name == "large_gone") {
      ASSERT_EQ(::unlink(path.c_str()), 0);
    } else if (name == "link1") {
      ASSERT_EQ(::unlink(path.c_str()), 0);
      ASSERT_EQ(::unlink((src + "/link2").c_str()), 0);
    } else if (name == "to_fifo") {
      ASSERT_EQ(::unlink(path.c_str()), 0);
      ASSERT_EQ(::mkfifo(path.c_str(), 0644), 0);  // must not block the read
    } else if (name == "to_link") {
      ASSERT_EQ(::unlink(path.c_str()), 0);
      ASSERT_EQ(::symlink("kept", path.c_str()), 0);
    } else {
      return;
    }
    reset_dir_times();
  };
  const auto r = run_backup(*repo_, o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->manifest.stats.files, 2u);
  EXPECT_EQ(r->manifest.stats.bytes, big.size() + 4);
  for (const char* name : {"large_gone", "link1", "link2", "to_fifo", "to_link", "zz"}) {
    const std::string path = src + "/" + name;
    EXPECT_TRUE(std::any_of(r->warnings.begin(), r->warnings.end(),
                            [&](const std::string& w) { return w.find(path) != std::string::npos; }))
        << name << ": " << ::testing::PrintToString(r->warnings);
  }
  ASSERT_EQ(::unlink((src + "/to_fifo").c_str()), 0);
  ASSERT_EQ(::unlink((src + "/to_link").c_str()), 0);
  reset_dir_times();
  expect_restores_to(r->snapshot_id, src);
  expect_check_clean();
}

// A file with several names whose first name (the one the walk met first)
// is removed before it is read: its other names are still there, so they
// are backed up with its content, as one hard-link group, small and large.
// They used to be left out with the first name.
TEST_F(PipelineTest, HardLinksOutliveTheirFirstNameVanishing) {
  const std::string src = dir_ / "links";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((src + "/sub").c_str(), 0755), 0);
  const std::string small = "small, three names", large = test::random_bytes(6u << 20, 7);
  test::write_file(src + "/a_small", small);
  ASSERT_EQ(::link((src + "/a_small").c_str(), (src + "/b_small").c_str()), 0);
  ASSERT_EQ(::link((src + "/a_small").c_str(), (src + "/sub/c_small").c_str()), 0);
  // The large one loses its second name as well: the third leads.
  test::write_file(src + "/a_large", large);
  ASSERT_EQ(::link((src + "/a_large").c_str(), (src + "/b_large").c_str()), 0);
  ASSERT_EQ(::link((src + "/a_large").c_str(), (src + "/sub/z_large").c_str()), 0);
  struct stat st {};
  ASSERT_EQ(::stat(src.c_str(), &st), 0);
  const timespec src_times[2] = {st.st_atim, st.st_mtim};

  BackupOptions o = test::backup_opts(src, "links");
  o.workers = 1;
  o.before_read = [&](const std::string& path) {
    if (path == src + "/a_small" || path == src + "/a_large") {
      ASSERT_EQ(::unlink(path.c_str()), 0);
    }
    if (path == src + "/a_large") {
      ASSERT_EQ(::unlink((src + "/b_large").c_str()), 0);
    }
  };
  const auto r = run_backup(*repo_, o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->manifest.stats.files, 3u) << "b_small, sub/c_small, sub/z_large";
  EXPECT_EQ(r->manifest.stats.bytes, 2 * small.size() + large.size());
  // The source as it is now, with the times the walk recorded.
  ASSERT_EQ(::utimensat(AT_FDCWD, src.c_str(), src_times, 0), 0);
  expect_restores_to(r->snapshot_id, src);  // contents, link counts and groups
  expect_check_clean();
}

// Entries whose paths are longer than PATH_MAX (4096 bytes): 17 nested
// directories of 250-byte names, holding every kind of entry, xattrs on a
// file and a directory, and a file large enough for O_DIRECT reads. The
// backup looks everything up relative to directory descriptors, so it
// succeeds, and the restore is the same tree. Compared level by level
// through /proc/self/fd, as paths this long cannot be compared by name.
TEST_F(PipelineTest, PathsLongerThanPathMaxBackUpAndRestore) {
  const std::string src = dir_ / "long";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  std::vector<std::string> names;
  size_t length = src.size();
  int fd = ::open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  for (int i = 0; i < 17; ++i) {
    names.push_back(std::string(249, static_cast<char>('a' + i)) + "d");
    ASSERT_EQ(::mkdirat(fd, names.back().c_str(), 0750), 0);
    const int next = ::openat(fd, names.back().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(next, 0);
    ::close(fd);
    fd = next;
    length += 1 + names.back().size();
  }
  ASSERT_GT(length + std::strlen("/small"), 4096u);
  auto write_at = [&](const char* name, const std::string& data, off_t at) {
    const int f = ::openat(fd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(f, 0);
    ASSERT_EQ(::pwrite(f, data.data(), data.size(), at), static_cast<ssize_t>(data.size()));
    if (std::string_view(name) == "small") {
      ASSERT_EQ(::fsetxattr(f, "user.deep", "x\0y", 3, 0), 0);
    }
    ::close(f);
  };
  write_at("small", "deep down", 0);
  write_at("big", test::random_bytes(5u << 20, 1), 0);
  write_at("sparse", test::random_bytes(100000, 2), 8 << 20);
  ASSERT_EQ(::symlinkat("small", fd, "link"), 0);
  ASSERT_EQ(::mkfifoat(fd, "fifo", 0640), 0);
  ASSERT_EQ(::linkat(fd, "small", fd, "hard", 0), 0);
  ASSERT_EQ(::mkdirat(fd, "sub", 0700), 0);
  {
    const int sub = ::openat(fd, "sub", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(sub, 0);
    ASSERT_EQ(::fsetxattr(sub, "user.dir", "d", 1, 0), 0);
    ::close(sub);
  }
  ::close(fd);

  const auto b = backup(src, "long");
  EXPECT_EQ(b.manifest.stats.files, 4u);  // small, hard, big, sparse
  const std::string target = dir_ / "restored";
  auto r = run_restore(*repo_, b.snapshot_id, test::restore_opts(target));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  int a = ::open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int t = ::open(target.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(a, 0);
  ASSERT_GE(t, 0);
  for (const auto& name : names) {
    SCOPED_TRACE(name.substr(0, 1));
    const int next_a = ::openat(a, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const int next_t = ::openat(t, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ::close(a);
    ::close(t);
    a = next_a;
    t = next_t;
    ASSERT_GE(a, 0);
    ASSERT_GE(t, 0) << "not restored";
    struct stat sa {}, st {};
    ASSERT_EQ(::fstat(a, &sa), 0);
    ASSERT_EQ(::fstat(t, &st), 0);
    EXPECT_EQ(sa.st_mode, st.st_mode);
    EXPECT_EQ(sa.st_mtim.tv_sec, st.st_mtim.tv_sec);
    EXPECT_EQ(sa.st_mtim.tv_nsec, st.st_mtim.tv_nsec);
  }
  const auto diffs = test::diff_trees("/proc/self/fd/" + std::to_string(a), "/proc/self/fd/" + std::to_string(t));
  EXPECT_TRUE(diffs.empty()) << ::testing::PrintToString(diffs);
  ::close(a);
  ::close(t);
}

// A directory replaced by a symlink after the walk listed it: its files are
// read from the directory the walk listed (opened relative to its
// descriptor), never through the symlink, which could lead out of the
// source.
TEST_F(PipelineTest, FilesAreReadFromTheDirectoryTheWalkListedNotThroughASymlink) {
  const std::string src = dir_ / "swap", outside = dir_ / "outside";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((src + "/d").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(outside.c_str(), 0755), 0);
  test::write_file(src + "/d/f", "inside the source");
  test::write_file(outside + "/f", "outside the source");
  BackupOptions o = test::backup_opts(src, "swap");
  o.before_read = [&](const std::string& path) {
    if (path != src + "/d/f") return;
    ASSERT_EQ(::rename((src + "/d").c_str(), (src + "/moved").c_str()), 0);
    ASSERT_EQ(::symlink(outside.c_str(), (src + "/d").c_str()), 0);
  };
  const auto r = run_backup(*repo_, o);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const std::string target = dir_ / "restored";
  auto restored = run_restore(*repo_, r->snapshot_id, test::restore_opts(target));
  ASSERT_TRUE(restored.is_ok()) << restored.status().to_string();
  EXPECT_EQ(test::read_file(target + "/d/f"), "inside the source");
}

TEST_F(PipelineTest, ConcurrentBackupsIntoOneRepository) {
  std::vector<std::string> srcs;
  for (int i = 0; i < 3; ++i) {
    srcs.push_back(dir_ / ("src" + std::to_string(i)));
    ASSERT_EQ(::mkdir(srcs.back().c_str(), 0755), 0);
    test::make_tree(srcs.back(), {.seed = 100u + i, .dirs = 2, .files_per_dir = 4, .max_small = 600 * 1024});
    // Shared content too, so the backups race on the same blobs.
    test::write_file(srcs.back() + "/shared", test::random_bytes(2u << 20, 5));
  }
  std::vector<Result<BackupResult>> results(3, Status::internal("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      // Each backup has its own Repository over the same directory, as separate processes would.
      auto repo = test::must_open(test::must_file_store(dir_ / "repo"));
      results[i] = run_backup(*repo, test::backup_opts(srcs[i], "vol" + std::to_string(i)));
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(results[i].is_ok()) << results[i].status().to_string();
    expect_restores_to(results[i]->snapshot_id, srcs[i]);
  }
  expect_check_clean();
}

// A stale local copy (the previous state of a volume) supplies every chunk it
// still holds at the same place; only changed chunks are fetched, and a
// symlink in the stale copy is never followed to find data.
TEST_F(PipelineTest, StaleCopyRestoreFetchesOnlyChangedChunks) {
  const std::string src = dir_ / "src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((src + "/sub").c_str(), 0755), 0);
  std::string big = test::random_bytes(8u << 20, 7);
  test::write_file(src + "/big", big);
  test::write_file(src + "/sub/a", test::random_bytes(300000, 8));
  test::write_file(src + "/gone", test::random_bytes(200000, 9));
  const auto b1 = backup(src, "vol", 1'800'000'000'000'000'000);
  const std::string stale = dir_ / "stale";
  expect_restores_to(b1.snapshot_id, src);
  test::copy_tree(dir_ / "restore-0", stale);

  // Change 64 KiB in the middle of big, add a file, drop one.
  for (size_t i = 4u << 20; i < (4u << 20) + 65536; ++i) big[i] = static_cast<char>(~big[i]);
  test::write_file(src + "/big", big);
  test::write_file(src + "/new", test::random_bytes(100000, 10));
  ASSERT_EQ(::unlink((src + "/gone").c_str()), 0);
  const auto b2 = backup(src, "vol", 1'800'000'000'000'000'001);

  auto opts = test::restore_opts(dir_ / "fresh");
  opts.reuse_from = stale;
  auto r = run_restore(*repo_, b2.snapshot_id, opts);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(test::diff_trees(src, dir_ / "fresh").empty());
  auto full = run_restore(*repo_, b2.snapshot_id, test::restore_opts(dir_ / "full"));
  ASSERT_TRUE(full.is_ok());
  // Only the chunks the second backup had to add are fetched: the changed
  // region of big and the new file.
  EXPECT_GT(r->blobs_reused, 0u);
  EXPECT_LE(r->blobs_fetched, b2.manifest.stats.new_blobs);
  EXPECT_EQ(r->blobs_fetched + r->blobs_reused, full->blobs_fetched);
  EXPECT_GE(r->bytes_reused, (8u << 20) - (1u << 20) + 300000);
  EXPECT_LT(r->bytes_written - r->bytes_reused, 2u << 20);

  // A directory replaced by a symlink to identical data is not used.
  ASSERT_EQ(::rename((stale + "/sub").c_str(), (dir_ / "elsewhere").c_str()), 0);
  ASSERT_EQ(::symlink((dir_ / "elsewhere").c_str(), (stale + "/sub").c_str()), 0);
  auto opts2 = test::restore_opts(dir_ / "fresh2");
  opts2.reuse_from = stale;
  auto r2 = run_restore(*repo_, b2.snapshot_id, opts2);
  ASSERT_TRUE(r2.is_ok()) << r2.status().to_string();
  EXPECT_TRUE(test::diff_trees(src, dir_ / "fresh2").empty());
  EXPECT_GT(r2->blobs_fetched, r->blobs_fetched);
  EXPECT_EQ(r2->bytes_reused + 300000, r->bytes_reused);
}

TEST(DefaultSourceName, MakesValidNames) {
  EXPECT_EQ(default_source_name("/var/lib/postgresql/data/"), "data");
  EXPECT_EQ(default_source_name("/"), "root");
  EXPECT_EQ(default_source_name("/srv/my vol"), "my_vol");
  EXPECT_EQ(default_source_name("/srv/.hidden"), "xhidden");
  EXPECT_TRUE(valid_volume_name(default_source_name("/x/\xff\xfe")));
}

}  // namespace
}  // namespace stowage

namespace stowage {
namespace {

// The comparison the round trips rely on must notice each kind of difference.
TEST(DiffTrees, NoticesContentModeTimeHoleAndLinkDifferences) {
  test::TempDir dir("stowage-diff");
  const std::string a = dir / "a";
  ASSERT_EQ(::mkdir(a.c_str(), 0755), 0);
  test::make_tree(a, {.seed = 5, .dirs = 1, .files_per_dir = 2});
  auto mutated = [&](const std::string& name, const std::string& how) {
    const std::string b = dir / name;
    EXPECT_EQ(::mkdir(b.c_str(), 0755), 0);
    test::copy_tree(a, b);
    EXPECT_TRUE(test::diff_trees(a, b).empty());
    EXPECT_EQ(test::run_shell("cd '" + b + "' && " + how), 0);
    return test::diff_trees(a, b);
  };
  EXPECT_FALSE(mutated("content", "printf x | dd of=f0 conv=notrunc status=none && touch -r ../a/f0 f0").empty());
  EXPECT_FALSE(mutated("mode", "chmod 0600 f0").empty());
  EXPECT_FALSE(mutated("time", "touch -d 2001-01-01 f1").empty());
  EXPECT_FALSE(mutated("holes", "cp --sparse=never sparse s2 && mv s2 sparse && touch -r ../a/sparse sparse").empty());
  EXPECT_FALSE(mutated("link", "cp hard2 h && mv h hard2 && touch -r ../a/hard2 hard2").empty());
  EXPECT_FALSE(mutated("xattr", "setfattr -n user.new -v 1 f0 2>/dev/null || python3 -c \"import os; os.setxattr('f0','user.new',b'1')\"").empty());
}

}  // namespace
}  // namespace stowage
