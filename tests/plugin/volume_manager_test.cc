#include "volume_manager.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "dir_backend.h"
#include "snapshot/tree_util.h"
#include "support/test_support.h"

namespace stowage {
namespace {

namespace fs = std::filesystem;

class VolumeManagerTest : public ::testing::Test {
 protected:
  std::unique_ptr<VolumeManager> open(const std::string& boot = "boot-1") {
    return open_with(options(dir_.path(), boot));
  }
  // What open() uses, for a state root at `root`.
  VolumeManager::Options options(const std::string& root, const std::string& boot = "boot-1") {
    VolumeManager::Options o;
    o.state_root = root;
    o.boot_id = boot;
    o.now_unix_ns = [this] { return now_ns_; };
    o.snapshots = &snapshots_;
    o.quiescer = &quiescer_;
    return o;
  }
  std::unique_ptr<VolumeManager> open_with(const VolumeManager::Options& o) {
    auto m = VolumeManager::open(o, backend_, log_);
    EXPECT_TRUE(m.is_ok()) << m.status().message();
    return m.is_ok() ? std::move(m).value() : nullptr;
  }
  std::string vol_dir(const std::string& n) { return dir_.path() + "/volumes/" + n; }

  // Records what a snapshot asked of Docker.
  struct FakeQuiescer : Quiescer {
    Result<std::vector<std::string>> pause(const std::string& volume) override {
      {
        std::unique_lock lock(gate_mu);
        ++pausing;
        gate_cv.notify_all();
        gate_cv.wait(lock, [&] { return !hold; });
      }
      calls.push_back("pause " + volume);
      if (fail_pause) return Status::unavailable("docker is down");
      return std::vector<std::string>{"ctr-a", "ctr-b"};
    }
    Status unpause(const std::vector<std::string>& ids) override {
      calls.push_back("unpause " + std::to_string(ids.size()));
      return Status::ok();
    }
    std::vector<std::string> calls;
    bool fail_pause = false;
    // With `hold`, pause() waits (a snapshot in progress) until it is cleared.
    std::mutex gate_mu;
    std::condition_variable gate_cv;
    bool hold = false;
    int pausing = 0;
  };

  test::TempDir dir_{"stowage-vm"};
  DirBackend backend_;
  std::unique_ptr<CopyEngine> engine_ = CopyEngine::create();
  SnapshotStore snapshots_{*engine_};
  FakeQuiescer quiescer_;
  std::vector<std::string> lines_;
  Logger log_{LogFormat::kLogfmt, LogLevel::kDebug, [this](std::string_view l) { lines_.emplace_back(l); }};
  int64_t now_ns_ = 1'700'000'000'000'000'000;
};

TEST_F(VolumeManagerTest, CreateMakesDataDirWithOwnerAndMode) {
  auto m = open();
  auto v = m->create("db", {{"uid", "1234"}, {"gid", "5678"}, {"mode", "0750"}});
  ASSERT_TRUE(v.is_ok()) << v.status().message();
  EXPECT_EQ(v->mountpoint, vol_dir("db") + "/_data");
  struct stat st {};
  ASSERT_EQ(::stat(v->mountpoint.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(v->record.created_unix_ns, now_ns_);
}

TEST_F(VolumeManagerTest, CreateIsIdempotentForSameOptionsOnly) {
  auto m = open();
  ASSERT_TRUE(m->create("a", {{"mode", "0700"}}).is_ok());
  EXPECT_TRUE(m->create("a", {{"mode", "0700"}}).is_ok());
  auto diff = m->create("a", {{"mode", "0755"}});
  EXPECT_EQ(diff.status().code(), Code::kAlreadyExists);
  // The same mode written another way is the same options.
  auto same = m->create("a", {{"mode", "700"}});
  EXPECT_TRUE(same.is_ok()) << same.status().message();
}

TEST_F(VolumeManagerTest, BadNamesAndOptionsCreateNothing) {
  auto m = open();
  EXPECT_EQ(m->create("../escape", {}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(m->create("ok", {{"nope", "1"}}).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(m->list(false).empty());
  EXPECT_TRUE(fs::is_empty(dir_.path() + "/volumes"));
  EXPECT_FALSE(fs::exists(dir_.path() + "/escape"));
}

TEST_F(VolumeManagerTest, MountIdsAreASetAndPersist) {
  {
    auto m = open();
    ASSERT_TRUE(m->create("v", {}).is_ok());
    ASSERT_TRUE(m->mount("v", "c1").is_ok());
    ASSERT_TRUE(m->mount("v", "c1").is_ok());  // Docker may repeat a Mount after its crash
    ASSERT_TRUE(m->mount("v", "c2").is_ok());
    EXPECT_EQ(m->get("v", false)->record.mount_ids, (std::set<std::string>{"c1", "c2"}));
    ASSERT_TRUE(m->unmount("v", "c1").is_ok());
    ASSERT_TRUE(m->unmount("v", "c1").is_ok());  // idempotent
    ASSERT_TRUE(m->unmount("v", "never-mounted").is_ok());
  }
  auto m = open();  // a restart: state comes back from disk
  auto v = m->get("v", false);
  ASSERT_TRUE(v.is_ok());
  EXPECT_EQ(v->record.mount_ids, (std::set<std::string>{"c2"}));
}

TEST_F(VolumeManagerTest, RemoveRefusedWhileMountedThenAccepted) {
  auto m = open();
  ASSERT_TRUE(m->create("v", {}).is_ok());
  ASSERT_TRUE(m->mount("v", "c1").is_ok());
  Status st = m->remove("v");
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_NE(st.message().find("c1"), std::string::npos) << st.message();
  ASSERT_TRUE(m->unmount("v", "c1").is_ok());
  ASSERT_TRUE(m->remove("v").is_ok());
  EXPECT_FALSE(fs::exists(vol_dir("v")));
  EXPECT_EQ(m->get("v", false).status().code(), Code::kNotFound);
  EXPECT_EQ(m->remove("v").code(), Code::kNotFound);
  EXPECT_TRUE(m->create("v", {}).is_ok());  // the name is free again
}

TEST_F(VolumeManagerTest, EmptyMountIdRefused) {
  auto m = open();
  ASSERT_TRUE(m->create("v", {}).is_ok());
  EXPECT_EQ(m->mount("v", "").status().code(), Code::kInvalidArgument);
}

TEST_F(VolumeManagerTest, RebootReleasesStaleMountIds) {
  {
    auto m = open("boot-1");
    ASSERT_TRUE(m->create("v", {}).is_ok());
    ASSERT_TRUE(m->mount("v", "c1").is_ok());
  }
  {
    auto m = open("boot-1");  // same boot: daemon restart keeps mounts
    EXPECT_EQ(m->get("v", false)->record.mount_ids.size(), 1u);
  }
  auto m = open("boot-2");
  EXPECT_TRUE(m->get("v", false)->record.mount_ids.empty());
  EXPECT_TRUE(m->remove("v").is_ok());
}

TEST_F(VolumeManagerTest, OnlyCreateAndRemoveWaitForADiskFlush) {
  auto m = open();
  uint64_t base = m->journal_flushes();
  ASSERT_TRUE(m->create("v", {}).is_ok());
  EXPECT_EQ(m->journal_flushes(), base + 1);
  ASSERT_TRUE(m->mount("v", "c1").is_ok());
  ASSERT_TRUE(m->unmount("v", "c1").is_ok());
  ASSERT_TRUE(m->mount("v", "c2").is_ok());
  ASSERT_TRUE(m->release_all("v").is_ok());
  EXPECT_EQ(m->journal_flushes(), base + 1);
  ASSERT_TRUE(m->remove("v").is_ok());
  EXPECT_EQ(m->journal_flushes(), base + 2);
  // A checkpoint switches journal generations; the count goes on.
  ASSERT_TRUE(m->create("w", {}).is_ok());
  ASSERT_TRUE(m->checkpoint().is_ok());
  ASSERT_TRUE(m->create("x", {}).is_ok());
  EXPECT_EQ(m->journal_flushes(), base + 4);
}

TEST_F(VolumeManagerTest, HostCrashLosingAnUnflushedMountLeavesWhatTheRebootWouldHave) {
  std::map<std::string, std::string> flushed;  // the journal as of the last flush
  {
    auto m = open("boot-1");
    ASSERT_TRUE(m->create("v", {}).is_ok());
    for (auto& f : fs::directory_iterator(dir_.path() + "/journal")) {
      flushed[f.path()] = test::read_file(f.path());
    }
    ASSERT_TRUE(m->mount("v", "c1").is_ok());
  }
  // The host crashed before the Mount's frame reached the disk.
  for (const auto& [path, bytes] : flushed) test::write_file(path, bytes);
  auto m = open("boot-2");
  auto v = m->get("v", false);
  ASSERT_TRUE(v.is_ok()) << v.status().message();
  // Had the frame been flushed, the new boot would have dropped c1 anyway.
  EXPECT_TRUE(v->record.mount_ids.empty());
  EXPECT_TRUE(m->mount("v", "c9").is_ok());
}

TEST_F(VolumeManagerTest, InterruptedCreateAndRemoveAreResolvedAtOpen) {
  {
    auto m = open();
    ASSERT_TRUE(m->create("keep", {}).is_ok());
  }
  // What a crash mid-Create and mid-Remove leaves behind.
  fs::create_directories(dir_.path() + "/volumes/.staging-half-1/_data");
  fs::create_directories(dir_.path() + "/volumes/.trash-gone-1/_data/deep");
  test::write_file(vol_dir("keep") + "/.volume.json.tmp-1", "partial");
  auto m = open();
  m->finish_removals();  // trash is deleted in the background
  EXPECT_FALSE(fs::exists(dir_.path() + "/volumes/.staging-half-1"));
  EXPECT_FALSE(fs::exists(dir_.path() + "/volumes/.trash-gone-1"));
  EXPECT_FALSE(fs::exists(vol_dir("keep") + "/.volume.json.tmp-1"));
  ASSERT_EQ(m->list(false).size(), 1u);
  EXPECT_EQ(m->list(false)[0].record.name, "keep");
}

// Leftovers that cannot be deleted (a file a container made immutable, a
// mount point inside the volume) must not keep stowaged from starting: they
// are left for the next start, with a warning.
TEST_F(VolumeManagerTest, UndeletableLeftoversDoNotStopTheStart) {
  {
    auto m = open();
    ASSERT_TRUE(m->create("keep", {}).is_ok());
  }
  // Immutable (chattr +i): not even root can unlink it.
  auto immutable = [](const std::string& path, bool on) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    int flags = 0;
    bool ok = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
    flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
    ok = ok && ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
    ::close(fd);
    return ok;
  };
  const std::vector<std::string> files = {dir_.path() + "/volumes/.staging-x-1-2-3/_data/f",
                                          dir_.path() + "/volumes/.trash-y-1-2-3/_data/f"};
  for (const auto& f : files) {
    fs::create_directories(fs::path(f).parent_path());
    test::write_file(f, "x");
    ASSERT_TRUE(immutable(f, true)) << f << ": " << std::strerror(errno);
  }
  auto m = open();
  ASSERT_NE(m, nullptr);
  m->finish_removals();
  EXPECT_TRUE(m->get("keep", false).is_ok());
  for (const auto& f : files) {
    EXPECT_TRUE(fs::exists(f));  // left for the next start
    ASSERT_TRUE(immutable(f, false));
  }
  m.reset();
  m = open();
  m->finish_removals();
  for (const auto& f : files) EXPECT_FALSE(fs::exists(fs::path(f).parent_path().parent_path())) << f;
}

TEST_F(VolumeManagerTest, AcknowledgedCreateNeedsOnlyItsJournalRecord) {
  {
    auto m = open();
    ASSERT_TRUE(m->create("v", {{"mode", "0700"}}).is_ok());
  }
  // Create writes no volume.json (the journal is the commit point); a crash
  // before the next checkpoint leaves the directory without one.
  ASSERT_FALSE(fs::exists(vol_dir("v") + "/volume.json"));
  auto m = open();
  auto v = m->get("v", false);
  ASSERT_TRUE(v.is_ok()) << v.status().message();
  EXPECT_EQ(v->problem, "");
  EXPECT_EQ(v->record.options.mode, 0700u);
  EXPECT_TRUE(fs::exists(vol_dir("v") + "/volume.json"));  // checkpointed at open
}

TEST_F(VolumeManagerTest, CreateThatCrashedBeforeItsCommitIsDiscarded) {
  // Renamed into place, then the crash came before the journal commit: Docker
  // never heard of this volume.
  fs::create_directories(vol_dir("ghost") + "/_data");
  auto m = open();
  EXPECT_EQ(m->get("ghost", false).status().code(), Code::kNotFound);
  EXPECT_TRUE(m->list(false).empty());
  EXPECT_FALSE(fs::exists(vol_dir("ghost")));
  EXPECT_TRUE(m->create("ghost", {}).is_ok());  // the name is free again
}

// A Create from a snapshot killed between renaming its clone into place and
// its journal commit leaves a directory full of data that Docker never heard
// of. The pending-create marker, deleted once the Create is committed, tells
// it apart from data someone else put there.
TEST_F(VolumeManagerTest, CloneThatCrashedBeforeItsCommitIsDiscardedWithItsData) {
  {
    auto m = open();
    auto v = m->create("v", {});
    ASSERT_TRUE(v.is_ok());
    test::write_file(v->mountpoint + "/a", "one");
    ASSERT_TRUE(m->snapshot_create("v", "s").is_ok());
    auto w = m->create("w", {{"from-snapshot", "v@s"}});
    ASSERT_TRUE(w.is_ok()) << w.status().message();
    EXPECT_FALSE(fs::exists(vol_dir("w") + "/create-pending"));  // committed
  }
  // What the kill leaves: the clone in place, the marker beside it.
  fs::create_directories(vol_dir("ghost") + "/_data/sub");
  test::write_file(vol_dir("ghost") + "/_data/sub/a", "one");
  test::write_file(vol_dir("ghost") + "/create-pending", "pending");
  // The same, with something a Create does not make: kept.
  fs::create_directories(vol_dir("odd") + "/_data");
  test::write_file(vol_dir("odd") + "/_data/a", "one");
  test::write_file(vol_dir("odd") + "/create-pending", "pending");
  test::write_file(vol_dir("odd") + "/notes", "mine");
  // Killed after w's commit, before its marker went: w is a volume like any
  // other, and the marker goes at the start.
  test::write_file(vol_dir("w") + "/create-pending", "pending");

  auto m = open();
  m->finish_removals();
  EXPECT_EQ(m->get("ghost", false).status().code(), Code::kNotFound);
  EXPECT_FALSE(fs::exists(vol_dir("ghost")));
  for (auto& e : fs::directory_iterator(dir_.path() + "/volumes")) {
    EXPECT_FALSE(e.path().filename().string().starts_with(".trash-")) << "left behind: " << e.path();
  }
  auto odd = m->get("odd", false);
  ASSERT_TRUE(odd.is_ok());
  EXPECT_NE(odd->problem.find("holds more than a Create makes"), std::string::npos) << odd->problem;
  EXPECT_EQ(test::read_file(vol_dir("odd") + "/_data/a"), "one");
  auto w = m->get("w", false);
  ASSERT_TRUE(w.is_ok());
  EXPECT_EQ(w->problem, "");
  EXPECT_EQ(test::read_file(w->mountpoint + "/a"), "one");
  EXPECT_FALSE(fs::exists(vol_dir("w") + "/create-pending"));
  // The name is free again.
  auto again = m->create("ghost", {{"from-snapshot", "v@s"}});
  ASSERT_TRUE(again.is_ok()) << again.status().message();
  EXPECT_EQ(test::read_file(again->mountpoint + "/a"), "one");
}

// A clone whose journal flush fails after its record was written is not
// acknowledged, yet its record may reach the disk and be replayed, which must
// then find the clone and not make the volume again, empty. So the clone stays
// with its marker and the next start decides: the record is there, a volume
// with the data; the record is lost, discarded and the name free.
TEST_F(VolumeManagerTest, ACloneWhoseFlushFailedAfterItsRecordWasWrittenIsSettledAtTheNextStart) {
  for (const bool record_survives : {true, false}) {
    SCOPED_TRACE(record_survives ? "the record reached the disk" : "the record was lost");
    test::TempDir root("stowage-vm-flush");
    auto o = options(root.path());
    // The journal is preallocated (checkpoint_bytes > 0), so the checkpoint
    // that would settle the failure has to flush too, and fails.
    o.checkpoint_bytes = 1 << 20;
    auto failing = std::make_shared<std::atomic<bool>>(false);
    o.journal_sync = [failing](int fd) {
      if (failing->load()) {
        errno = EIO;
        return -1;
      }
      return ::fdatasync(fd);
    };
    const std::string w_dir = root.path() + "/volumes/w";
    std::map<std::string, std::string> journal_before;  // file -> contents, just before the failed flush
    {
      auto m = open_with(o);
      ASSERT_TRUE(m);
      auto v = m->create("v", {});
      ASSERT_TRUE(v.is_ok());
      test::write_file(v->mountpoint + "/a", "one");
      ASSERT_TRUE(m->snapshot_create("v", "s").is_ok());
      for (auto& e : fs::directory_iterator(root.path() + "/journal")) {
        journal_before[e.path()] = test::read_file(e.path());
      }
      failing->store(true);
      auto w = m->create("w", {{"from-snapshot", "v@s"}});
      ASSERT_FALSE(w.is_ok());
      EXPECT_NE(w.status().message().find("restart stowaged to settle it"), std::string::npos) << w.status().message();
      EXPECT_TRUE(fs::exists(w_dir + "/create-pending"));
      EXPECT_EQ(test::read_file(w_dir + "/_data/a"), "one");
      // Nothing more is acknowledged in a journal whose state is unknown.
      EXPECT_FALSE(m->create("x", {}).is_ok());
      // The checkpoint that would settle it fails too (its new generation's
      // flush): what stays on disk is what a crash at this moment leaves.
      EXPECT_FALSE(m->checkpoint().is_ok());
    }
    if (!record_survives) {  // the disk kept only what was flushed
      for (auto& e : fs::directory_iterator(root.path() + "/journal")) {
        if (!journal_before.contains(e.path())) fs::remove(e.path());
      }
      for (const auto& [path, contents] : journal_before) test::write_file(path, contents);
    }
    o.journal_sync = {};
    auto m = open_with(o);
    ASSERT_TRUE(m);
    m->finish_removals();
    auto w = m->get("w", false);
    if (record_survives) {
      ASSERT_TRUE(w.is_ok()) << w.status().message();
      EXPECT_EQ(w->problem, "");
      EXPECT_EQ(test::read_file(w->mountpoint + "/a"), "one");
      EXPECT_FALSE(fs::exists(w_dir + "/create-pending"));
    } else {
      EXPECT_EQ(w.status().code(), Code::kNotFound);
      EXPECT_FALSE(fs::exists(w_dir));
      auto again = m->create("w", {});
      ASSERT_TRUE(again.is_ok()) << again.status().message();
      EXPECT_FALSE(fs::exists(again->mountpoint + "/a"));
    }
    EXPECT_EQ(test::read_file(root.path() + "/volumes/v/_data/a"), "one");
  }
}

TEST_F(VolumeManagerTest, DirectoryWithoutRecordButWithDataIsKeptAndRefused) {
  // Not something Stowage leaves behind; someone put data there. Keep it.
  fs::create_directories(vol_dir("found") + "/_data");
  test::write_file(vol_dir("found") + "/_data/precious", "data");
  auto m = open();
  auto v = m->get("found", false);
  ASSERT_TRUE(v.is_ok());
  EXPECT_NE(v->problem.find("volume.json is missing"), std::string::npos) << v->problem;
  EXPECT_EQ(m->mount("found", "c").status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(test::read_file(vol_dir("found") + "/_data/precious"), "data");
}

TEST_F(VolumeManagerTest, DirectoriesStowageDidNotMakeAreLeftAlone) {
  // None of these is what an interrupted Create leaves (exactly an empty _data).
  fs::create_directories(vol_dir("notmine"));
  test::write_file(vol_dir("notmine") + "/important.txt", "x");
  fs::create_directories(vol_dir("lost+found"));
  test::write_file(vol_dir("lost+found") + "/#1234", "x");
  fs::create_directories(vol_dir("extra") + "/_data");
  test::write_file(vol_dir("extra") + "/notes", "x");
  fs::create_directories(vol_dir("empty"));
  auto m = open();
  for (const char* n : {"notmine", "extra", "empty"}) {
    auto v = m->get(n, false);
    ASSERT_TRUE(v.is_ok()) << n;
    EXPECT_NE(v->problem.find("volume.json is missing"), std::string::npos) << v->problem;
    EXPECT_EQ(m->mount(n, "c").status().code(), Code::kFailedPrecondition) << n;
  }
  EXPECT_EQ(test::read_file(vol_dir("notmine") + "/important.txt"), "x");
  EXPECT_EQ(test::read_file(vol_dir("extra") + "/notes"), "x");
  EXPECT_TRUE(fs::is_directory(vol_dir("empty")));
  // Not a volume name: not a volume at all, and untouched.
  EXPECT_EQ(test::read_file(vol_dir("lost+found") + "/#1234"), "x");
  EXPECT_EQ(m->list(false).size(), 3u);
  // Each is named in a warning.
  for (const char* n : {"notmine", "lost+found", "extra", "empty"}) {
    bool named = false;
    for (const auto& l : lines_) named |= l.find("level=warn") != std::string::npos && l.find(vol_dir(n)) != std::string::npos;
    EXPECT_TRUE(named) << n;
  }
}

TEST_F(VolumeManagerTest, UnreadableRecordStaysVisibleButCannotMount) {
  {
    auto m = open();
    ASSERT_TRUE(m->create("bad", {}).is_ok());
    ASSERT_TRUE(m->create("good", {}).is_ok());
    ASSERT_TRUE(m->checkpoint().is_ok());  // else the journal would repair the record
  }
  test::write_file(vol_dir("bad") + "/volume.json", "{ torn");
  auto m = open();
  auto bad = m->get("bad", false);
  ASSERT_TRUE(bad.is_ok());  // Docker must still see it, or it forgets the volume
  EXPECT_NE(bad->problem, "");
  EXPECT_EQ(m->mount("bad", "c").status().code(), Code::kFailedPrecondition);
  // Listed, so "no such volume" would be wrong: say why nothing can be released.
  auto released = m->release_all("bad");
  EXPECT_EQ(released.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(released.status().message().find("unreadable"), std::string::npos) << released.status().message();
  EXPECT_TRUE(m->mount("good", "c").is_ok());
  EXPECT_EQ(m->create("bad", {}).status().code(), Code::kAlreadyExists);
}

TEST_F(VolumeManagerTest, RemoveOfVolumeWithUnreadableRecordIsRefusedAndKeepsTheData) {
  {
    auto m = open();
    ASSERT_TRUE(m->create("garbled", {}).is_ok());
    ASSERT_TRUE(m->create("newer", {}).is_ok());
    ASSERT_TRUE(m->mount("garbled", "c1").is_ok());  // the record that becomes unreadable holds a mount
    ASSERT_TRUE(m->checkpoint().is_ok());
  }
  test::write_file(vol_dir("garbled") + "/volume.json", "\x01\x02 not json");
  test::write_file(vol_dir("garbled") + "/_data/f", "data");
  test::write_file(vol_dir("newer") + "/volume.json", R"({"format": 2, "name": "newer"})");
  test::write_file(vol_dir("newer") + "/_data/f", "data");
  auto m = open();
  for (const char* n : {"garbled", "newer"}) {
    Status st = m->remove(n);
    EXPECT_EQ(st.code(), Code::kFailedPrecondition) << n;
    // Says why and what to do, naming the directory.
    EXPECT_NE(st.message().find("unreadable"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(vol_dir(n) + "/volume.json"), std::string::npos) << st.message();
    EXPECT_TRUE(m->get(n, false).is_ok());
    EXPECT_EQ(test::read_file(vol_dir(n) + "/_data/f"), "data");
  }
}

TEST_F(VolumeManagerTest, UsageCountsBytesAndIsCachedForTtl) {
  auto m = open();
  auto v = m->create("v", {});
  ASSERT_TRUE(v.is_ok());
  test::write_file(v->mountpoint + "/f", std::string(1 << 20, 'x'));
  auto u1 = m->get("v", true);
  ASSERT_TRUE(u1->usage.has_value());
  EXPECT_GE(u1->usage->bytes, 1u << 20);
  test::write_file(v->mountpoint + "/g", std::string(1 << 20, 'y'));
  EXPECT_EQ(m->get("v", true)->usage->bytes, u1->usage->bytes);  // within TTL: cached
  now_ns_ += 10'000'000'000;
  EXPECT_GE(m->get("v", true)->usage->bytes, 2u << 20);
}

// A directory backend whose usage walks wait at a gate while it is closed.
class GatedUsageBackend : public VolumeBackend {
 public:
  std::string kind() const override { return inner_.kind(); }
  Status provision(const std::string& dir, const VolumeOptions& o) override { return inner_.provision(dir, o); }
  std::string data_path(const std::string& dir) const override { return inner_.data_path(dir); }
  Result<VolumeUsage> usage(const std::string& dir, uint64_t max_entries) override {
    {
      std::unique_lock lock(mu_);
      ++walks_;
      ++waiting_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return !closed_; });
      --waiting_;
    }
    return inner_.usage(dir, max_entries);
  }
  void set_closed(bool closed) {
    std::lock_guard lock(mu_);
    closed_ = closed;
    cv_.notify_all();
  }
  // Closes the gate until the returned guard goes. Declared after what waits
  // at the gate (futures, the manager), it opens the gate before they are
  // destroyed, so a failing assertion cannot leave them waiting.
  struct OpenAtEnd {
    GatedUsageBackend* b;
    ~OpenAtEnd() { b->set_closed(false); }
  };
  [[nodiscard]] OpenAtEnd close_gate() {
    set_closed(true);
    return OpenAtEnd{this};
  }
  int walks() {
    std::lock_guard lock(mu_);
    return walks_;
  }
  // True once `n` walks wait at the gate (false after 20 s).
  bool wait_for_walks(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(20), [&] { return waiting_ >= n; });
  }

 private:
  DirBackend inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;
  int waiting_ = 0;
  int walks_ = 0;
};

// A usage walk takes ~0.3 s at 200,000 entries, more from the disk. Docker's
// Get (called at every container start) never waits for one, and no walk
// holds up the volume's Mount, its Get, or the background checkpoint.
TEST_F(VolumeManagerTest, UsageWalksHoldUpNeitherDockersGetNorTheVolume) {
  GatedUsageBackend backend;
  auto o = options(dir_.path());
  o.checkpoint_bytes = 4096;
  auto opened = VolumeManager::open(o, backend, log_);
  ASSERT_TRUE(opened.is_ok()) << opened.status().message();
  auto& m = *opened;
  auto v = m->create("v", {});  // measured as it is made, with the gate open
  ASSERT_TRUE(v.is_ok());
  test::write_file(v->mountpoint + "/f", std::string(1 << 20, 'x'));
  std::future<Result<VolumeInfo>> fresh;
  std::future<bool> others;
  const auto open_at_end = backend.close_gate();

  // Docker's Get answers with the measure made at the Create and queues a new one.
  auto got = m->get("v", VolumeManager::Usage::kCached);
  ASSERT_TRUE(got.is_ok());
  ASSERT_TRUE(got->usage.has_value());
  EXPECT_LT(got->usage->bytes, 1u << 20);
  ASSERT_TRUE(backend.wait_for_walks(1));  // the background measure, at the gate
  // stowctl's kind of Get walks itself, and waits at the gate too.
  fresh = std::async(std::launch::async, [&] { return m->get("v", VolumeManager::Usage::kFresh); });
  ASSERT_TRUE(backend.wait_for_walks(2));

  // Meanwhile the volume mounts, Get answers, and the background checkpoint
  // (asked for by the journal's size) writes its record.
  others = std::async(std::launch::async, [&] {
    for (int i = 0; i < 100; ++i) {
      if (!m->mount("v", "id" + std::to_string(i)).is_ok()) return false;
    }
    return m->get("v", VolumeManager::Usage::kCached).is_ok();
  });
  ASSERT_EQ(others.wait_for(std::chrono::seconds(20)), std::future_status::ready) << "held up by a usage walk";
  EXPECT_TRUE(others.get());
  EXPECT_TRUE(test::wait_until(
      [&] {
        auto rec = volume_record_from_json(test::read_file(vol_dir("v") + "/volume.json"));
        return rec.is_ok() && rec->mount_ids.size() >= 50;
      },
      std::chrono::seconds(20)));

  backend.set_closed(false);
  auto measured = fresh.get();
  ASSERT_TRUE(measured.is_ok());
  ASSERT_TRUE(measured->usage.has_value());
  EXPECT_GE(measured->usage->bytes, 1u << 20);
  m->settle_usage();
  EXPECT_GE(m->get("v", VolumeManager::Usage::kCached)->usage->bytes, 1u << 20);
}

// A snapshot made while a walk is under way voids that walk's measure: it
// is handed to its caller, but not kept as the volume's recent one.
TEST_F(VolumeManagerTest, AMeasureBegunBeforeASnapshotChangeIsNotKept) {
  GatedUsageBackend backend;
  auto opened = VolumeManager::open(options(dir_.path()), backend, log_);
  ASSERT_TRUE(opened.is_ok()) << opened.status().message();
  auto& m = *opened;
  auto v = m->create("v", {});
  ASSERT_TRUE(v.is_ok());
  test::write_file(v->mountpoint + "/f", std::string(1 << 20, 'x'));
  std::future<Result<VolumeInfo>> fresh;
  const auto open_at_end = backend.close_gate();
  fresh = std::async(std::launch::async, [&] { return m->get("v", VolumeManager::Usage::kFresh); });
  ASSERT_TRUE(backend.wait_for_walks(1));
  ASSERT_TRUE(m->snapshot_create("v", "s").is_ok());
  backend.set_closed(false);
  auto first = fresh.get();
  ASSERT_TRUE(first.is_ok());
  ASSERT_TRUE(first->usage.has_value());
  // Within the TTL, yet measured again.
  const int walks = backend.walks();
  ASSERT_TRUE(m->get("v", VolumeManager::Usage::kFresh).is_ok());
  EXPECT_EQ(backend.walks(), walks + 1);
  // That measure is kept.
  ASSERT_TRUE(m->get("v", VolumeManager::Usage::kFresh).is_ok());
  EXPECT_EQ(backend.walks(), walks + 1);
}

// A name removed and made again from a snapshot within one journal
// generation is in the checkpoint's list while the new Create still copies
// (holding its entry's lock, for minutes with a big snapshot). The
// checkpoint does not wait for it; the Create's record is kept all the same.
TEST_F(VolumeManagerTest, ACheckpointDoesNotWaitForACreateStillCopying) {
  GatedUsageBackend backend;
  auto opened = VolumeManager::open(options(dir_.path()), backend, log_);
  ASSERT_TRUE(opened.is_ok()) << opened.status().message();
  auto m = std::move(opened).value();
  auto v = m->create("v", {});
  ASSERT_TRUE(v.is_ok());
  test::write_file(v->mountpoint + "/f", "snapshot data");
  ASSERT_TRUE(m->snapshot_create("v", "s").is_ok());
  ASSERT_TRUE(m->create("w", {}).is_ok());
  ASSERT_TRUE(m->remove("w").is_ok());  // "w" is dirty in this generation

  std::future<Result<VolumeInfo>> creating;
  std::future<Status> checkpointing;
  const auto open_at_end = backend.close_gate();  // the Create stops after its copy, before its commit
  creating = std::async(std::launch::async, [&] { return m->create("w", {{"from-snapshot", "v@s"}}); });
  ASSERT_TRUE(backend.wait_for_walks(1));
  checkpointing = std::async(std::launch::async, [&] { return m->checkpoint(); });
  ASSERT_EQ(checkpointing.wait_for(std::chrono::seconds(20)), std::future_status::ready)
      << "the checkpoint waited for the Create";
  EXPECT_TRUE(checkpointing.get().is_ok());
  backend.set_closed(false);
  auto w = creating.get();
  ASSERT_TRUE(w.is_ok()) << w.status().message();
  // Committed after the checkpoint's swap: in the current generation, which
  // the next start replays.
  m.reset();
  m = open();
  auto again = m->get("w", false);
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->problem, "");
  EXPECT_EQ(test::read_file(again->mountpoint + "/f"), "snapshot data");
}

TEST_F(VolumeManagerTest, ConcurrentCreatesOfOneNameAgree) {
  auto m = open();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      if (m->create("same", {{"mode", "0700"}}).is_ok()) ok++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 16);
  EXPECT_EQ(m->list(false).size(), 1u);
  // No staging leftovers.
  int entries = 0;
  for (auto& e : fs::directory_iterator(dir_.path() + "/volumes")) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST_F(VolumeManagerTest, JournalCarriesChangesNotYetCheckpointed) {
  {
    auto m = open();
    ASSERT_TRUE(m->create("v", {}).is_ok());
    ASSERT_TRUE(m->checkpoint().is_ok());
    ASSERT_TRUE(m->mount("v", "c1").is_ok());
  }
  // volume.json still says "no mounts"; the journal knows better.
  auto on_disk = volume_record_from_json(test::read_file(vol_dir("v") + "/volume.json"));
  ASSERT_TRUE(on_disk.is_ok());
  EXPECT_TRUE(on_disk->mount_ids.empty());
  auto m = open();
  EXPECT_EQ(m->get("v", false)->record.mount_ids, (std::set<std::string>{"c1"}));
  // Opening checkpointed the replayed state and started an empty journal.
  on_disk = volume_record_from_json(test::read_file(vol_dir("v") + "/volume.json"));
  EXPECT_EQ(on_disk->mount_ids, (std::set<std::string>{"c1"}));
  int journals = 0;
  for (auto& f : fs::directory_iterator(dir_.path() + "/journal")) {
    (void)f;
    ++journals;
  }
  EXPECT_EQ(journals, 1);
}

TEST_F(VolumeManagerTest, ReplayRecreatesLostDirectoryOfAcknowledgedCreate) {
  {
    auto m = open();
    ASSERT_TRUE(m->create("lost", {{"uid", "42"}, {"mode", "0710"}}).is_ok());
  }
  // What a crash leaves when the directory entries never reached the disk.
  fs::remove_all(vol_dir("lost"));
  auto m = open();
  auto v = m->get("lost", false);
  ASSERT_TRUE(v.is_ok()) << v.status().message();
  struct stat st {};
  ASSERT_EQ(::stat(v->mountpoint.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 42u);
  EXPECT_EQ(st.st_mode & 07777, 0710u);
  EXPECT_TRUE(m->mount("lost", "c").is_ok());
}

TEST_F(VolumeManagerTest, ReplayFinishesAcknowledgedRemoveWhoseRenameWasLost) {
  {
    auto m = open();
    ASSERT_TRUE(m->create("gone", {}).is_ok());
    ASSERT_TRUE(m->checkpoint().is_ok());
    ASSERT_TRUE(m->remove("gone").is_ok());
  }
  // The rename to trash did not reach the disk: the directory is back.
  fs::create_directories(vol_dir("gone") + "/_data");
  test::write_file(vol_dir("gone") + "/volume.json", test::read_file(vol_dir("gone") + "/volume.json"));
  auto m = open();
  EXPECT_EQ(m->get("gone", false).status().code(), Code::kNotFound);
  EXPECT_FALSE(fs::exists(vol_dir("gone")));
}

// Names in volumes/ that start with `prefix`.
std::vector<std::string> entries_with_prefix(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir)) {
    std::string n = e.path().filename().string();
    if (n.starts_with(prefix)) out.push_back(n);
  }
  return out;
}

TEST_F(VolumeManagerTest, ReplayKeepsDataOfAVolumeRecreatedAfterARemove) {
  // Create, Remove, Create of one name: the journal holds P, D, P. The
  // directory on disk belongs to the second volume; replaying the D frame
  // must not delete it.
  {
    auto m = open();
    ASSERT_TRUE(m->create("v", {}).is_ok());
    ASSERT_TRUE(m->remove("v").is_ok());
    auto v = m->create("v", {{"mode", "0700"}});
    ASSERT_TRUE(v.is_ok()) << v.status().message();
    test::write_file(v->mountpoint + "/precious", "data");
    m->finish_removals();
  }
  for (int restart = 0; restart < 2; ++restart) {  // the second open replays a checkpointed state
    auto m = open();
    auto v = m->get("v", false);
    ASSERT_TRUE(v.is_ok()) << v.status().message();
    EXPECT_EQ(v->record.options.mode, 0700u);
    EXPECT_EQ(test::read_file(vol_dir("v") + "/_data/precious"), "data");
  }
}

TEST_F(VolumeManagerTest, ReplayOfCreateRemoveSequencesEndsInTheLastState) {
  {
    auto m = open();
    ASSERT_TRUE(m->create("twice", {}).is_ok());
    ASSERT_TRUE(m->checkpoint().is_ok());
    // Created and removed: gone.
    ASSERT_TRUE(m->create("once", {}).is_ok());
    ASSERT_TRUE(m->remove("once").is_ok());
    // Removed, created, removed: gone too.
    ASSERT_TRUE(m->remove("twice").is_ok());
    ASSERT_TRUE(m->create("twice", {}).is_ok());
    ASSERT_TRUE(m->remove("twice").is_ok());
    m->finish_removals();
  }
  // Both renames to trash were lost in a crash: the directories are back.
  for (const char* n : {"once", "twice"}) {
    fs::create_directories(vol_dir(n) + "/_data");
    test::write_file(vol_dir(n) + "/_data/f", "old");
  }
  auto m = open();
  EXPECT_TRUE(m->list(false).empty());
  EXPECT_FALSE(fs::exists(vol_dir("once")));
  EXPECT_FALSE(fs::exists(vol_dir("twice")));
  m->finish_removals();
  EXPECT_TRUE(entries_with_prefix(dir_.path() + "/volumes", ".trash-").empty());
}

TEST_F(VolumeManagerTest, RemovedVolumesDataIsDeletedAfterTheAnswer) {
  auto m = open();
  ASSERT_TRUE(m->create("v", {}).is_ok());
  fs::create_directories(vol_dir("v") + "/_data/deep/er");
  test::write_file(vol_dir("v") + "/_data/deep/er/file", std::string(100000, 'x'));
  ASSERT_TRUE(m->remove("v").is_ok());
  // Gone by name at once: the name is free and a crash cannot bring it back.
  EXPECT_FALSE(fs::exists(vol_dir("v")));
  EXPECT_EQ(m->get("v", false).status().code(), Code::kNotFound);
  ASSERT_TRUE(m->create("v", {}).is_ok());
  EXPECT_TRUE(fs::is_empty(vol_dir("v") + "/_data"));
  // The background thread deletes the old data.
  m->finish_removals();
  EXPECT_TRUE(entries_with_prefix(dir_.path() + "/volumes", ".trash-").empty());
  EXPECT_TRUE(m->get("v", false).is_ok());
}

TEST_F(VolumeManagerTest, RemovedDataNotYetDeletedAtStopIsDeletedAtNextOpen) {
  {
    auto m = open();
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(m->create("v" + std::to_string(i), {}).is_ok());
    for (int i = 0; i < 20; ++i) {
      test::write_file(vol_dir("v" + std::to_string(i)) + "/_data/f", "data");
      ASSERT_TRUE(m->remove("v" + std::to_string(i)).is_ok());
    }
    // Destroyed without finish_removals(): some .trash-* may be left, as after a crash.
  }
  auto m = open();
  m->finish_removals();  // in the background after a start too
  EXPECT_TRUE(entries_with_prefix(dir_.path() + "/volumes", ".trash-").empty());
  EXPECT_TRUE(m->list(false).empty());
}

TEST_F(VolumeManagerTest, PreallocatedJournalWithTornTailReplaysAcknowledgedChanges) {
  std::string journal;
  {
    auto m = open();
    ASSERT_TRUE(m->create("v", {}).is_ok());
    ASSERT_TRUE(m->mount("v", "c1").is_ok());
    ASSERT_TRUE(m->create("w", {}).is_ok());
    ASSERT_TRUE(m->remove("w").is_ok());
    auto gens = StateJournal::list(dir_.path() + "/journal");
    ASSERT_TRUE(gens.is_ok());
    ASSERT_EQ(gens->size(), 1u);
    journal = (*gens)[0].path;
  }
  // The generation was zero-filled up front (a little over the 1 MiB that
  // triggers a checkpoint); the records sit at its start.
  EXPECT_EQ(fs::file_size(journal), (1u << 20) + (1u << 18));
  auto gens = StateJournal::read_all(dir_.path() + "/journal");
  ASSERT_EQ((*gens)[0].payloads.size(), 4u);
  EXPECT_FALSE((*gens)[0].torn_tail);
  // A crash in the middle of the next frame: half of its bytes over the zeros.
  uint64_t end = 0;
  for (const auto& p : (*gens)[0].payloads) end += 12 + p.size();
  std::string data = test::read_file(journal);
  std::string half = std::string("\x40\x00\x00\x00", 4) + "garbage-of-a-torn-frame";
  data.replace(end, half.size(), half);
  test::write_file(journal, data);
  auto m = open();
  auto v = m->get("v", false);
  ASSERT_TRUE(v.is_ok()) << v.status().message();
  EXPECT_EQ(v->record.mount_ids, (std::set<std::string>{"c1"}));
  EXPECT_EQ(m->get("w", false).status().code(), Code::kNotFound);
  EXPECT_FALSE(fs::exists(vol_dir("w")));
  // Still a working journal afterwards.
  ASSERT_TRUE(m->unmount("v", "c1").is_ok());
  m.reset();
  m = open();
  EXPECT_TRUE(m->get("v", false)->record.mount_ids.empty());
}

TEST_F(VolumeManagerTest, DamageInTheMiddleOfTheJournalDeletesNothingAndKeepsTheFile) {
  std::string journal;
  {
    auto m = open();
    ASSERT_TRUE(m->create("first", {}).is_ok());
    ASSERT_TRUE(m->create("later", {}).is_ok());
    ASSERT_TRUE(m->create("gone", {}).is_ok());
    ASSERT_TRUE(m->remove("gone").is_ok());
    m->finish_removals();
    journal = StateJournal::list(dir_.path() + "/journal")->back().path;
  }
  // The remove's rename was lost; and a byte flips inside the first frame's payload.
  fs::create_directories(vol_dir("gone") + "/_data");
  std::string data = test::read_file(journal);
  data[12 + 20] ^= 0x01;
  test::write_file(journal, data);
  auto m = open();
  // Frames after the damaged one are replayed.
  auto later = m->get("later", false);
  ASSERT_TRUE(later.is_ok());
  EXPECT_EQ(later->problem, "");
  // The volume whose record was in the damaged frame is kept, as broken.
  auto first = m->get("first", false);
  ASSERT_TRUE(first.is_ok());
  EXPECT_NE(first->problem.find("damaged"), std::string::npos) << first->problem;
  EXPECT_TRUE(fs::is_directory(vol_dir("first") + "/_data"));
  // No directory is deleted in this start, not even an acknowledged Remove's.
  auto gone = m->get("gone", false);
  ASSERT_TRUE(gone.is_ok());
  EXPECT_NE(gone->problem.find("damaged"), std::string::npos) << gone->problem;
  EXPECT_TRUE(fs::is_directory(vol_dir("gone")));
  // The damaged file is kept beside the journal, and said so at error level.
  auto aside = entries_with_prefix(dir_.path() + "/journal", fs::path(journal).filename().string() + ".damaged-");
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_EQ(test::read_file(dir_.path() + "/journal/" + aside[0]), data);
  bool logged = false;
  for (const auto& l : lines_) logged |= l.find("level=error") != std::string::npos && l.find("journal damaged") != std::string::npos;
  EXPECT_TRUE(logged);

  // The next start no longer reads the damaged journal: the two volumes stay
  // held broken (not taken for an interrupted Create, not ready again).
  m.reset();
  m = open();
  for (const char* name : {"first", "gone"}) {
    auto v = m->get(name, false);
    ASSERT_TRUE(v.is_ok()) << name;
    EXPECT_NE(v->problem.find("damaged"), std::string::npos) << name << ": " << v->problem;
    EXPECT_TRUE(fs::is_directory(vol_dir(name) + "/_data")) << name;
    EXPECT_FALSE(m->mount(name, "c1").is_ok()) << name;
  }
  // The marker is what holds them: once an operator removes it, the usual
  // rules apply again (for "gone", no record and an empty data directory:
  // an interrupted Create, discarded).
  ASSERT_TRUE(fs::remove(vol_dir("gone") + "/held-broken"));
  m.reset();
  m = open();
  EXPECT_FALSE(m->get("gone", false).is_ok());
  EXPECT_FALSE(fs::exists(vol_dir("gone")));
  EXPECT_TRUE(m->get("first", false).is_ok());
}

TEST_F(VolumeManagerTest, JournalTriggersCheckpointBySize) {
  VolumeManager::Options o;
  o.state_root = dir_.path();
  o.boot_id = "b";
  o.checkpoint_bytes = 4096;
  auto m = VolumeManager::open(o, backend_, log_);
  ASSERT_TRUE(m.is_ok());
  ASSERT_TRUE((*m)->create("v", {}).is_ok());
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE((*m)->mount("v", "id" + std::to_string(i)).is_ok());
  }
  // The background checkpoint writes the record and drops old generations.
  EXPECT_TRUE(test::wait_until(
      [&] {
        auto rec = volume_record_from_json(test::read_file(vol_dir("v") + "/volume.json"));
        return rec.is_ok() && rec->mount_ids.size() >= 50;
      },
      std::chrono::seconds(20)));
  int journals = 0;
  for (auto& f : fs::directory_iterator(dir_.path() + "/journal")) {
    (void)f;
    ++journals;
  }
  EXPECT_LE(journals, 2);
}

TEST_F(VolumeManagerTest, RecordThatCannotBeSavedLosesNoOtherVolumesRecords) {
  auto m = open();
  ASSERT_TRUE(m->create("a", {}).is_ok());
  ASSERT_TRUE(m->create("b", {}).is_ok());
  ASSERT_TRUE(m->checkpoint().is_ok());
  ASSERT_TRUE(m->mount("a", "c1").is_ok());
  ASSERT_TRUE(m->mount("b", "c2").is_ok());
  // a's record cannot be replaced (as with a directory made immutable).
  std::string a_json = vol_dir("a") + "/volume.json";
  fs::remove(a_json);
  fs::create_directory(a_json);
  Status first = m->checkpoint();
  EXPECT_TRUE(first.is_ok()) << first.message();
  auto a = m->get("a", false);
  ASSERT_TRUE(a.is_ok());
  EXPECT_NE(a->problem.find("could not be saved"), std::string::npos) << a->problem;
  EXPECT_EQ(volume_record_from_json(test::read_file(vol_dir("b") + "/volume.json"))->mount_ids,
            (std::set<std::string>{"c2"}));
  // Further checkpoints go on for the others and drop old generations, while
  // a's record travels on in the journal.
  ASSERT_TRUE(m->mount("b", "c3").is_ok());
  ASSERT_TRUE(m->checkpoint().is_ok());
  EXPECT_EQ(StateJournal::list(dir_.path() + "/journal")->size(), 1u);
  // The operator repairs it; the next checkpoint saves it.
  fs::remove(a_json);
  ASSERT_TRUE(m->checkpoint().is_ok());
  EXPECT_EQ(m->get("a", false)->problem, "");
  m.reset();
  m = open();
  ASSERT_TRUE(m->get("a", false).is_ok());
  EXPECT_EQ(m->get("a", false)->record.mount_ids, (std::set<std::string>{"c1"}));
  EXPECT_EQ(m->get("b", false)->record.mount_ids, (std::set<std::string>{"c2", "c3"}));
}

TEST_F(VolumeManagerTest, FailingCheckpointIsRetriedWithBackoff) {
  std::mutex mu;
  int failures = 0;
  Logger log{LogFormat::kLogfmt, LogLevel::kInfo, [&](std::string_view l) {
               std::lock_guard lock(mu);
               if (l.find("checkpoint failed") != std::string_view::npos) ++failures;
             }};
  VolumeManager::Options o;
  o.state_root = dir_.path();
  o.boot_id = "b";
  o.checkpoint_bytes = 4096;
  o.checkpoint_retry_ns = 1'000'000'000;
  auto opened = VolumeManager::open(o, backend_, log);
  ASSERT_TRUE(opened.is_ok());
  auto& m = *opened;
  ASSERT_TRUE(m->create("v", {}).is_ok());
  // The next generation cannot be made (as with the disk full).
  auto gens = StateJournal::list(dir_.path() + "/journal");
  std::string blocker = journal_path(dir_.path() + "/journal", gens->back().number + 1);
  fs::create_directory(blocker);
  auto failed = [&] {
    std::lock_guard lock(mu);
    return failures;
  };
  for (int i = 0; failed() == 0 && i < 2000; ++i) ASSERT_TRUE(m->mount("v", "id" + std::to_string(i)).is_ok());
  ASSERT_EQ(failed(), 1);
  // Every commit is past the threshold now; none may retry at once.
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(m->mount("v", "more" + std::to_string(i)).is_ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(failed(), 1);
  // Once the cause is gone, the retry succeeds without another commit.
  fs::remove(blocker);
  EXPECT_TRUE(test::wait_until(
      [&] {
        auto rec = volume_record_from_json(test::read_file(vol_dir("v") + "/volume.json"));
        return rec.is_ok() && rec->mount_ids.size() >= 100;
      },
      std::chrono::seconds(20)));
  EXPECT_LE(failed(), 2);
}

// The state root on a full disk: calls that cannot be journaled are refused
// with the reason and change nothing; once space is freed the next calls work,
// without a restart; a restart then finds exactly the acknowledged state.
TEST_F(VolumeManagerTest, FullDiskRefusesCallsChangesNothingAndRecoversOnceSpaceIsFreed) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounts a tmpfs: needs root";
  test::SmallFs small(8 << 20);
  ASSERT_EQ(small.error(), "");
  VolumeManager::Options o = options(small.path());
  // Large enough that the Creates below do not trigger a checkpoint. The one
  // that would start a new journal generation fails while the disk is full,
  // and is not retried within this test: recovering must not depend on it.
  o.checkpoint_bytes = 64 << 10;
  o.checkpoint_retry_ns = 3'600'000'000'000;
  auto m = open_with(o);
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->create("v", {}).is_ok());
  // Removes take the smallest journal frames: enough of them use up whatever
  // room is left at the journal's end once larger frames no longer fit. These
  // volumes hold no file (only a directory) and have no volume.json yet (no
  // checkpoint): removing them frees no space.
  std::vector<std::string> spare;
  for (int i = 0; i < 300; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "u%03d", i);
    auto u = m->create(name, {});
    ASSERT_TRUE(u.is_ok()) << u.status().message();
    ASSERT_TRUE(fs::create_directory(u->mountpoint + "/keep"));
    spare.push_back(name);
  }
  const std::string filler = small.path() + "/filler";
  small.fill(filler);

  // Mounts use up the journal's preallocated space, then need more.
  std::set<std::string> acknowledged;
  Status refused;
  for (int i = 0; i < 1000 && refused.is_ok(); ++i) {
    std::string id = "c" + std::to_string(i);
    auto r = m->mount("v", id);
    if (r.is_ok()) {
      acknowledged.insert(id);
    } else {
      refused = r.status();
    }
  }
  ASSERT_FALSE(refused.is_ok()) << "the journal never needed more space";
  EXPECT_EQ(refused.code(), Code::kResourceExhausted) << refused.message();
  EXPECT_NE(refused.message().find("mount volume 'v'"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("No space left on device"), std::string::npos) << refused.message();
  EXPECT_EQ(m->get("v", false)->record.mount_ids, acknowledged);
  // Removes, until one is refused the same way; it changes nothing.
  std::string kept;
  Status rm;
  while (!spare.empty() && rm.is_ok()) {
    kept = spare.front();
    rm = m->remove(kept);
    if (rm.is_ok()) spare.erase(spare.begin());
  }
  ASSERT_FALSE(rm.is_ok()) << "every remove found room in the journal";
  EXPECT_EQ(rm.code(), Code::kResourceExhausted) << rm.message();
  EXPECT_NE(rm.message().find("remove volume '" + kept + "'"), std::string::npos) << rm.message();
  EXPECT_TRUE(m->get(kept, false).is_ok());
  EXPECT_TRUE(fs::is_directory(small.path() + "/volumes/" + kept + "/_data/keep"));
  // So is a Create.
  auto w = m->create("w", {});
  EXPECT_EQ(w.status().code(), Code::kResourceExhausted) << w.status().message();
  EXPECT_NE(w.status().message().find("create volume 'w'"), std::string::npos) << w.status().message();
  EXPECT_FALSE(m->get("w", false).is_ok());
  m->finish_removals();
  std::set<std::string> dirs, want(spare.begin(), spare.end());
  want.insert("v");
  for (auto& d : fs::directory_iterator(small.path() + "/volumes")) dirs.insert(d.path().filename());
  EXPECT_EQ(dirs, want);

  // Space is freed: the very next calls work.
  ASSERT_TRUE(fs::remove(filler));
  auto mounted = m->mount("v", "after");
  ASSERT_TRUE(mounted.is_ok()) << mounted.status().message();
  acknowledged.insert("after");
  auto created = m->create("w", {});
  ASSERT_TRUE(created.is_ok()) << created.status().message();
  ASSERT_TRUE(m->unmount("v", "c0").is_ok());
  acknowledged.erase("c0");

  m.reset();
  m = open_with(o);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->get("v", false)->record.mount_ids, acknowledged);
  EXPECT_TRUE(m->get("w", false).is_ok());
  EXPECT_EQ(m->list(false).size(), spare.size() + 2);
  ASSERT_TRUE(m->get(kept, false).is_ok());
  EXPECT_TRUE(fs::is_directory(small.path() + "/volumes/" + kept + "/_data/keep"));
  for (const auto& info : m->list(false)) EXPECT_EQ(info.problem, "") << info.record.name;
}

// stowaged restarting (systemd does) while the state root is full must still
// come up and answer Get and List: dockerd forgets the volumes whose Get
// fails. Calls that need the journal are refused until space is freed.
TEST_F(VolumeManagerTest, OpensOnAFullDiskAndServesOnceSpaceIsFreed) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounts a tmpfs: needs root";
  test::SmallFs small(8 << 20);
  ASSERT_EQ(small.error(), "");
  VolumeManager::Options o = options(small.path());
  auto m = open_with(o);
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->create("a", {}).is_ok());
  ASSERT_TRUE(m->create("b", {}).is_ok());
  ASSERT_TRUE(m->mount("a", "c1").is_ok());
  m.reset();  // a crash would leave the same: records only in the journal
  const std::string filler = small.path() + "/filler";
  small.fill(filler);

  m = open_with(o);
  ASSERT_TRUE(m);
  ASSERT_EQ(m->list(false).size(), 2u);
  auto a = m->get("a", false);
  ASSERT_TRUE(a.is_ok()) << a.status().message();
  EXPECT_EQ(a->record.mount_ids, (std::set<std::string>{"c1"}));
  auto refused = m->create("c", {});
  EXPECT_EQ(refused.status().code(), Code::kResourceExhausted) << refused.status().message();
  EXPECT_FALSE(m->get("c", false).is_ok());

  ASSERT_TRUE(fs::remove(filler));
  ASSERT_TRUE(m->mount("b", "c2").is_ok());
  ASSERT_TRUE(m->create("c", {}).is_ok());
  m.reset();
  m = open_with(o);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->get("a", false)->record.mount_ids, (std::set<std::string>{"c1"}));
  EXPECT_EQ(m->get("b", false)->record.mount_ids, (std::set<std::string>{"c2"}));
  EXPECT_TRUE(m->get("c", false).is_ok());
  for (const auto& info : m->list(false)) EXPECT_EQ(info.problem, "") << info.record.name;
}

// Snapshot, clone and rollback copies that run out of space: each fails
// naming the cause and leaves no partial copy; the volume's data is untouched;
// a snapshot works once space is freed.
TEST_F(VolumeManagerTest, CopiesThatRunOutOfSpaceLeaveNothingBehind) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounts a tmpfs: needs root";
  test::SmallFs small(16 << 20);
  ASSERT_EQ(small.error(), "");
  auto m = open_with(options(small.path()));
  ASSERT_TRUE(m);
  auto v = m->create("v", {});
  ASSERT_TRUE(v.is_ok());
  test::write_file(v->mountpoint + "/small", "one");
  ASSERT_TRUE(m->snapshot_create("v", "s1").is_ok());
  test::write_file(v->mountpoint + "/big", std::string(4 << 20, 'b'));
  ASSERT_TRUE(m->snapshot_create("v", "s2").is_ok());
  test::write_file(v->mountpoint + "/small", "two");
  const std::string filler = small.path() + "/filler";
  small.fill(filler);
  // Only this much room: less than a copy of the volume needs.
  ASSERT_EQ(::truncate(filler.c_str(), static_cast<off_t>(fs::file_size(filler) - (1 << 20))), 0);
  auto leftovers = [&] {
    std::vector<std::string> out;
    for (auto& e : fs::recursive_directory_iterator(small.path() + "/volumes")) {
      std::string n = e.path().filename();
      if (n.starts_with(".tmp-") || n.starts_with(".rollback-old-") || n.starts_with(".staging-")) {
        out.push_back(e.path());
      }
    }
    return out;
  };

  auto snap = m->snapshot_create("v", "s3");
  EXPECT_EQ(snap.status().code(), Code::kResourceExhausted) << snap.status().message();
  EXPECT_NE(snap.status().message().find("snapshot volume 'v'"), std::string::npos) << snap.status().message();
  EXPECT_NE(snap.status().message().find("No space left on device"), std::string::npos) << snap.status().message();
  auto clone = m->create("w", {{"from-snapshot", "v@s2"}});
  EXPECT_EQ(clone.status().code(), Code::kResourceExhausted) << clone.status().message();
  EXPECT_NE(clone.status().message().find("create volume 'w'"), std::string::npos) << clone.status().message();
  EXPECT_FALSE(m->get("w", false).is_ok());
  EXPECT_FALSE(fs::exists(vol_dir("w")));
  Status rolled = m->snapshot_rollback("v", "s2", false);
  EXPECT_EQ(rolled.code(), Code::kResourceExhausted) << rolled.message();
  EXPECT_NE(rolled.message().find("roll back volume 'v'"), std::string::npos) << rolled.message();
  EXPECT_EQ(test::read_file(v->mountpoint + "/small"), "two");
  EXPECT_EQ(fs::file_size(v->mountpoint + "/big"), 4u << 20);
  EXPECT_EQ(leftovers(), std::vector<std::string>{});
  auto snaps = m->snapshot_list("v");
  ASSERT_TRUE(snaps.is_ok());
  std::vector<std::string> names;
  for (const auto& s : *snaps) names.push_back(s.name);
  EXPECT_EQ(names, (std::vector<std::string>{"s1", "s2"}));

  ASSERT_TRUE(fs::remove(filler));
  auto later = m->snapshot_create("v", "s3");
  ASSERT_TRUE(later.is_ok()) << later.status().message();
  ASSERT_TRUE(m->snapshot_rollback("v", "s1", false).is_ok());
  EXPECT_EQ(test::read_file(v->mountpoint + "/small"), "one");
  EXPECT_EQ(leftovers(), std::vector<std::string>{});
}

// A clone on a thin-provisioned device that is full: the copy's writes
// succeed and only writing them back fails. The Create must fail rather than
// acknowledge a volume whose data is not on the disk.
TEST_F(VolumeManagerTest, CloneThatCannotBeWrittenBackIsNotCreated) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounts a tmpfs and a loop image: needs root";
  test::ThinFs lfs(48, 128);
  ASSERT_EQ(lfs.error(), "");
  auto m = open_with(options(lfs.mount_point()));
  ASSERT_TRUE(m);
  auto v = m->create("v", {});
  ASSERT_TRUE(v.is_ok());
  test::write_file(v->mountpoint + "/big", std::string(8 << 20, 'b'));
  ASSERT_TRUE(m->snapshot_create("v", "s").is_ok());
  ::sync();
  lfs.fill_pool();

  auto w = m->create("w", {{"from-snapshot", "v@s"}});
  // Writeback reports ENOSPC or EIO, as the kernel maps the device's error.
  EXPECT_TRUE(w.status().code() == Code::kResourceExhausted || w.status().code() == Code::kIOError)
      << "created a clone that is not on the disk: " << w.status().to_string();
  EXPECT_NE(w.status().message().find("create volume 'w'"), std::string::npos) << w.status().message();
  EXPECT_FALSE(m->get("w", false).is_ok());
  for (auto& e : fs::directory_iterator(lfs.mount_point() + "/volumes")) {
    EXPECT_TRUE(e.path().filename() == "v") << "left behind: " << e.path();
  }
}

// A journal flush that fails (the thin pool under the state root is full:
// writes succeed, writeback does not) cannot be retried: what reached the
// disk is unknown, so commits are refused until a checkpoint has written the
// state afresh into a new journal. stowaged makes that checkpoint itself and
// retries it, so once space is back calls work again without a restart; a
// restart then finds exactly the acknowledged state.
TEST_F(VolumeManagerTest, FailedJournalFlushRecoversThroughACheckpointWithoutARestart) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounts a tmpfs and a loop image: needs root";
  test::ThinFs thin(48, 128);
  ASSERT_EQ(thin.error(), "");
  VolumeManager::Options o = options(thin.mount_point());
  // Far from the size that asks for a checkpoint: only the failure may.
  o.checkpoint_bytes = 1 << 20;
  o.checkpoint_retry_ns = 200'000'000;
  auto m = open_with(o);
  ASSERT_TRUE(m);
  ASSERT_TRUE(m->create("v", {}).is_ok());
  std::set<std::string> acknowledged = {"v"};
  // The journal's preallocated space is written (zeros) on the disk, so its
  // frames need no new pool space. A hole in its tail (read as the same
  // zeros) makes them need it: then the pool is filled.
  const std::string journal = StateJournal::list(thin.mount_point() + "/journal")->back().path;
  {
    const int fd = ::open(journal.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    const int rc = ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8192, 1 << 20);
    ::close(fd);
    ASSERT_EQ(rc, 0) << std::strerror(errno);
  }
  thin.fill_pool();

  // A Create is flushed before it is acknowledged.
  Status refused;
  for (int i = 0; i < 500 && refused.is_ok(); ++i) {
    const std::string name = "u" + std::to_string(i);
    auto r = m->create(name, {});
    if (r.is_ok()) {
      acknowledged.insert(name);
    } else {
      refused = r.status();
    }
  }
  ASSERT_FALSE(refused.is_ok()) << "no journal flush failed";
  EXPECT_TRUE(refused.code() == Code::kIOError || refused.code() == Code::kResourceExhausted) << refused.to_string();
  auto names = [&] {
    std::set<std::string> out;
    for (const auto& info : m->list(false)) out.insert(info.record.name);
    return out;
  };
  EXPECT_EQ(names(), acknowledged);
  EXPECT_FALSE(m->create("still-full", {}).is_ok());

  thin.free_pool();
  ASSERT_TRUE(test::wait_until([&] { return m->create("after", {}).is_ok(); }, std::chrono::seconds(20)))
      << "calls stay refused after space came back";
  acknowledged.insert("after");
  ASSERT_TRUE(m->mount("v", "c1").is_ok());

  m.reset();
  m = open_with(o);
  ASSERT_TRUE(m);
  EXPECT_EQ(names(), acknowledged);
  EXPECT_EQ(m->get("v", false)->record.mount_ids, (std::set<std::string>{"c1"}));
  for (const auto& info : m->list(false)) EXPECT_EQ(info.problem, "") << info.record.name;
}

TEST_F(VolumeManagerTest, SnapshotRollbackAndClone) {
  auto m = open();
  auto v = m->create("v", {});
  ASSERT_TRUE(v.is_ok());
  test::write_file(v->mountpoint + "/a", "one");
  fs::create_directories(v->mountpoint + "/dir");
  test::write_file(v->mountpoint + "/dir/deep", std::string(100000, 'd'));
  auto s1 = m->snapshot_create("v", "s1");
  ASSERT_TRUE(s1.is_ok()) << s1.status().message();
  EXPECT_EQ(s1->name, "s1");
  EXPECT_EQ(s1->files, 2u);
  EXPECT_EQ(s1->bytes, 100003u);
  EXPECT_EQ(m->snapshot_create("v", "s1").status().code(), Code::kAlreadyExists);

  test::write_file(v->mountpoint + "/a", "two");
  test::write_file(v->mountpoint + "/b", "new");
  ASSERT_TRUE(m->mount("v", "c1").is_ok());
  Status refused = m->snapshot_rollback("v", "s1", false);
  EXPECT_EQ(refused.code(), Code::kFailedPrecondition);
  EXPECT_EQ(test::read_file(v->mountpoint + "/a"), "two");  // untouched
  ASSERT_TRUE(m->unmount("v", "c1").is_ok());
  ASSERT_TRUE(m->snapshot_rollback("v", "s1", false).is_ok());
  EXPECT_EQ(test::read_file(v->mountpoint + "/a"), "one");
  EXPECT_FALSE(fs::exists(v->mountpoint + "/b"));
  EXPECT_EQ(test::read_file(v->mountpoint + "/dir/deep").size(), 100000u);
  EXPECT_EQ(m->snapshot_rollback("v", "nope", false).code(), Code::kNotFound);

  auto w = m->create("w", {{"from-snapshot", "v@s1"}, {"uid", "77"}});
  ASSERT_TRUE(w.is_ok()) << w.status().message();
  EXPECT_EQ(test::read_file(w->mountpoint + "/a"), "one");
  struct stat st {};
  ASSERT_EQ(::stat(w->mountpoint.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 77u);
  // The clone is independent of its source.
  test::write_file(w->mountpoint + "/a", "clone");
  EXPECT_EQ(test::read_file(v->mountpoint + "/a"), "one");

  auto listed = m->get("v", true);
  ASSERT_EQ(listed->snapshots.size(), 1u);
  EXPECT_EQ(listed->snapshots[0].name, "s1");
}

TEST_F(VolumeManagerTest, SnapshotsBlockVolumeRemoveUntilDeleted) {
  auto m = open();
  ASSERT_TRUE(m->create("v", {}).is_ok());
  ASSERT_TRUE(m->snapshot_create("v", "keep").is_ok());
  Status st = m->remove("v");
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_NE(st.message().find("stowctl snapshot rm v"), std::string::npos) << st.message();
  ASSERT_TRUE(m->snapshot_remove("v", "keep").is_ok());
  EXPECT_EQ(m->snapshot_remove("v", "keep").code(), Code::kNotFound);
  EXPECT_TRUE(m->remove("v").is_ok());
}

TEST_F(VolumeManagerTest, SnapshotNamesAndSourcesAreChecked) {
  auto m = open();
  ASSERT_TRUE(m->create("v", {}).is_ok());
  EXPECT_EQ(m->snapshot_create("v", "../x").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(m->snapshot_create("v", ".hidden").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(m->snapshot_create("nosuch", "s").status().code(), Code::kNotFound);
  auto stamped = m->snapshot_create("v", "");
  ASSERT_TRUE(stamped.is_ok());
  EXPECT_EQ(stamped->name, "20231114T221320Z");
  EXPECT_EQ(m->create("c", {{"from-snapshot", "v@missing"}}).status().code(), Code::kNotFound);
  EXPECT_EQ(m->create("c", {{"from-snapshot", "nosuch@s"}}).status().code(), Code::kNotFound);
  EXPECT_EQ(m->create("c", {{"from-snapshot", "c@s"}}).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(entries_with_prefix(dir_.path() + "/volumes", ".staging-").empty());  // nothing left behind
  EXPECT_EQ(m->create("c", {{"from-snapshot", "v"}}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(m->create("c", {{"from-snapshot", "v@../x"}}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(m->get("c", false).status().code(), Code::kNotFound);
  EXPECT_EQ(m->list(false).size(), 1u);
}

TEST_F(VolumeManagerTest, CrossedCreatesFromSnapshotsDoNotDeadlock) {
  // va from vb@s while vb from va@s: each Create holds its own new volume
  // and looks at the other as its source.
  auto m = open();
  std::atomic<bool> done[2] = {false, false};
  std::atomic<int> created{0};
  auto crossed = [&](const std::string& name, const std::string& source, int i) {
    for (int round = 0; round < 3000; ++round) {
      auto v = m->create(name, {{"from-snapshot", source + "@s"}});
      // The source never exists long enough to have snapshot s.
      if (v.is_ok()) created++;
      (void)m->list(false);
    }
    done[i] = true;
  };
  std::thread a(crossed, "va", "vb", 0);
  std::thread b(crossed, "vb", "va", 1);
  bool finished = test::wait_until([&] { return done[0] && done[1]; }, std::chrono::seconds(30));
  if (!finished) {
    // The threads hold the manager's locks forever: no clean way out.
    std::fprintf(stderr, "crossed from-snapshot Creates deadlocked\n");
    std::_Exit(1);
  }
  a.join();
  b.join();
  EXPECT_EQ(created.load(), 0);
  EXPECT_TRUE(m->list(false).empty());
  EXPECT_TRUE(entries_with_prefix(dir_.path() + "/volumes", ".staging-").empty());
}

// A snapshot in progress (here held in its quiesce step; on ext4 a copy of
// the whole volume) must not hold up Get, List and Path of that volume, which
// dockerd calls on the plugin's I/O threads, nor the checkpoint. Operations
// on the volume's data (Mount here) wait for it.
TEST_F(VolumeManagerTest, ASnapshotInProgressDoesNotHoldUpGetListPathOrCheckpoints) {
  auto m = open();
  ASSERT_TRUE(m->create("q", {{"quiesce", "pause"}}).is_ok());
  ASSERT_TRUE(m->mount("q", "c0").is_ok());
  {
    std::lock_guard lock(quiescer_.gate_mu);
    quiescer_.hold = true;
  }
  std::thread snap([&] { EXPECT_TRUE(m->snapshot_create("q", "s").is_ok()); });
  {
    std::unique_lock lock(quiescer_.gate_mu);
    ASSERT_TRUE(quiescer_.gate_cv.wait_for(lock, std::chrono::seconds(30), [&] { return quiescer_.pausing == 1; }));
  }
  EXPECT_TRUE(m->get("q", true).is_ok());
  EXPECT_EQ(m->list(false).size(), 1u);
  EXPECT_TRUE(m->path("q").is_ok());
  EXPECT_TRUE(m->checkpoint().is_ok());
  // Nor a snapshot listing (metrics scrapes make one per volume): it shows
  // only finished snapshots. (It once waited for the copy.)
  auto listed = std::async(std::launch::async, [&] { return m->snapshot_list("q"); });
  const bool listed_now = listed.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  EXPECT_TRUE(listed_now) << "the snapshot listing waited for the snapshot";
  std::atomic<bool> mounted{false};
  std::thread mount([&] {
    EXPECT_TRUE(m->mount("q", "c1").is_ok());
    mounted = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(mounted) << "a Mount went ahead during the snapshot";
  {
    std::lock_guard lock(quiescer_.gate_mu);
    quiescer_.hold = false;
  }
  quiescer_.gate_cv.notify_all();
  snap.join();
  mount.join();
  EXPECT_TRUE(mounted);
  auto during = listed.get();
  ASSERT_TRUE(during.is_ok()) << during.status().message();
  EXPECT_TRUE(during->empty());
  EXPECT_EQ(m->snapshot_list("q")->size(), 1u);
}

TEST_F(VolumeManagerTest, QuiescePausesAndAlwaysUnpauses) {
  auto m = open();
  ASSERT_TRUE(m->create("q", {{"quiesce", "pause"}}).is_ok());
  ASSERT_TRUE(m->snapshot_create("q", "one").is_ok());
  EXPECT_EQ(quiescer_.calls, (std::vector<std::string>{"pause q", "unpause 2"}));
  // The snapshot fails (name taken): containers are unpaused all the same.
  quiescer_.calls.clear();
  EXPECT_EQ(m->snapshot_create("q", "one").status().code(), Code::kAlreadyExists);
  EXPECT_EQ(quiescer_.calls, (std::vector<std::string>{"pause q", "unpause 2"}));
  // Docker unreachable: no snapshot is taken without the pause it asked for.
  quiescer_.calls.clear();
  quiescer_.fail_pause = true;
  EXPECT_EQ(m->snapshot_create("q", "two").status().code(), Code::kUnavailable);
  EXPECT_EQ(m->snapshot_list("q")->size(), 1u);
  // A volume without quiesce never talks to Docker.
  quiescer_.calls.clear();
  ASSERT_TRUE(m->create("plain", {}).is_ok());
  ASSERT_TRUE(m->snapshot_create("plain", "s").is_ok());
  EXPECT_TRUE(quiescer_.calls.empty());
  EXPECT_EQ(m->create("bad", {{"quiesce", "freeze"}}).status().code(), Code::kInvalidArgument);
}

TEST_F(VolumeManagerTest, InterruptedSnapshotAndRollbackLeftoversRemovedAtOpen) {
  {
    auto m = open();
    ASSERT_TRUE(m->create("v", {}).is_ok());
    ASSERT_TRUE(m->snapshot_create("v", "s").is_ok());
  }
  fs::create_directories(vol_dir("v") + "/snapshots/.tmp-half-1/data");
  fs::create_directories(vol_dir("v") + "/.rollback-old-1/x");
  auto m = open();
  EXPECT_FALSE(fs::exists(vol_dir("v") + "/snapshots/.tmp-half-1"));
  EXPECT_FALSE(fs::exists(vol_dir("v") + "/.rollback-old-1"));
  auto snaps = m->snapshot_list("v");
  ASSERT_TRUE(snaps.is_ok());
  ASSERT_EQ(snaps->size(), 1u);
  EXPECT_EQ((*snaps)[0].name, "s");
}

TEST_F(VolumeManagerTest, RelativeStateRootRefused) {
  VolumeManager::Options o;
  o.state_root = "relative/path";
  EXPECT_EQ(VolumeManager::open(o, backend_, log_).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace stowage
