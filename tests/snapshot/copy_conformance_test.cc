// The copy-engine conformance suite: every strategy on every filesystem it can
// run on must produce an identical tree (data, holes, modes, owners, times,
// symlinks, hardlinks, xattrs, odd names) and fail cleanly. The filesystems are
// real: ext4 (no reflink), XFS and btrfs (reflink) in loop-mounted images the
// suite creates and unmounts itself.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>

#include "snapshot/tree_util.h"
#include "stowage/copy_engine.h"

namespace stowage {
namespace {

using test::LoopFs;

// The images live for the whole binary: mkfs + mount per test would dominate
// the run time. The environment unmounts them even when tests fail.
class Filesystems : public testing::Environment {
 public:
  void TearDown() override { fs_.clear(); }
  LoopFs& get(const std::string& type) {
    auto& slot = fs_[type];
    // XFS needs >= 300 MB; the images are sparse, so this costs little disk.
    if (!slot) slot = std::make_unique<LoopFs>(type, type == "tiny-ext4" ? 8 : 320);
    return *slot;
  }

 private:
  std::map<std::string, std::unique_ptr<LoopFs>> fs_;
};

Filesystems* g_fs = nullptr;  // owned by gtest after AddGlobalTestEnvironment

struct Case {
  std::string fs;
  CopyStrategy strategy;
};

std::string case_name(const testing::TestParamInfo<Case>& info) {
  return info.param.fs + "_" + std::string(strategy_name(info.param.strategy));
}

class CopyConformance : public testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    LoopFs& fs = g_fs->get(GetParam().fs == "tiny-ext4" ? "ext4" : GetParam().fs);
    ASSERT_EQ(fs.error(), "") << "loop-mounted filesystems are required for this suite";
    std::string name = testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');
    base_ = fs.mount_point() + "/" + name;
    std::filesystem::remove_all(base_);
    ASSERT_TRUE(std::filesystem::create_directory(base_));
    engine_ = CopyEngine::create({{}, [this](std::string_view l) { log_.emplace_back(l); }});
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(base_, ec);
  }
  CopyOptions options() const {
    CopyOptions o;
    o.strategy = GetParam().strategy;
    return o;
  }
  bool reflink_fs() const { return GetParam().fs != "ext4"; }

  std::string base_;
  std::unique_ptr<CopyEngine> engine_;
  std::vector<std::string> log_;
};

TEST_P(CopyConformance, RandomTreeIsReproducedExactly) {
  const std::string src = base_ + "/src", dst = base_ + "/dst";
  test::TreeCounts counts = test::build_random_tree(src, {.seed = 7, .with_owners = true, .large_file_mb = 24});
  auto before = test::describe_tree(src);
  auto stats = engine_->copy_tree(src, dst, options());
  ASSERT_TRUE(stats.is_ok()) << stats.status().to_string();
  EXPECT_EQ(test::diff_trees(before, test::describe_tree(dst)), "");
  EXPECT_EQ(test::diff_trees(before, test::describe_tree(src)), "") << "the source changed";
  // The sparse file really has holes in the copy, not just the same map.
  EXPECT_TRUE(test::describe_tree(dst)["sparse0"].has_holes);

  EXPECT_EQ(stats->files, counts.files);
  EXPECT_EQ(stats->directories, counts.dirs);
  EXPECT_EQ(stats->symlinks, counts.symlinks);
  EXPECT_EQ(stats->hardlinks, counts.hardlinks);
  EXPECT_EQ(stats->specials, counts.specials);
  EXPECT_EQ(stats->bytes, counts.bytes);
  EXPECT_EQ(stats->reflinked_files + stats->uring_files + stats->portable_files, counts.files);
  EXPECT_TRUE(log_.empty()) << log_.front();

  const uint64_t non_empty = counts.files - counts.empty_files;
  switch (GetParam().strategy) {
    case CopyStrategy::kReflink:
      EXPECT_EQ(stats->strategy, CopyStrategy::kReflink);
      EXPECT_EQ(stats->reflinked_files, counts.files);
      EXPECT_EQ(stats->bytes_copied, 0u);
      EXPECT_TRUE(test::all_extents_shared(dst + "/large.bin")) << "FIEMAP shows unshared extents";
      break;
    case CopyStrategy::kAuto:
      if (reflink_fs()) {
        EXPECT_EQ(stats->strategy, CopyStrategy::kReflink);
        EXPECT_EQ(stats->reflinked_files, non_empty);  // empty files have nothing to clone
        EXPECT_EQ(stats->bytes_copied, 0u);
        EXPECT_TRUE(test::all_extents_shared(dst + "/large.bin"));
      } else {
        // Small files on the ring; large and sparse ones by copy_file_range.
        EXPECT_EQ(stats->strategy, CopyStrategy::kIoUring);
        EXPECT_EQ(stats->reflinked_files, 0u);
        EXPECT_GT(stats->uring_files, counts.files / 2);
        EXPECT_GE(stats->portable_files, 5u) << "the 24 MiB file and 4 sparse files";
        EXPECT_FALSE(test::all_extents_shared(dst + "/large.bin"));
      }
      break;
    case CopyStrategy::kIoUring:
      EXPECT_EQ(stats->strategy, CopyStrategy::kIoUring);
      EXPECT_EQ(stats->uring_files, counts.files);
      EXPECT_GT(stats->bytes_copied, 24u << 20);
      EXPECT_LT(stats->bytes_copied, stats->bytes) << "holes were copied as data";
      EXPECT_FALSE(test::all_extents_shared(dst + "/large.bin"));
      break;
    case CopyStrategy::kPortable:
      EXPECT_EQ(stats->strategy, CopyStrategy::kPortable);
      EXPECT_EQ(stats->portable_files, counts.files);
      EXPECT_GT(stats->bytes_copied, 24u << 20);
      EXPECT_LT(stats->bytes_copied, stats->bytes) << "holes were copied as data";
      break;
  }
}

TEST_P(CopyConformance, SingleFileCopyAndRootMetadata) {
  const std::string src = base_ + "/one", dst = base_ + "/one.copy";
  test::write_file(src, std::string(100000, 'x'));
  ASSERT_EQ(::chmod(src.c_str(), 04751), 0);
  ASSERT_EQ(::setxattr(src.c_str(), "user.k", "v", 1, 0), 0);
  auto stats = engine_->copy_file(src, dst, options());
  ASSERT_TRUE(stats.is_ok()) << stats.status().to_string();
  EXPECT_EQ(stats->files, 1u);
  EXPECT_EQ(test::read_file(dst), std::string(100000, 'x'));
  auto want = test::describe_tree(src)[""];
  auto got = test::describe_tree(dst)[""];
  EXPECT_EQ(want, got);

  auto not_regular = engine_->copy_file(base_, base_ + "/dircopy", options());
  EXPECT_EQ(not_regular.status().code(), Code::kInvalidArgument);
}

TEST_P(CopyConformance, ExistingDestinationIsRefusedAndUntouched) {
  const std::string src = base_ + "/src", dst = base_ + "/dst";
  test::build_random_tree(src, {.seed = 3, .with_owners = false, .large_file_mb = 0});
  ASSERT_EQ(::mkdir(dst.c_str(), 0711), 0);
  test::write_file(dst + "/keep", "mine");
  auto r = engine_->copy_tree(src, dst, options());
  EXPECT_EQ(r.status().code(), Code::kAlreadyExists);
  EXPECT_EQ(test::read_file(dst + "/keep"), "mine");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dst), {}), 1);

  // A dangling symlink at the destination exists too.
  ASSERT_EQ(::symlink("nowhere", (base_ + "/dangling").c_str()), 0);
  EXPECT_EQ(engine_->copy_tree(src, base_ + "/dangling", options()).status().code(), Code::kAlreadyExists);
  EXPECT_EQ(engine_->copy_file(src + "/second link to file0", dst + "/keep", options()).status().code(), Code::kAlreadyExists);
}

TEST_P(CopyConformance, MissingSourceIsNotFoundAndCreatesNothing) {
  auto r = engine_->copy_tree(base_ + "/nope", base_ + "/dst", options());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(base_ + "/dst"));
  auto r2 = engine_->copy_tree(base_, base_ + "/no/such/parent/dst", options());
  EXPECT_EQ(r2.status().code(), Code::kNotFound);
}

TEST_P(CopyConformance, CopyIntoItselfIsRefused) {
  ASSERT_EQ(::mkdir((base_ + "/tree").c_str(), 0755), 0);
  test::write_file(base_ + "/tree/f", "x");
  auto r = engine_->copy_tree(base_ + "/tree", base_ + "/tree/inner", options());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(base_ + "/tree/inner"));
}

// Copying into a filesystem that is too small: a clean kResourceExhausted and
// no partial tree left behind. Reflink cannot cross filesystems, so only the
// data-copying strategies (and auto, which must fall back) are run.
TEST_P(CopyConformance, NoSpaceFailsCleanly) {
  if (GetParam().strategy == CopyStrategy::kReflink) {
    // Forced reflink across filesystems must refuse rather than copy.
    LoopFs& tiny = g_fs->get("tiny-ext4");
    ASSERT_EQ(tiny.error(), "");
    test::write_file(base_ + "/f", "data");
    auto r = engine_->copy_tree(base_ + "/f", tiny.mount_point() + "/f", options());
    EXPECT_EQ(r.status().code(), Code::kUnimplemented) << r.status().to_string();
    EXPECT_FALSE(std::filesystem::exists(tiny.mount_point() + "/f"));
    return;
  }
  LoopFs& tiny = g_fs->get("tiny-ext4");
  ASSERT_EQ(tiny.error(), "");
  const std::string src = base_ + "/src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  // Many small files (the batched path) and then one large file.
  for (int i = 0; i < 150; ++i) test::write_file(src + "/small" + std::to_string(i), std::string(60000, 'a' + i % 26));
  ASSERT_EQ(::mkdir((src + "/big").c_str(), 0755), 0);
  test::write_file(src + "/big/large", std::string(12 << 20, 'z'));
  for (const std::string sub : {"", "/big"}) {
    const std::string dst = tiny.mount_point() + "/dst";
    auto r = engine_->copy_tree(src + sub, dst, options());
    EXPECT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().to_string();
    EXPECT_FALSE(std::filesystem::exists(dst)) << "a partial copy was left behind";
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> v;
  for (std::string fs : {"ext4", "xfs", "btrfs"}) {
    for (CopyStrategy s : {CopyStrategy::kAuto, CopyStrategy::kReflink, CopyStrategy::kIoUring, CopyStrategy::kPortable}) {
      if (fs == "ext4" && s == CopyStrategy::kReflink) continue;  // see ForcedReflinkOnExt4
      v.push_back({fs, s});
    }
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(AllStrategies, CopyConformance, testing::ValuesIn(all_cases()), case_name);

TEST(CopyEngineExt4, ForcedReflinkIsUnimplementedAndLeavesNothing) {
  LoopFs& fs = g_fs->get("ext4");
  ASSERT_EQ(fs.error(), "");
  const std::string src = fs.mount_point() + "/reflink-src", dst = fs.mount_point() + "/reflink-dst";
  test::build_random_tree(src, {.seed = 5, .with_owners = false, .large_file_mb = 0});
  auto engine = CopyEngine::create();
  CopyOptions o;
  o.strategy = CopyStrategy::kReflink;
  auto r = engine->copy_tree(src, dst, o);
  EXPECT_EQ(r.status().code(), Code::kUnimplemented) << r.status().to_string();
  EXPECT_FALSE(std::filesystem::exists(dst));
  std::filesystem::remove_all(src);
}

}  // namespace
}  // namespace stowage

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  stowage::g_fs = new stowage::Filesystems();
  testing::AddGlobalTestEnvironment(stowage::g_fs);
  return RUN_ALL_TESTS();
}
