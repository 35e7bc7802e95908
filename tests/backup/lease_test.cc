// The lease protocol (docs/FORMAT.md §7) over the real file store and the
// fault-injecting decorator: exclusion, clock-free expiry, skewed clocks,
// forced takeover and fencing, races, and what store failures leave behind.
#include "stowage/lease.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "stowage/store_faults.h"
#include "stowage/store_file.h"
#include "support/test_support.h"

namespace stowage {
namespace {

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kTtl = 60 * kSec;
constexpr int64_t kEpoch = 1'800'000'000 * kSec;

// One host: its own clocks, which tests move independently.
struct Host {
  std::atomic<int64_t> wall{kEpoch};
  std::atomic<int64_t> mono{1000 * kSec};
  LeaseConfig config(const std::string& name) {
    LeaseConfig c;
    c.host = name;
    c.daemon_id = name + "-daemon";
    c.ttl_ns = kTtl;
    c.max_clock_skew_ns = 600 * kSec;
    c.wall_ns = [this] { return wall.load(); };
    c.monotonic_ns = [this] { return mono.load(); };
    return c;
  }
};

class LeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = open_file_store(dir_.path());
    ASSERT_TRUE(s.is_ok());
    store_ = std::move(s).value();
  }
  test::TempDir dir_{"stowage-lease"};
  std::unique_ptr<ObjectStore> store_;
  Host ha_, hb_;
};

TEST_F(LeaseTest, FirstTakerWinsOthersSeeHolderAndExpiry) {
  LeaseClient a(*store_, ha_.config("node-a")), b(*store_, hb_.config("node-b"));
  auto la = a.acquire("db1", false);
  ASSERT_TRUE(la.is_ok()) << la.status().to_string();
  EXPECT_EQ(la->generation, 1u);
  EXPECT_EQ(la->holder.host, "node-a");
  EXPECT_EQ(la->expires_ns, kEpoch + kTtl);
  auto lb = b.acquire("db1", false);
  ASSERT_FALSE(lb.is_ok());
  EXPECT_EQ(lb.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(lb.status().message().find("node-a"), std::string::npos) << lb.status().message();
  EXPECT_NE(lb.status().message().find(format_rfc3339_ns(kEpoch + kTtl)), std::string::npos) << lb.status().message();
  EXPECT_NE(lb.status().message().find("takeover=force"), std::string::npos);
  auto cur = b.current("db1");
  ASSERT_TRUE(cur.is_ok());
  EXPECT_EQ(*cur, *la);
}

TEST_F(LeaseTest, ReleaseFreesAtOnceAndOldHolderIsFenced) {
  LeaseClient a(*store_, ha_.config("node-a")), b(*store_, hb_.config("node-b"));
  auto la = a.acquire("db1", false);
  ASSERT_TRUE(la.is_ok());
  ASSERT_TRUE(a.release(*la).is_ok());
  EXPECT_TRUE(la->released);
  auto lb = b.acquire("db1", false);
  ASSERT_TRUE(lb.is_ok()) << lb.status().to_string();
  EXPECT_EQ(lb->generation, 2u);
  // Older generations are cleaned up by the new holder.
  auto keys = store_->list("leases/db1/");
  ASSERT_TRUE(keys.is_ok());
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].key, lease_key("db1", 2));
  Status renewed = a.renew(*la);
  EXPECT_TRUE(is_lease_lost(renewed)) << renewed.to_string();
}

TEST_F(LeaseTest, SilentHolderExpiresAfterTtlOfObserversOwnTime) {
  LeaseClient a(*store_, ha_.config("node-a")), b(*store_, hb_.config("node-b"));
  auto la = a.acquire("db1", false);
  ASSERT_TRUE(la.is_ok());
  // B's wall clock is an hour behind: wall-clock expiry could never fire.
  hb_.wall = kEpoch - 3600 * kSec;
  EXPECT_FALSE(b.acquire("db1", false).is_ok());
  hb_.mono += kTtl - kSec;
  EXPECT_FALSE(b.acquire("db1", false).is_ok());
  hb_.mono += kSec;
  auto lb = b.acquire("db1", false);
  ASSERT_TRUE(lb.is_ok()) << lb.status().to_string();
  EXPECT_EQ(lb->generation, 2u);
  Status st = a.renew(*la);
  EXPECT_TRUE(is_lease_lost(st)) << st.to_string();
  EXPECT_NE(st.message().find("node-b"), std::string::npos) << st.message();
}

TEST_F(LeaseTest, RenewingHolderKeepsItAgainstSkewedObservers) {
  LeaseClient a(*store_, ha_.config("node-a")), b(*store_, hb_.config("node-b"));
  auto la = a.acquire("db1", false);
  ASSERT_TRUE(la.is_ok());
  // B's clock runs 5 minutes ahead: past A's expires_ns but within the skew allowance.
  hb_.wall = kEpoch + 5 * 60 * kSec;
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(b.acquire("db1", false).is_ok()) << "round " << i;
    hb_.mono += kTtl / 2;
    ha_.wall += kTtl / 3;
    ASSERT_TRUE(a.renew(*la).is_ok());
  }
  EXPECT_EQ(la->renewal, 10u);
  auto lc = a.check(*la);
  ASSERT_TRUE(lc.is_ok());
  EXPECT_TRUE(lc->ours);
  // Far beyond any skew allowance, the wall clock alone frees it.
  hb_.wall = la->expires_ns + 601 * kSec;
  EXPECT_TRUE(b.acquire("db1", false).is_ok());
}

TEST_F(LeaseTest, ForcedTakeoverFencesTheHolder) {
  LeaseClient a(*store_, ha_.config("node-a")), b(*store_, hb_.config("node-b"));
  auto la = a.acquire("db1", false);
  ASSERT_TRUE(la.is_ok());
  auto lb = b.acquire("db1", true);
  ASSERT_TRUE(lb.is_ok()) << lb.status().to_string();
  EXPECT_EQ(lb->generation, 2u);
  auto c = a.check(*la);
  ASSERT_TRUE(c.is_ok());
  EXPECT_FALSE(c->ours);
  EXPECT_EQ(c->current.holder.host, "node-b");
  EXPECT_TRUE(is_lease_lost(a.renew(*la)));
  // A fenced holder writes nothing: B's lease is untouched.
  EXPECT_TRUE(is_lease_lost(a.release(*la)));
  auto cur = b.current("db1");
  ASSERT_TRUE(cur.is_ok());
  EXPECT_EQ(*cur, *lb);
  // And A cannot simply take it back without force.
  EXPECT_FALSE(a.acquire("db1", false).is_ok());
}

TEST_F(LeaseTest, SameHostRetakesItsOwnLeaseAfterRestart) {
  LeaseClient a(*store_, ha_.config("node-a"));
  auto la = a.acquire("db1", false);
  ASSERT_TRUE(la.is_ok());
  LeaseClient a2(*store_, ha_.config("node-a"));  // a new daemon on the same host
  auto again = a2.acquire("db1", false);
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(again->generation, 2u);
  EXPECT_TRUE(is_lease_lost(a.renew(*la)));
}

// Two live daemons configured with the same host id (a cloned machine) take
// the lease from each other without waiting; the one that lost it is told why.
TEST_F(LeaseTest, TwoDaemonsSharingAHostIdAreToldSo) {
  LeaseConfig first = ha_.config("node-a"), second = hb_.config("node-a");
  first.daemon_id = "boot-1/100";
  second.daemon_id = "boot-2/100";
  LeaseClient a(*store_, first), a2(*store_, second);
  auto la = a.acquire("db1", false);
  ASSERT_TRUE(la.is_ok());
  ASSERT_TRUE(a2.acquire("db1", false).is_ok());
  auto c = a.check(*la);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_FALSE(c->ours);
  EXPECT_NE(c->why.find("two daemons share the host id"), std::string::npos) << c->why;
  EXPECT_NE(c->why.find("boot-2/100"), std::string::npos) << c->why;
}

// Without force exactly one contender wins. Forced takeovers may succeed one
// after another (each fencing the one before, with a higher generation); in
// both cases exactly one winner still holds the lease and can renew it.
void expect_one_holder(std::vector<std::unique_ptr<LeaseClient>>& clients, std::vector<std::optional<Lease>>& won,
                       const std::string& volume, bool force) {
  std::set<uint64_t> generations;
  int wins = 0, holders = 0;
  for (size_t i = 0; i < won.size(); ++i) {
    if (!won[i]) continue;
    ++wins;
    EXPECT_TRUE(generations.insert(won[i]->generation).second) << "two winners of generation " << won[i]->generation;
    Status renewed = clients[i]->renew(*won[i]);
    if (renewed.is_ok()) {
      ++holders;
    } else {
      EXPECT_TRUE(is_lease_lost(renewed)) << renewed.to_string();
    }
  }
  if (force) {
    EXPECT_GE(wins, 1) << volume;
  } else {
    EXPECT_EQ(wins, 1) << volume;
  }
  EXPECT_EQ(holders, 1) << volume << " force=" << force;
}

TEST_F(LeaseTest, ConcurrentContendersExactlyOneWins) {
  constexpr int kHosts = 8;
  std::vector<std::unique_ptr<Host>> hosts;
  std::vector<std::unique_ptr<LeaseClient>> clients;
  for (int i = 0; i < kHosts; ++i) {
    hosts.push_back(std::make_unique<Host>());
    clients.push_back(std::make_unique<LeaseClient>(*store_, hosts.back()->config("node-" + std::to_string(i))));
  }
  for (bool force : {false, true}) {
    std::vector<std::optional<Lease>> won(kHosts);
    std::vector<std::thread> ts;
    for (int i = 0; i < kHosts; ++i) {
      ts.emplace_back([&, i] {
        auto l = clients[i]->acquire("race", force);
        if (l.is_ok()) {
          won[i] = *l;
        } else {
          EXPECT_EQ(l.status().code(), Code::kFailedPrecondition) << l.status().to_string();
        }
      });
    }
    for (auto& t : ts) t.join();
    expect_one_holder(clients, won, "race", force);
  }
}

// A create-only put whose first attempt reached the store but whose answer was
// lost: the retry then reports kAlreadyExists for the caller's own object.
class AnswerLostStore : public ObjectStore {
 public:
  explicit AnswerLostStore(ObjectStore& inner) : inner_(inner) {}
  Status put(std::string_view key, std::string_view data, PutOptions opts) override {
    Status st = inner_.put(key, data, opts);
    if (st.is_ok() && opts.create_only) return Status::already_exists(std::string(key) + " exists");
    return st;
  }
  Result<Bytes> get(std::string_view key, uint64_t offset, uint64_t length) override {
    return inner_.get(key, offset, length);
  }
  Result<ObjectInfo> head(std::string_view key) override { return inner_.head(key); }
  Result<std::vector<ObjectInfo>> list(std::string_view prefix) override { return inner_.list(prefix); }
  Status remove(std::string_view key) override { return inner_.remove(key); }
  StoreCaps caps() const override { return inner_.caps(); }
  std::string describe() const override { return inner_.describe(); }

 private:
  ObjectStore& inner_;
};

TEST_F(LeaseTest, RetriedCreateThatLandedIsRecognisedAsOurs) {
  AnswerLostStore lossy(*store_);
  LeaseClient a(lossy, ha_.config("node-a"));
  auto la = a.acquire("db1", false);
  ASSERT_TRUE(la.is_ok()) << la.status().to_string();
  EXPECT_EQ(la->generation, 1u);
  // Someone else's object under the same answer is not taken for ours.
  LeaseClient b(lossy, hb_.config("node-b"));
  auto lb = b.acquire("db1", true);
  ASSERT_TRUE(lb.is_ok()) << lb.status().to_string();
  EXPECT_EQ(lb->generation, 2u);
  EXPECT_TRUE(is_lease_lost(a.renew(*la)));
}

TEST_F(LeaseTest, DamagedLeaseIsReportedNotOverwritten) {
  ASSERT_TRUE(store_->put(lease_key("db1", 3), "{not json").is_ok());
  LeaseClient a(*store_, ha_.config("node-a"));
  auto la = a.acquire("db1", false);
  ASSERT_FALSE(la.is_ok());
  EXPECT_EQ(la.status().code(), Code::kCorruption);
  EXPECT_NE(la.status().message().find(lease_key("db1", 3)), std::string::npos) << la.status().message();
  EXPECT_NE(la.status().message().find("stowctl volume takeover db1"), std::string::npos) << la.status().message();
  auto got = store_->get(lease_key("db1", 3));
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(*got, "{not json");

  // The operator's forced takeover is not locked out by it.
  auto forced = a.acquire("db1", true);
  ASSERT_TRUE(forced.is_ok()) << forced.status().to_string();
  EXPECT_EQ(forced->generation, 4u);
  auto now = a.current("db1");
  ASSERT_TRUE(now.is_ok()) << now.status().to_string();
  EXPECT_EQ(now->holder.host, "node-a");
  EXPECT_TRUE(a.renew(*forced).is_ok());
}

TEST_F(LeaseTest, StoreFailuresLeaveNothingHeld) {
  auto file = open_file_store(dir_.path());
  ASSERT_TRUE(file.is_ok());
  FaultPlan plan;
  plan.ops = static_cast<unsigned>(StoreOp::kPut);
  plan.fail_rate = 1;
  auto failing = make_fault_injecting_store(std::move(file).value(), plan);
  LeaseClient a(*failing, ha_.config("node-a"));
  auto la = a.acquire("db1", false);
  ASSERT_FALSE(la.is_ok());
  EXPECT_TRUE(la.status().retryable()) << la.status().to_string();
  auto keys = store_->list("leases/");
  ASSERT_TRUE(keys.is_ok());
  EXPECT_TRUE(keys->empty());

  // A write the store acknowledged but lost is not taken for a lease.
  auto file2 = open_file_store(dir_.path());
  ASSERT_TRUE(file2.is_ok());
  FaultPlan lose;
  lose.ops = static_cast<unsigned>(StoreOp::kPut);
  lose.lose_write_rate = 1;
  auto losing = make_fault_injecting_store(std::move(file2).value(), lose);
  LeaseClient a2(*losing, ha_.config("node-a"));
  la = a2.acquire("db1", false);
  ASSERT_FALSE(la.is_ok());
  EXPECT_EQ(la.status().code(), Code::kUnavailable) << la.status().to_string();

  // A renewal that fails is an error, not a loss: the holder still holds it.
  LeaseClient good(*store_, ha_.config("node-a"));
  auto held = good.acquire("db1", false);
  ASSERT_TRUE(held.is_ok());
  LeaseClient flaky(*failing, ha_.config("node-a"));
  Status st = flaky.renew(*held);
  EXPECT_FALSE(st.is_ok());
  EXPECT_FALSE(is_lease_lost(st));
  EXPECT_EQ(held->renewal, 0u);
  EXPECT_TRUE(good.renew(*held).is_ok());
}

}  // namespace
}  // namespace stowage
