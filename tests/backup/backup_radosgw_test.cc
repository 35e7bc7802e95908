// Backup, incremental backup, restore and check --read-data against a real
// Ceph radosgw (S3) started by the test (tests/support/radosgw.h).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <thread>

#include "backup/backup_env.h"
#include "backup/test_data.h"
#include "backup/tree_fixture.h"
#include "stowage/lease.h"
#include "stowage/store_s3.h"
#include "stowage/upkeep.h"
#include "support/radosgw.h"

namespace stowage {
namespace {

test::RadosgwEnvironment* g_rgw = nullptr;  // owned by gtest

TEST(BackupRadosgw, RoundTripIncrementalAndReadDataCheck) {
  ASSERT_TRUE(g_rgw->ok()) << g_rgw->error();
  ASSERT_EQ(g_rgw->rgw().create_bucket("stowage-backup-test"), "");
  S3Config c;
  c.endpoint = g_rgw->rgw().endpoint();
  c.region = g_rgw->rgw().region();
  c.bucket = "stowage-backup-test";
  c.prefix = "repo/";
  c.access_key = g_rgw->rgw().user().access_key;
  c.secret_key = g_rgw->rgw().user().secret_key;
  auto store = open_s3_store(c);
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  auto repo = Repository::init(std::move(store).value(), test::small_pack_config());
  ASSERT_TRUE(repo.is_ok()) << repo.status().to_string();

  test::TempDir dir("stowage-rgw-backup");
  const std::string src = dir / "src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  test::make_tree(src, {.seed = 21, .dirs = 3, .files_per_dir = 3});
  test::write_file(src + "/big", test::random_bytes(3u << 20, 21));
  auto first = run_backup(**repo, test::backup_opts(src, "rgw", 1'800'000'000'000'000'000));
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  test::write_file(src + "/added", test::compressible_bytes(500000, 22));
  auto second = run_backup(**repo, test::backup_opts(src, "rgw", 1'800'000'000'000'000'001));
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  EXPECT_EQ(second->manifest.parent, first->snapshot_id);
  EXPECT_EQ(second->manifest.stats.bytes_read, 500000u);

  const std::string target = dir / "restored";
  auto r = run_restore(**repo, second->snapshot_id, test::restore_opts(target));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const auto diffs = test::diff_trees(src, target);
  EXPECT_TRUE(diffs.empty()) << ::testing::PrintToString(diffs);
  auto check = run_check(**repo, {.read_data = true});
  ASSERT_TRUE(check.is_ok()) << check.status().to_string();
  EXPECT_TRUE(check->ok()) << ::testing::PrintToString(check->errors);
  EXPECT_EQ(check->snapshots, 2u);
  EXPECT_EQ(check->blobs_read, check->blobs);
}

// Leases are single-part PUTs with If-None-Match: *, which radosgw honours:
// of contenders racing for one generation exactly one wins, with and without
// force, each contender through its own S3 client.
TEST(BackupRadosgw, LeaseContendersCannotBothWin) {
  ASSERT_TRUE(g_rgw->ok()) << g_rgw->error();
  ASSERT_EQ(g_rgw->rgw().create_bucket("stowage-lease-test"), "");
  constexpr int kHosts = 6;
  std::vector<std::unique_ptr<ObjectStore>> stores;
  std::vector<std::unique_ptr<LeaseClient>> clients;
  for (int i = 0; i < kHosts; ++i) {
    S3Config c;
    c.endpoint = g_rgw->rgw().endpoint();
    c.region = g_rgw->rgw().region();
    c.bucket = "stowage-lease-test";
    c.prefix = "repo/";
    c.access_key = g_rgw->rgw().user().access_key;
    c.secret_key = g_rgw->rgw().user().secret_key;
    auto store = open_s3_store(c);
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    stores.push_back(std::move(store).value());
    LeaseConfig lc;
    lc.host = "node-" + std::to_string(i);
    clients.push_back(std::make_unique<LeaseClient>(*stores.back(), lc));
  }
  for (int round = 0; round < 5; ++round) {
    const std::string volume = "race" + std::to_string(round);
    for (bool force : {false, true}) {
      std::atomic<int> wins{0};
      std::vector<Lease> won(kHosts);
      std::vector<std::thread> ts;
      for (int i = 0; i < kHosts; ++i) {
        ts.emplace_back([&, i] {
          auto l = clients[i]->acquire(volume, force);
          if (l.is_ok()) {
            ++wins;
            won[i] = *l;
          } else {
            EXPECT_EQ(l.status().code(), Code::kFailedPrecondition) << l.status().to_string();
          }
        });
      }
      for (auto& t : ts) t.join();
      // Without force one contender wins. Forced takeovers may succeed one
      // after another, each fencing the one before; either way exactly one
      // winner is the current lease and can renew, and the others cannot.
      if (force) {
        EXPECT_GE(wins.load(), 1) << volume;
      } else {
        EXPECT_EQ(wins.load(), 1) << volume;
      }
      auto cur = clients[0]->current(volume);
      ASSERT_TRUE(cur.is_ok()) << cur.status().to_string();
      int holders = 0;
      for (int i = 0; i < kHosts; ++i) {
        if (won[i].generation == 0) continue;
        if (won[i] == *cur) {
          ++holders;
          EXPECT_TRUE(clients[i]->renew(won[i]).is_ok());
        } else {
          EXPECT_LT(won[i].generation, cur->generation);
          EXPECT_TRUE(is_lease_lost(clients[i]->renew(won[i])));
        }
      }
      EXPECT_EQ(holders, 1) << volume << " force=" << force;
    }
  }
}

}  // namespace
}  // namespace stowage

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  stowage::g_rgw = new stowage::test::RadosgwEnvironment();
  ::testing::AddGlobalTestEnvironment(stowage::g_rgw);
  return RUN_ALL_TESTS();
}
