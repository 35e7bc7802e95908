// Runs the real stowctl binary end to end on a file:// repository: repo init,
// backup create, backup ls --json, restore, check --read-data, forget, prune.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "backup/test_data.h"
#include "backup/tree_fixture.h"
#include "snapshot/tree_util.h"
#include "support/test_support.h"

namespace stowage {
namespace {

using nlohmann::json;
using test::TempDir;

class StowctlTest : public ::testing::Test {
 protected:
  // Runs stowctl with STOWAGE_REPOSITORY set; returns the exit code, stdout in *out.
  int stowctl(const std::string& args, std::string* out = nullptr, std::string* err = nullptr) {
    const std::string o = dir_ / "out.txt", e = dir_ / "err.txt";
    const std::string cmd = "STOWAGE_REPOSITORY='file://" + dir_.path() + "/repo' '" + test::bin_dir() +
                            "/stowctl' " + args + " >'" + o + "' 2>'" + e + "'";
    const std::string wrapped = "( " + (cwd_.empty() ? "" : "cd '" + cwd_ + "' && ") + cmd + " )";
    const int status = test::run_shell(wrapped);
    if (out) *out = test::read_file(o);
    if (err) *err = test::read_file(e);
    return status;
  }
  json stowctl_json(const std::string& args) {
    std::string out, err;
    const int rc = stowctl(args + " --json", &out, &err);
    EXPECT_EQ(rc, 0) << args << ": " << err;
    json j = json::parse(out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << out;
    return j;
  }
  // dir/src holding one file.
  std::string small_source() {
    const std::string src = dir_ / "src";
    EXPECT_EQ(::mkdir(src.c_str(), 0755), 0);
    test::write_file(src + "/f", "data");
    return src;
  }
  TempDir dir_{"stowage-cli"};
  std::string cwd_;  // where stowctl runs; "" = the test's own directory
};

TEST_F(StowctlTest, InitBackupLsRestoreCheckForgetPrune) {
  const std::string src = dir_ / "src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  // The first snapshot shares nothing with the later ones, so once it is
  // forgotten whole packs become unreferenced.
  test::write_file(src + "/replaced", test::random_bytes(2u << 20, 1));

  std::string err;
  EXPECT_NE(stowctl("backup ls", nullptr, &err), 0);  // no repository yet
  EXPECT_NE(err.find("stowctl:"), std::string::npos);
  ASSERT_EQ(stowctl("repo init"), 0);
  EXPECT_NE(stowctl("repo init", nullptr, &err), 0);  // never overwritten
  EXPECT_NE(err.find("AlreadyExists"), std::string::npos) << err;

  const json first = stowctl_json("backup create '" + src + "' --name db --tag nightly");
  EXPECT_EQ(first["name"], "db");
  EXPECT_EQ(first["stats"]["bytes_read"].get<uint64_t>(), 2u << 20);
  test::make_tree(src, {.seed = 9, .dirs = 2, .files_per_dir = 2});
  test::write_file(src + "/replaced", test::random_bytes(2u << 20, 2));
  const json second = stowctl_json("backup create '" + src + "' --name db");
  EXPECT_EQ(second["parent"], first["snapshot"]);
  const json third = stowctl_json("backup create '" + src + "' --name db");
  EXPECT_EQ(third["parent"], second["snapshot"]);
  EXPECT_EQ(third["stats"]["bytes_read"].get<uint64_t>(), 0u);  // nothing changed, nothing read

  const json ls = stowctl_json("backup ls");
  ASSERT_EQ(ls.size(), 3u);
  EXPECT_EQ(ls[0]["id"], first["snapshot"]);
  EXPECT_EQ(ls[0]["tags"], json::array({"nightly"}));
  EXPECT_EQ(ls[2]["id"], third["snapshot"]);
  EXPECT_EQ(ls[2]["source_path"], src);

  const std::string target = dir_ / "restored";
  const json restored = stowctl_json("restore latest --to '" + target + "'");
  EXPECT_EQ(restored["snapshot"], third["snapshot"]);
  EXPECT_TRUE(test::diff_trees(src, target).empty()) << ::testing::PrintToString(test::diff_trees(src, target));
  // A non-empty target is refused with a non-zero exit and a message.
  EXPECT_NE(stowctl("restore latest --to '" + target + "'", nullptr, &err), 0);
  EXPECT_NE(err.find("not empty"), std::string::npos) << err;
  // An id prefix works too.
  const std::string prefix = first["snapshot"].get<std::string>().substr(0, 10);
  EXPECT_EQ(stowctl("restore " + prefix + " --to '" + dir_.path() + "/first'"), 0);

  json check = stowctl_json("check --read-data");
  EXPECT_EQ(check["ok"], true);
  EXPECT_GT(check["blobs_read"].get<uint64_t>(), 0u);

  EXPECT_NE(stowctl("forget"), 0);  // no policy: refuses to forget everything
  const json forget = stowctl_json("forget --keep-last 2");
  ASSERT_EQ(forget["remove"].size(), 1u);
  EXPECT_EQ(forget["remove"][0]["id"], first["snapshot"]);

  // Grace 0: the first run marks, the second deletes.
  const json mark = stowctl_json("prune --grace 0s");
  EXPECT_GT(mark["packs_marked"].get<uint64_t>(), 0u);
  EXPECT_EQ(mark["packs_deleted"], 0);
  const json sweep = stowctl_json("prune --grace 0s");
  EXPECT_EQ(sweep["packs_deleted"], mark["packs_marked"]);

  check = stowctl_json("check --read-data");
  EXPECT_EQ(check["ok"], true) << check.dump();
  EXPECT_EQ(check["snapshots"], 2);
  const std::string again = dir_ / "again";
  EXPECT_EQ(stowctl("restore latest --to '" + again + "'"), 0);
  EXPECT_TRUE(test::diff_trees(src, again).empty());
}

// Keep counts must be positive: --keep-last -1 or 0 used to be taken as "no
// rule" and answered with "no keep rule given".
TEST_F(StowctlTest, KeepCountsBelowOneAreRefusedByName) {
  ASSERT_EQ(stowctl("repo init"), 0);
  std::string err;
  for (const char* bad : {"--keep-last -1", "--keep-last 0", "--keep-daily -3", "--keep-weekly 2.5"}) {
    EXPECT_NE(stowctl(std::string("forget ") + bad, nullptr, &err), 0) << bad;
    EXPECT_EQ(err.find("no keep rule"), std::string::npos) << bad << ": " << err;
    EXPECT_NE(err.find("--keep-"), std::string::npos) << bad << ": " << err;
    EXPECT_NE(err.find("must be a whole decimal number of at least 1"), std::string::npos) << bad << ": " << err;
  }
  // A leading zero is no octal prefix: --keep-last 010 keeps ten.
  const std::string src = small_source();
  for (int i = 0; i < 11; ++i) ASSERT_EQ(stowctl("backup create '" + src + "' --tag n" + std::to_string(i)), 0);
  EXPECT_EQ(stowctl_json("forget --keep-last 010")["remove"].size(), 1u);
}

// A tree deeper than the usual soft limit of 1024 open files needs a
// descriptor per level to back up and restore; stowctl raises its soft limit
// to the hard one instead of failing with "Too many open files".
TEST_F(StowctlTest, ATreeDeeperThanTheSoftFileLimitRoundTrips) {
  // stowctl can only raise the soft limit up to the hard one: the tree is as
  // deep as a quarter of that allows, and the soft limit half the depth.
  rlimit lim{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &lim), 0);
  const int depth = static_cast<int>(std::min<rlim_t>(600, lim.rlim_max / 4));
  const int soft = depth / 2;
  ASSERT_GE(soft, 16) << "hard open-file limit " << lim.rlim_max << " is too low for this test";
  const std::string src = dir_ / "src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  int fd = ::open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  for (int level = 0; level < depth; ++level) {  // one-letter names: 2 bytes of path a level
    ASSERT_EQ(::mkdirat(fd, "d", 0755), 0);
    const int next = ::openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ::close(fd);
    ASSERT_GE(next, 0);
    fd = next;
  }
  const int f = ::openat(fd, "leaf", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(f, 0);
  ASSERT_EQ(::write(f, "deep", 4), 4);
  ::close(f);
  ::close(fd);
  ASSERT_EQ(stowctl("repo init"), 0);
  // Only the soft limit is lowered (below the depth): stowctl may raise it
  // back up to the hard one.
  auto low_limit_stowctl = [&](const std::string& args, std::string* out) {
    return test::run_shell("STOWAGE_REPOSITORY='file://" + dir_.path() + "/repo' sh -c 'ulimit -Sn " +
                               std::to_string(soft) + " && exec \"$0\" \"$@\"' '" + test::bin_dir() + "/stowctl' " +
                               args,
                           out);
  };
  std::string out;
  ASSERT_EQ(low_limit_stowctl("backup create '" + src + "' --name deep", &out), 0) << out;
  const std::string target = dir_ / "restored";
  ASSERT_EQ(low_limit_stowctl("restore latest --to '" + target + "'", &out), 0) << out;
  EXPECT_TRUE(test::diff_trees(src, target).empty()) << ::testing::PrintToString(test::diff_trees(src, target));
}

// A tag is a word a later 'forget --keep-tag' can name and 'backup ls' can
// list (comma-separated): empty ones, commas and control characters are
// refused before anything is read.
TEST_F(StowctlTest, TagsThatCannotBeListedOrNamedAreRefused) {
  const std::string src = small_source();
  ASSERT_EQ(stowctl("repo init"), 0);
  std::string err;
  for (const std::string bad : {"''", "'a,b'", "\"$(printf 'tab\\there')\""}) {
    EXPECT_NE(stowctl("backup create '" + src + "' --tag " + bad, nullptr, &err), 0) << bad;
    EXPECT_NE(err.find("--tag: a tag cannot"), std::string::npos) << bad << ": " << err;
  }
  EXPECT_EQ(stowctl_json("backup ls").size(), 0u);
  ASSERT_EQ(stowctl("backup create '" + src + "' --tag nightly --tag pre-upgrade.2"), 0);
  const json ls = stowctl_json("backup ls");
  ASSERT_EQ(ls.size(), 1u);
  EXPECT_EQ(ls[0]["tags"], json::array({"nightly", "pre-upgrade.2"}));
}

// --compression-level outside zstd's range used to be taken silently.
TEST_F(StowctlTest, CompressionLevelOutsideZstdsRangeIsRefused) {
  const std::string src = small_source();
  ASSERT_EQ(stowctl("repo init"), 0);
  std::string err;
  EXPECT_NE(stowctl("backup create '" + src + "' --compression-level 99", nullptr, &err), 0);
  EXPECT_NE(err.find("--compression-level"), std::string::npos) << err;
  EXPECT_EQ(stowctl_json("backup ls").size(), 0u);
  EXPECT_EQ(stowctl_json("backup create '" + src + "' --compression-level -5")["stats"]["files"], 1);
}

// backup create --json names the new id "id", as backup ls does
// ("snapshot" stays for older scripts).
TEST_F(StowctlTest, CreateJsonNamesTheIdAsLsDoes) {
  const std::string src = small_source();
  ASSERT_EQ(stowctl("repo init"), 0);
  const json created = stowctl_json("backup create '" + src + "'");
  ASSERT_TRUE(created.contains("id")) << created.dump();
  EXPECT_EQ(created["id"], created["snapshot"]);
  EXPECT_EQ(stowctl_json("backup ls")[0]["id"], created["id"]);
}

// A manifest whose bytes do not match its name: ls warns naming it and lists
// the rest, restore of another snapshot works, restore of it fails naming
// it, prune refuses, `forget <id>` removes it.
TEST_F(StowctlTest, AnUnreadableManifestIsNamedAndCanBeForgotten) {
  const std::string src = small_source();
  ASSERT_EQ(stowctl("repo init"), 0);
  const json good = stowctl_json("backup create '" + src + "' --name db");
  const std::string bad(64, 'e');
  test::write_file(dir_.path() + "/repo/snapshots/" + bad, R"({"version":1})");

  std::string out, err;
  ASSERT_EQ(stowctl("backup ls --json", &out, &err), 0) << err;
  const json ls = json::parse(out);
  ASSERT_EQ(ls.size(), 1u);
  EXPECT_EQ(ls[0]["id"], good["snapshot"]);
  EXPECT_NE(err.find("snapshots/" + bad), std::string::npos) << err;
  EXPECT_NE(err.find("stowctl forget " + bad), std::string::npos) << err;
  // A backup passes over it when looking for its parent, and says so.
  ASSERT_EQ(stowctl("backup create '" + src + "' --name db --json", &out, &err), 0) << err;
  const json next = json::parse(out);
  EXPECT_EQ(next["parent"], good["snapshot"]);
  EXPECT_NE(err.find("snapshots/" + bad), std::string::npos) << err;
  EXPECT_EQ(stowctl_json("restore latest --to '" + dir_.path() + "/latest'")["snapshot"], next["snapshot"]);
  EXPECT_EQ(stowctl("restore " + good["snapshot"].get<std::string>().substr(0, 8) + " --to '" + dir_.path() + "/r'"), 0);
  EXPECT_NE(stowctl("restore eee --to '" + dir_.path() + "/bad'", nullptr, &err), 0);
  EXPECT_NE(err.find("snapshots/" + bad), std::string::npos) << err;
  EXPECT_NE(stowctl("prune", nullptr, &err), 0);
  EXPECT_NE(err.find("stowctl forget " + bad), std::string::npos) << err;
  EXPECT_NE(stowctl("check", &out), 0);
  EXPECT_NE(out.find("snapshots/" + bad), std::string::npos) << out;

  const json forgot = stowctl_json("forget eee");
  ASSERT_EQ(forgot["remove"].size(), 1u);
  EXPECT_EQ(forgot["remove"][0]["id"], bad);
  EXPECT_EQ(forgot["remove"][0]["unreadable"], true);
  EXPECT_EQ(stowctl_json("check")["ok"], true);
  EXPECT_EQ(stowctl_json("prune")["packs_deleted"], 0);
}

// prune --dry-run says what it would do, in those words, and does none of it.
TEST_F(StowctlTest, PruneDryRunChangesNothing) {
  const std::string src = small_source();
  ASSERT_EQ(stowctl("repo init"), 0);
  const json made = stowctl_json("backup create '" + src + "'");
  ASSERT_EQ(stowctl("forget " + made["id"].get<std::string>()), 0);
  std::string out;
  ASSERT_EQ(stowctl("prune --dry-run", &out), 0) << out;
  EXPECT_NE(out.find("dry run, nothing changed: would delete 0 packs"), std::string::npos) << out;
  EXPECT_NE(out.find("would mark "), std::string::npos) << out;
  const json dry = stowctl_json("prune --dry-run");
  ASSERT_GT(dry["packs_marked"].get<int>(), 0) << dry.dump();
  const json real = stowctl_json("prune");
  EXPECT_EQ(real["packs_marked"], dry["packs_marked"]) << "the dry runs marked nothing";
  EXPECT_EQ(real["marks_pending"], 0);
}

// $STOWAGE_REPOSITORY (set by stowctl() to dir/repo) is only the fallback:
// an explicit --repo names the repository every command works on. It used to
// be overwritten by the variable, so forget deleted in the wrong repository.
TEST_F(StowctlTest, ExplicitRepoWinsOverEnvironment) {
  const std::string src = small_source();
  const std::string other = "--repo 'file://" + dir_.path() + "/other'";
  ASSERT_EQ(stowctl("repo init"), 0);
  std::string err;
  ASSERT_EQ(stowctl("repo init " + other, nullptr, &err), 0) << err;
  EXPECT_EQ(stowctl_json("backup create '" + src + "' --name env")["name"], "env");
  EXPECT_EQ(stowctl_json("backup create '" + src + "' --name env")["name"], "env");
  const json mine = stowctl_json("backup create '" + src + "' --name explicit " + other);
  const json listed = stowctl_json("backup ls " + other);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["id"], mine["snapshot"]);
  EXPECT_EQ(stowctl_json("backup ls").size(), 2u);

  // forget --keep-last 1 on the explicit repository leaves the other alone.
  EXPECT_EQ(stowctl_json("forget --keep-last 1 " + other)["remove"].size(), 0u);
  EXPECT_EQ(stowctl_json("backup ls").size(), 2u);
  const std::string target = dir_ / "restored";
  EXPECT_EQ(stowctl_json("restore latest --to '" + target + "' " + other)["snapshot"], mine["snapshot"]);
  EXPECT_EQ(stowctl_json("check " + other)["snapshots"], 1);
  EXPECT_EQ(stowctl_json("prune " + other)["packs_deleted"], 0);
}

// --repo also takes a plain path, relative to where stowctl runs, as restic
// does. Only 'repo init' creates a directory: a mistyped path given to any
// other command is refused and leaves nothing behind.
TEST_F(StowctlTest, APlainPathIsALocalRepositoryAndOnlyInitCreatesIt) {
  const std::string src = small_source();
  cwd_ = dir_.path();
  std::string err;
  EXPECT_NE(stowctl("backup ls --repo typo", nullptr, &err), 0);
  EXPECT_NE(err.find("no repository at file://" + dir_.path() + "/typo"), std::string::npos) << err;
  EXPECT_NE(stowctl("backup create '" + src + "' --repo ./typo", nullptr, &err), 0);
  EXPECT_NE(stowctl("check --repo typo/", nullptr, &err), 0);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "typo"));

  EXPECT_EQ(stowctl_json("repo init --repo plain")["repository"], "file://" + dir_.path() + "/plain");
  const json made = stowctl_json("backup create '" + src + "' --repo '" + dir_.path() + "/plain'");
  const json listed = stowctl_json("backup ls --repo ./sub/../plain");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["id"], made["snapshot"]);
  // Something shaped like a URL stays one, refused if it is not a known kind.
  EXPECT_NE(stowctl("backup ls --repo s3:plain", nullptr, &err), 0);
  EXPECT_NE(err.find("unsupported store URL"), std::string::npos) << err;
}

// A bare word for --to (or for backup create) means a volume of stowaged;
// when that fails, the error says how it was read and how to name a directory.
TEST_F(StowctlTest, ABareNameTakenForAVolumeSaysSoWhenItFails) {
  cwd_ = dir_.path();
  std::string err;
  EXPECT_NE(stowctl("--admin-socket '" + dir_.path() + "/none.sock' restore latest --to target", nullptr, &err), 0);
  EXPECT_NE(err.find("cannot reach stowaged"), std::string::npos) << err;
  EXPECT_NE(err.find("'target' was taken as a volume name"), std::string::npos) << err;
  EXPECT_NE(err.find("write ./target"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "target"));
}

// ... and only then: a daemon that has the volume but refuses the restore
// (here: it has no repository) gives its reason without the hint; for a
// volume it does not have, the hint follows the reason.
TEST_F(StowctlTest, AnExistingVolumeGetsNoVolumeNameHint) {
  const std::string state = dir_ / "state", admin = dir_ / "admin.sock", plugin = dir_ / "plugin.sock";
  test::write_file(dir_ / "stowage.json", "{}");  // not the host's /etc/stowage/stowage.json
  test::Subprocess::Options o;
  o.argv = {test::bin_dir() + "/stowaged", "--config", dir_ / "stowage.json", "--state-root", state, "--admin-socket", admin,
            "--plugin-socket", plugin, "--repository", ""};
  o.log_path = dir_ / "stowaged.log";
  test::Subprocess daemon(std::move(o));
  // The sockets exist before they accept: retry until the Create goes through.
  const std::string create = "curl -sf --unix-socket '" + plugin + "' -XPOST http://x/VolumeDriver.Create -d " +
                             "'{\"Name\":\"vol1\"}'";
  ASSERT_TRUE(test::wait_until([&] { return test::run_shell(create) == 0; }, std::chrono::seconds(30)))
      << test::read_file(dir_ / "stowaged.log");
  cwd_ = dir_.path();
  std::string err;
  EXPECT_NE(stowctl("--admin-socket '" + admin + "' restore latest --to vol1", nullptr, &err), 0);
  EXPECT_NE(err.find("no repository"), std::string::npos) << err;
  EXPECT_EQ(err.find("was taken as a volume name"), std::string::npos) << err;
  EXPECT_NE(stowctl("--admin-socket '" + admin + "' restore latest --to vol2", nullptr, &err), 0);
  EXPECT_NE(err.find("'vol2' was taken as a volume name"), std::string::npos) << err;
}

// The repository's filesystem fills up during a backup: the backup fails
// naming the cause, the repository stays consistent (check --read-data), no
// temp files are left, and the next backup works once space is freed.
TEST_F(StowctlTest, BackupIntoAFullRepositoryFailsClearlyAndTheNextOneWorks) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounts a tmpfs: needs root";
  test::SmallFs small(16 << 20);
  ASSERT_EQ(small.error(), "");
  const std::string repo = "--repo 'file://" + small.path() + "/repo'";
  const std::string src = small_source();
  ASSERT_EQ(stowctl("repo init " + repo), 0);
  const json first = stowctl_json("backup create '" + src + "' --name db " + repo);
  test::write_file(src + "/big", test::random_bytes(6u << 20, 7));  // does not compress
  const std::string filler = small.path() + "/filler";
  small.fill(filler);

  std::string out, err;
  EXPECT_NE(stowctl("backup create '" + src + "' --name db " + repo, &out, &err), 0);
  EXPECT_NE(err.find("No space left on device"), std::string::npos) << err;
  EXPECT_EQ(stowctl_json("backup ls " + repo).size(), 1u);
  json check = stowctl_json("check --read-data " + repo);
  EXPECT_EQ(check["ok"], true) << check.dump();
  for (auto& e : std::filesystem::directory_iterator(small.path() + "/repo/.stowage-tmp")) {
    ADD_FAILURE() << "left behind: " << e.path();
  }

  ASSERT_TRUE(std::filesystem::remove(filler));
  const json second = stowctl_json("backup create '" + src + "' --name db " + repo);
  EXPECT_EQ(second["parent"], first["snapshot"]);
  check = stowctl_json("check --read-data " + repo);
  EXPECT_EQ(check["ok"], true) << check.dump();
  EXPECT_EQ(check["snapshots"], 2);
  const std::string target = dir_ / "restored";
  EXPECT_EQ(stowctl_json("restore latest --to '" + target + "' " + repo)["snapshot"], second["snapshot"]);
  EXPECT_TRUE(test::diff_trees(src, target).empty());
}

// The restore target's filesystem fills up: the restore fails naming the
// cause, and a target it made leaves nothing behind, so that the same command
// works once space is freed (a half-restored target would be refused as not
// empty, and hold the space).
TEST_F(StowctlTest, RestoreIntoAFullTargetFailsClearlyAndCanBeRetried) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounts a tmpfs: needs root";
  test::SmallFs small(16 << 20);
  ASSERT_EQ(small.error(), "");
  const std::string src = small_source();
  test::write_file(src + "/big", test::random_bytes(6u << 20, 8));
  ASSERT_EQ(stowctl("repo init"), 0);
  const json made = stowctl_json("backup create '" + src + "'");
  const std::string filler = small.path() + "/filler";
  small.fill(filler);
  // Room for some of it, not all.
  ASSERT_EQ(::truncate(filler.c_str(), static_cast<off_t>(std::filesystem::file_size(filler) - (2 << 20))), 0);

  const std::string target = small.path() + "/restored";
  std::string out, err;
  EXPECT_NE(stowctl("restore latest --to '" + target + "'", &out, &err), 0);
  EXPECT_NE(err.find("No space left on device"), std::string::npos) << err;
  EXPECT_NE(err.find(target), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(target));

  ASSERT_TRUE(std::filesystem::remove(filler));
  EXPECT_EQ(stowctl_json("restore latest --to '" + target + "'")["snapshot"], made["snapshot"]);
  EXPECT_TRUE(test::diff_trees(src, target).empty());
}

// A thin-provisioned target whose pool is full: every write succeeds and only
// writing back fails. The restore must fail rather than report files that are
// not on the disk.
TEST_F(StowctlTest, RestoreThatCannotBeWrittenBackFails) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounts a tmpfs and a loop image: needs root";
  test::ThinFs thin(48, 128);
  ASSERT_EQ(thin.error(), "");
  const std::string src = small_source();
  test::write_file(src + "/big", test::random_bytes(8u << 20, 9));
  ASSERT_EQ(stowctl("repo init"), 0);
  ASSERT_EQ(stowctl("backup create '" + src + "'"), 0);
  thin.fill_pool();

  const std::string target = thin.mount_point() + "/restored";
  std::string out, err;
  EXPECT_NE(stowctl("restore latest --to '" + target + "'", &out, &err), 0) << out;
  // Writeback reports ENOSPC or EIO, as the kernel maps the device's error.
  EXPECT_TRUE(err.find("No space left on device") != std::string::npos ||
              err.find("Input/output error") != std::string::npos)
      << err;
  EXPECT_FALSE(std::filesystem::exists(target)) << "a target the restore made is removed again";
}

}  // namespace
}  // namespace stowage
