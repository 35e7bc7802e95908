// SnapshotStore on real filesystems: ext4 (copies), XFS and btrfs (reflinks),
// each in a loop-mounted image. A snapshot, a rollback and a clone must each
// reproduce the tree exactly; on XFS and btrfs the snapshot must share extents
// with the volume instead of copying them.
#include "stowage/snapshot_store.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include <gtest/gtest.h>

#include "snapshot/tree_util.h"

namespace stowage {
namespace {

namespace fs = std::filesystem;

class SnapshotStoreFs : public ::testing::TestWithParam<std::string> {};

TEST_P(SnapshotStoreFs, SnapshotRollbackCloneReproduceTheTree) {
  test::LoopFs lfs(GetParam(), 320);
  ASSERT_EQ(lfs.error(), "");
  std::string vol = lfs.mount_point() + "/volumes/v";
  fs::create_directories(vol);
  std::string data = vol + "/_data";
  test::build_random_tree(data, {.seed = 11, .with_owners = true, .large_file_mb = 8});
  auto before = test::describe_tree(data);

  auto engine = CopyEngine::create();
  SnapshotStore store(*engine);
  auto snap = store.create(vol, data, "s1", 1234);
  ASSERT_TRUE(snap.is_ok()) << snap.status().message();
  EXPECT_EQ(test::diff_trees(before, test::describe_tree(vol + "/snapshots/s1/data")), "");
  bool reflinks = GetParam() != "ext4";
  if (reflinks) {
    EXPECT_EQ(snap->strategy, "reflink");
    // Find the large file and check that the snapshot shares its extents.
    bool checked = false;
    for (auto& e : fs::recursive_directory_iterator(vol + "/snapshots/s1/data")) {
      if (e.is_regular_file() && !e.is_symlink() && e.file_size() >= (8u << 20)) {
        EXPECT_TRUE(test::all_extents_shared(e.path())) << e.path();
        checked = true;
      }
    }
    EXPECT_TRUE(checked);
  } else {
    EXPECT_NE(snap->strategy, "reflink");
  }

  // Change the volume, then roll back: the tree is exactly as snapshotted.
  fs::remove_all(data);
  test::build_random_tree(data, {.seed = 99, .with_owners = false, .large_file_mb = 1});
  ASSERT_NE(test::diff_trees(before, test::describe_tree(data)), "");
  ASSERT_TRUE(store.rollback(vol, data, "s1").is_ok());
  EXPECT_EQ(test::diff_trees(before, test::describe_tree(data)), "");

  auto clone = store.clone(vol, "s1", lfs.mount_point() + "/clone");
  ASSERT_TRUE(clone.is_ok()) << clone.status().message();
  EXPECT_EQ(test::diff_trees(before, test::describe_tree(lfs.mount_point() + "/clone")), "");

  auto listed = store.list(vol);
  ASSERT_TRUE(listed.is_ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].created_unix_ns, 1234);
  ASSERT_TRUE(store.remove(vol, "s1").is_ok());
  EXPECT_FALSE(fs::exists(vol + "/snapshots/s1"));
}

TEST(SnapshotStoreSpace, FullFilesystemLeavesNoPartialSnapshot) {
  test::LoopFs lfs("ext4", 8);
  ASSERT_EQ(lfs.error(), "");
  std::string vol = lfs.mount_point() + "/v";
  fs::create_directories(vol + "/_data");
  // Fill 60% of the free space: the volume fits, a copy of it does not.
  struct statvfs sv {};
  ASSERT_EQ(::statvfs(vol.c_str(), &sv), 0);
  size_t big = static_cast<size_t>(sv.f_bavail * sv.f_frsize * 6 / 10);
  test::write_file(vol + "/_data/big", std::string(big, 'x'));
  auto engine = CopyEngine::create();
  SnapshotStore store(*engine);
  auto snap = store.create(vol, vol + "/_data", "s", 1);
  ASSERT_FALSE(snap.is_ok());
  EXPECT_EQ(snap.status().code(), Code::kResourceExhausted) << snap.status().message();
  EXPECT_TRUE(store.list(vol)->empty());
  for (auto& e : fs::directory_iterator(vol + "/snapshots")) ADD_FAILURE() << "left behind: " << e.path();
  // And a failed rollback leaves the data as it was.
  EXPECT_EQ(store.rollback(vol, vol + "/_data", "s").code(), Code::kNotFound);
  EXPECT_EQ(test::read_file(vol + "/_data/big").size(), big);
}

// Thin provisioning: the volume's filesystem lives in a sparse image on a pool
// that fills up (DESIGN §1's XFS pool is such an image). The copy lands in the
// page cache and succeeds; only writing it back fails, which the flush before
// the commit point reports. A rollback must then fail and keep the volume's
// data, not swap in a copy that never reached the disk and delete the old
// one; a snapshot must fail and leave nothing.
TEST(SnapshotStoreSpace, CopyThatCannotBeWrittenBackFailsAndChangesNothing) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounts a tmpfs and a loop image: needs root";
  test::ThinFs lfs(48, 128);
  ASSERT_EQ(lfs.error(), "");
  std::string vol = lfs.mount_point() + "/v";
  std::string data = vol + "/_data";
  fs::create_directories(data);
  std::string big(8 << 20, '\0');
  std::mt19937_64 rng(5);
  for (auto& c : big) c = static_cast<char>(rng());
  test::write_file(data + "/big", big);
  test::write_file(data + "/f", "snapshotted");
  auto engine = CopyEngine::create();
  SnapshotStore store(*engine);
  ASSERT_TRUE(store.create(vol, data, "s0", 1).is_ok());
  test::write_file(data + "/f", "newer");
  ::sync();
  lfs.fill_pool();

  Status rolled = store.rollback(vol, data, "s0");
  // Writeback reports ENOSPC or EIO, as the kernel maps the device's error.
  EXPECT_TRUE(rolled.code() == Code::kResourceExhausted || rolled.code() == Code::kIOError)
      << "rolled back to a copy that is not on the disk: " << rolled.to_string();
  EXPECT_NE(rolled.message().find("write the copy to the disk"), std::string::npos) << rolled.message();
  EXPECT_EQ(test::read_file(data + "/f"), "newer");
  auto snap = store.create(vol, data, "s1", 2);
  EXPECT_TRUE(snap.status().code() == Code::kResourceExhausted || snap.status().code() == Code::kIOError)
      << "reported a snapshot that is not on the disk: " << snap.status().to_string();
  auto listed = store.list(vol);
  ASSERT_TRUE(listed.is_ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name, "s0");
  for (const std::string& dir : {vol, vol + "/snapshots"}) {
    for (auto& e : fs::directory_iterator(dir)) {
      std::string n = e.path().filename();
      EXPECT_FALSE(n.starts_with(".tmp-") || n.starts_with(".rollback-old-")) << "left behind: " << e.path();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Filesystems, SnapshotStoreFs, ::testing::Values("ext4", "xfs", "btrfs"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace stowage
