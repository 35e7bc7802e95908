// The backup agent in-process: real volume managers (one per simulated host,
// each with its own state root) over one real file-store repository, with the
// fault-injecting store slowing reads where a test needs a long restore.
#include "backup_agent.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "dir_backend.h"
#include "stowage/store_faults.h"
#include "stowage/store_file.h"
#include "support/test_support.h"

namespace stowage {
namespace {

using namespace std::chrono_literals;

// One simulated host: its volumes and its agent.
struct Host {
  Host(const std::string& root, const std::string& repo, const std::string& id, int64_t mount_wait_ns,
       std::chrono::milliseconds read_delay = 0ms)
      : log(LogFormat::kLogfmt, LogLevel::kDebug, [](std::string_view) {}) {
    VolumeManager::Options o;
    o.state_root = root;
    o.boot_id = "boot";
    o.snapshots = &snapshots;
    auto m = VolumeManager::open(o, backend, log);
    EXPECT_TRUE(m.is_ok()) << m.status().to_string();
    volumes = std::move(m).value();
    auto store = open_file_store(repo);
    EXPECT_TRUE(store.is_ok());
    BackupAgent::Options a;
    a.store = std::move(store).value();
    if (read_delay > 0ms) {
      FaultPlan plan;
      plan.ops = static_cast<unsigned>(StoreOp::kGet);
      plan.delay_rate = 1;
      plan.max_delay = read_delay;
      a.store = make_fault_injecting_store(std::move(a.store), plan);
    }
    a.state_dir = root + "/agent";
    a.lease.host = id;
    a.lease.ttl_ns = 30'000'000'000;
    a.renew_interval_ns = 10'000'000'000;
    a.mount_wait_ns = mount_wait_ns;
    auto ag = BackupAgent::open(std::move(a), *volumes, log);
    EXPECT_TRUE(ag.is_ok()) << ag.status().to_string();
    agent = std::move(ag).value();
  }
  std::string data(const std::string& name) { return *volumes->path(name); }

  DirBackend backend;
  std::unique_ptr<CopyEngine> engine = CopyEngine::create();
  SnapshotStore snapshots{*engine};
  Logger log;
  std::unique_ptr<VolumeManager> volumes;
  std::unique_ptr<BackupAgent> agent;
};

class BackupAgentTest : public ::testing::Test {
 protected:
  std::unique_ptr<Host> host(const std::string& id, int64_t mount_wait_ns = 60'000'000'000,
                             std::chrono::milliseconds read_delay = 0ms) {
    return std::make_unique<Host>(dir_ / id, dir_ / "repo", id, mount_wait_ns, read_delay);
  }
  test::TempDir dir_{"stowage-agent"};
};

TEST_F(BackupAgentTest, BackupByNameUsesATemporarySnapshotAndATemporaryLease) {
  auto a = host("node-a");
  ASSERT_TRUE(a->volumes->create("db", {}).is_ok());
  test::write_file(a->data("db") + "/f", "contents");
  ASSERT_TRUE(a->agent->backup_volume("db", "manual").is_ok());
  auto last = a->agent->last_backup_json("db");
  ASSERT_TRUE(last.is_object());
  EXPECT_TRUE(last["ok"].get<bool>());
  EXPECT_EQ(last["reason"], "manual");
  // The temporary local snapshot is gone, and so is the lease (not mounted).
  auto snaps = a->volumes->snapshot_list("db");
  ASSERT_TRUE(snaps.is_ok());
  EXPECT_TRUE(snaps->empty());
  EXPECT_TRUE(a->agent->lease_json("db").is_null());
  // The manifest names the volume, the host and the lease generation.
  auto store = open_file_store(dir_ / "repo");
  ASSERT_TRUE(store.is_ok());
  auto repo = Repository::open(std::move(store).value());
  ASSERT_TRUE(repo.is_ok());
  auto id = latest_snapshot_of(**repo, "db");
  ASSERT_TRUE(id.is_ok() && id->has_value());
  auto bytes = (*repo)->load_snapshot(**id);
  ASSERT_TRUE(bytes.is_ok());
  auto m = parse_snapshot(*bytes);
  ASSERT_TRUE(m.is_ok());
  EXPECT_EQ(m->volume, "db");
  EXPECT_EQ(m->hostname, "node-a");
  EXPECT_EQ(m->lease_generation, 1u);
  EXPECT_EQ(m->tags, std::vector<std::string>{"manual"});
}

TEST_F(BackupAgentTest, SlowRestoreFailsTheMountButFinishesInTheBackground) {
  auto a = host("node-a");
  ASSERT_TRUE(a->volumes->create("big", {}).is_ok());
  for (int i = 0; i < 8; ++i) test::write_file(a->data("big") + "/f" + std::to_string(i), std::string(300000, 'a' + i));
  ASSERT_TRUE(a->agent->backup_volume("big", "manual").is_ok());

  // Every read of B's store takes up to 50 ms; B's Mount waits only 1 ms.
  // (No after_create: the restore starts with the Mount, not ahead of it.)
  auto b = host("node-b", 1'000'000, 50ms);
  ASSERT_TRUE(b->volumes->create("big", {}).is_ok());
  Status first = b->agent->before_mount("big");
  ASSERT_FALSE(first.is_ok());
  EXPECT_EQ(first.code(), Code::kDeadlineExceeded) << first.to_string();
  EXPECT_NE(first.message().find("still being restored"), std::string::npos) << first.message();
  EXPECT_NE(first.message().find("retry"), std::string::npos) << first.message();
  // The restore goes on; a retried Mount succeeds once it is done.
  ASSERT_TRUE(test::wait_until([&] { return b->agent->before_mount("big").is_ok(); }, 120s));
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(test::read_file(b->data("big") + "/f" + std::to_string(i)), std::string(300000, 'a' + i));
  }
  EXPECT_EQ(b->agent->lease_json("big")["holder"], "node-b");
}

TEST_F(BackupAgentTest, StaleCopyIsNotBackedUpOverNewerData) {
  auto a = host("node-a");
  auto b = host("node-b");
  ASSERT_TRUE(a->volumes->create("v", {}).is_ok());
  test::write_file(a->data("v") + "/f", "one");
  ASSERT_TRUE(a->agent->backup_volume("v", "manual").is_ok());
  // B takes the volume, changes it and backs it up.
  ASSERT_TRUE(b->volumes->create("v", {}).is_ok());
  ASSERT_TRUE(b->agent->before_mount("v").is_ok());
  EXPECT_EQ(test::read_file(b->data("v") + "/f"), "one");
  test::write_file(b->data("v") + "/f", "two");
  ASSERT_TRUE(b->agent->backup_volume("v", "manual").is_ok());
  // A's copy is now older than the newest snapshot: backing it up is refused
  // (B holds the lease anyway), and after B lets go, still refused as stale.
  Status st = a->agent->backup_volume("v", "scheduled");
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("node-b"), std::string::npos) << st.message();
  b->agent->after_unmount("v");
  ASSERT_TRUE(test::wait_until([&] { return b->agent->lease_json("v").is_null(); }, 60s));
  st = a->agent->backup_volume("v", "scheduled");
  EXPECT_EQ(st.code(), Code::kFailedPrecondition) << st.to_string();
  EXPECT_NE(st.message().find("older"), std::string::npos) << st.message();
  // Mounting it on A brings it up to date, after which backups work again.
  ASSERT_TRUE(a->agent->before_mount("v").is_ok());
  EXPECT_EQ(test::read_file(a->data("v") + "/f"), "two");
  EXPECT_TRUE(a->agent->backup_volume("v", "scheduled").is_ok());
}

}  // namespace
}  // namespace stowage
