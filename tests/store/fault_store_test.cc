// Unit tests of the fault-injecting decorator: each kind of fault, rates, and
// reproducibility from the seed.
#include <gtest/gtest.h>

#include <algorithm>

#include "store_test_util.h"
#include "stowage/store_faults.h"
#include "stowage/store_file.h"
#include "support/test_support.h"

namespace stowage {
namespace {

class FaultStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<FaultInjectingStore> make(FaultPlan plan) {
    auto dir = std::make_unique<test::TempDir>();
    auto file = open_file_store(dir->path());
    EXPECT_TRUE(file.is_ok());
    for (int i = 0; i < 10; ++i) EXPECT_TRUE((*file)->put(test::key_n(i), "0123456789").is_ok());
    dirs_.push_back(std::move(dir));
    return make_fault_injecting_store(std::move(file).value(), std::move(plan), env_);
  }
  // Outcome of `n` gets over keys k0..k9, as a string of codes.
  static std::string outcomes(ObjectStore& s, int n, bool reverse = false) {
    std::vector<std::string> per_key(10);
    for (int i = 0; i < n; ++i) {
      int k = reverse ? 9 - i % 10 : i % 10;
      auto r = s.get(test::key_n(k));
      per_key[k] += r.is_ok() ? "." : std::string(code_name(r.status().code())).substr(0, 1);
    }
    std::string all;
    for (auto& p : per_key) all += p + "|";
    return all;
  }

  std::shared_ptr<test::FakeRetryEnv> env_ = std::make_shared<test::FakeRetryEnv>();
  std::vector<std::unique_ptr<test::TempDir>> dirs_;
};

TEST_F(FaultStoreTest, SameSeedSameFaultsWhateverTheCallOrder) {
  FaultPlan plan;
  plan.seed = 7;
  plan.fail_rate = 0.3;
  plan.fail_codes = {Code::kUnavailable, Code::kDeadlineExceeded, Code::kPermissionDenied};
  auto a = make(plan), b = make(plan);
  std::string in_order = outcomes(*a, 500);
  EXPECT_EQ(in_order, outcomes(*b, 500, /*reverse=*/true));
  EXPECT_NE(in_order.find('U'), std::string::npos);
  EXPECT_NE(in_order.find('D'), std::string::npos);
  EXPECT_NE(in_order.find('P'), std::string::npos);
  plan.seed = 8;
  EXPECT_NE(in_order, outcomes(*make(plan), 500));
}

TEST_F(FaultStoreTest, FailRateAndRetryability) {
  FaultPlan plan;
  plan.fail_rate = 0.2;
  plan.fail_codes = {Code::kUnavailable, Code::kNotFound};
  auto s = make(plan);
  int failed = 0;
  for (int i = 0; i < 2000; ++i) {
    auto r = s->head(test::key_n(i % 10));
    if (r.is_ok()) continue;
    ++failed;
    EXPECT_NE(r.status().message().find("injected fault"), std::string::npos);
    EXPECT_EQ(r.status().retryable(), r.status().code() == Code::kUnavailable);
  }
  EXPECT_GT(failed, 300);
  EXPECT_LT(failed, 500);
  EXPECT_EQ(s->stats().failed, static_cast<uint64_t>(failed));
}

TEST_F(FaultStoreTest, OpsMaskLimitsWhereFaultsLand) {
  FaultPlan plan;
  plan.fail_rate = 1.0;
  plan.ops = static_cast<unsigned>(StoreOp::kGet);
  auto s = make(plan);
  EXPECT_TRUE(s->put("new", "x").is_ok());
  EXPECT_TRUE(s->head("new").is_ok());
  EXPECT_TRUE(s->list("").is_ok());
  EXPECT_FALSE(s->get("new").is_ok());
}

TEST_F(FaultStoreTest, TruncatedReadsAreStrictPrefixes) {
  FaultPlan plan;
  plan.truncate_read_rate = 1.0;
  auto s = make(plan);
  for (int i = 0; i < 50; ++i) {
    auto r = s->get("k1");
    ASSERT_TRUE(r.is_ok());
    EXPECT_LT(r->size(), 10u);
    EXPECT_EQ(*r, std::string("0123456789").substr(0, r->size()));
  }
  EXPECT_EQ(s->stats().truncated, 50u);
}

TEST_F(FaultStoreTest, CorruptedReadsFlipOneBit) {
  FaultPlan plan;
  plan.corrupt_read_rate = 1.0;
  auto s = make(plan);
  const std::string good = "0123456789";
  for (int i = 0; i < 50; ++i) {
    auto r = s->get("k2");
    ASSERT_TRUE(r.is_ok());
    ASSERT_EQ(r->size(), good.size());
    int diff_bits = 0;
    for (size_t j = 0; j < good.size(); ++j) diff_bits += __builtin_popcount(static_cast<uint8_t>((*r)[j] ^ good[j]));
    EXPECT_EQ(diff_bits, 1);
  }
}

TEST_F(FaultStoreTest, LostWritesReportSuccess) {
  FaultPlan plan;
  plan.lose_write_rate = 1.0;
  auto s = make(plan);
  EXPECT_TRUE(s->put("vanishes", "data").is_ok());
  EXPECT_EQ(s->get("vanishes").status().code(), Code::kNotFound);
  EXPECT_EQ(s->stats().lost_writes, 1u);
}

TEST_F(FaultStoreTest, DelaysUseTheInjectedSleep) {
  FaultPlan plan;
  plan.delay_rate = 1.0;
  plan.max_delay = std::chrono::milliseconds(100);
  auto s = make(plan);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(s->get("k3").is_ok());
  auto sleeps = env_->sleeps();
  ASSERT_EQ(sleeps.size(), 20u);
  for (auto d : sleeps) EXPECT_LE(d, std::chrono::milliseconds(100));
  EXPECT_GT(*std::max_element(sleeps.begin(), sleeps.end()), std::chrono::milliseconds(0));
}

}  // namespace
}  // namespace stowage
