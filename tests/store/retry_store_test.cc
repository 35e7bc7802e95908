// Unit tests of the retry policy: backoff bounds, attempts, budget, and which
// errors are (never) retried.
#include <gtest/gtest.h>

#include <cstdio>
#include <optional>
#include <thread>

#include "store_test_util.h"
#include "stowage/store_faults.h"
#include "stowage/store_file.h"
#include "stowage/store_deadline.h"
#include "stowage/store_retry.h"
#include "support/test_support.h"

namespace stowage {
namespace {

using std::chrono::milliseconds;
using test::FakeRetryEnv;
using test::ScriptedStore;

struct Wrapped {
  ScriptedStore* inner;
  std::shared_ptr<FakeRetryEnv> env;
  std::unique_ptr<RetryingStore> store;
};

Wrapped wrap(RetryPolicy policy = {}, double jitter = 0.5) {
  auto inner = std::make_unique<ScriptedStore>();
  auto* raw = inner.get();
  auto env = std::make_shared<FakeRetryEnv>(jitter);
  return {raw, env, make_retrying_store(std::move(inner), policy, env)};
}

TEST(RetryBackoff, FullJitterExponentialCappedAt20s) {
  RetryPolicy p;
  for (int retry = 1; retry <= 40; ++retry) {
    const int64_t ceiling = std::min<int64_t>(20'000, 1000LL << std::min(retry - 1, 20));
    EXPECT_EQ(retry_backoff(p, retry, 0.0), milliseconds(0)) << retry;
    EXPECT_LE(retry_backoff(p, retry, 0.999999), milliseconds(ceiling)) << retry;
    EXPECT_GE(retry_backoff(p, retry, 0.999999), milliseconds(ceiling - 1)) << retry;
    EXPECT_EQ(retry_backoff(p, retry, 0.5), milliseconds(ceiling / 2)) << retry;
  }
  EXPECT_EQ(retry_backoff(p, 1000, 1.0), milliseconds(20'000));
}

TEST(RetryingStore, RetriesTransientErrorsThenSucceeds) {
  auto w = wrap();
  w.inner->script({Status::unavailable("503 SlowDown"), Status::deadline_exceeded("timeout")});
  ASSERT_TRUE(w.store->put("k", "v").is_ok());
  EXPECT_EQ(w.inner->calls(), 3);
  EXPECT_EQ(w.env->sleeps(), (std::vector<milliseconds>{milliseconds(500), milliseconds(1000)}));
  EXPECT_EQ(w.store->stats().retries, 2u);
}

// Inside a StoreDeadline scope no backoff starts that would end past the
// deadline (jitter 0.5: backoffs of 500 then 1000 ms; the deadline is 700 ms
// away and the fake sleeps take no time).
TEST(RetryingStore, StopsRetryingWhenTheBackoffWouldPassTheThreadsDeadline) {
  auto w = wrap();
  w.inner->script({Status::unavailable("503"), Status::unavailable("503"), Status::unavailable("503")});
  {
    StoreDeadline deadline(milliseconds(700));
    auto r = w.store->get("k");
    EXPECT_EQ(r.status().code(), Code::kDeadlineExceeded);
    EXPECT_NE(r.status().message().find("out of time after 2 attempts: 503"), std::string::npos) << r.status().message();
  }
  EXPECT_EQ(w.inner->calls(), 2);
  EXPECT_EQ(w.env->sleeps(), std::vector<milliseconds>{milliseconds(500)});
  EXPECT_FALSE(StoreDeadline::current().has_value()) << "the scope ended";
  // Without a deadline the same script is retried to the end.
  auto w2 = wrap();
  w2.inner->script({Status::unavailable("503"), Status::unavailable("503"), Status::unavailable("503")});
  EXPECT_TRUE(w2.store->get("k").is_ok());
  EXPECT_EQ(w2.inner->calls(), 4);
}

TEST(StoreDeadline, NestedScopesKeepTheEarlierDeadline) {
  EXPECT_FALSE(StoreDeadline::current().has_value());
  StoreDeadline outer(std::chrono::seconds(10));
  const auto first = *StoreDeadline::current();
  {
    StoreDeadline inner(std::chrono::seconds(60));
    EXPECT_EQ(*StoreDeadline::current(), first) << "a later inner deadline does not extend the outer one";
    StoreDeadline tighter(std::chrono::seconds(1));
    EXPECT_LT(*StoreDeadline::current(), first);
  }
  EXPECT_EQ(*StoreDeadline::current(), first);
  std::optional<StoreDeadline::Clock::time_point> elsewhere = first;
  std::thread([&] { elsewhere = StoreDeadline::current(); }).join();
  EXPECT_FALSE(elsewhere.has_value()) << "deadlines are per thread";
}

TEST(StoreDeadline, LeftIsTheTimeToTheDeadlineAndNeverNegative) {
  EXPECT_FALSE(StoreDeadline::left().has_value()) << "no scope, no limit";
  {
    StoreDeadline scope(std::chrono::seconds(30));
    const auto left = StoreDeadline::left();
    ASSERT_TRUE(left.has_value());
    EXPECT_LE(*left, std::chrono::seconds(30));
    EXPECT_GT(*left, std::chrono::seconds(0));
  }
  StoreDeadline past(-std::chrono::seconds(5));
  EXPECT_EQ(StoreDeadline::left(), StoreDeadline::Clock::duration::zero()) << "a passed deadline leaves zero";
}

TEST(RetryingStore, NeverRetriesPermanentErrors) {
  for (Code code : {Code::kNotFound, Code::kAlreadyExists, Code::kPermissionDenied, Code::kInvalidArgument}) {
    auto w = wrap();
    // Even a source that wrongly flags them retryable is not believed.
    w.inner->script({Status(code, "permanent", /*retryable=*/true)});
    auto r = w.store->get("k");
    EXPECT_EQ(r.status().code(), code);
    EXPECT_EQ(w.inner->calls(), 1) << code_name(code);
    EXPECT_TRUE(w.env->sleeps().empty());
  }
  auto w = wrap();
  w.inner->script({Status::io_error("disk on fire")});  // not flagged retryable
  EXPECT_EQ(w.store->remove("k").code(), Code::kIOError);
  EXPECT_EQ(w.inner->calls(), 1);
}

TEST(RetryingStore, GivesUpAfterMaxAttempts) {
  RetryPolicy p;
  p.max_attempts = 4;
  auto w = wrap(p);
  w.inner->fail_always(Status::unavailable("down"));
  auto r = w.store->head("k");
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_TRUE(r.status().retryable());
  EXPECT_NE(r.status().message().find("after 4 attempts"), std::string::npos) << r.status().message();
  EXPECT_EQ(w.inner->calls(), 4);
  EXPECT_EQ(w.env->sleeps().size(), 3u);
  EXPECT_EQ(w.store->stats().gave_up, 1u);
}

TEST(RetryingStore, BudgetStopsRetryStormsDuringAnOutage) {
  RetryPolicy p;  // AWS values: 500 tokens, 5 per retry
  auto w = wrap(p);
  w.inner->fail_always(Status::unavailable("region outage"));
  constexpr int kCalls = 1000;
  for (int i = 0; i < kCalls; ++i) EXPECT_FALSE(w.store->get("k").is_ok());
  // 500 / 5 = 100 retries in total, then every call fails on its first try.
  EXPECT_EQ(w.inner->calls(), kCalls + 100);
  EXPECT_EQ(w.store->stats().retries, 100u);
  EXPECT_EQ(w.store->budget(), 0);
  EXPECT_GE(w.store->stats().budget_exhausted, 900u);
  auto r = w.store->get("k");
  EXPECT_NE(r.status().message().find("retry budget exhausted"), std::string::npos);

  // Recovery: first-try successes refill the bucket one token at a time.
  w.inner->fail_always(std::nullopt);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(w.store->get("k").is_ok());
  EXPECT_EQ(w.store->budget(), 10);
}

TEST(RetryingStore, TimeoutsCostMoreAndSuccessRefundsTheRetry) {
  RetryPolicy p;
  p.budget_capacity = 100;
  auto w = wrap(p);
  w.inner->script({Status::deadline_exceeded("slow")});
  ASSERT_TRUE(w.store->put("k", "v").is_ok());
  EXPECT_EQ(w.store->budget(), 100) << "refunded after success";
  w.inner->fail_always(Status::deadline_exceeded("slow"));
  (void)w.store->put("k", "v");  // 4 retries of 10 each (max_attempts 5)
  EXPECT_EQ(w.store->budget(), 60);
  w.inner->fail_always(Status::unavailable("503"));
  (void)w.store->put("k", "v");  // 4 retries of 5 each
  EXPECT_EQ(w.store->budget(), 40);
}

TEST(RetryingStore, TwentyPercentFailureRateOverARealStore) {
  test::TempDir dir;
  auto file = open_file_store(dir.path());
  ASSERT_TRUE(file.is_ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE((*file)->put(test::key_n(i), "value").is_ok());
  FaultPlan plan;
  plan.seed = 42;
  plan.fail_rate = 0.2;
  plan.fail_codes = {Code::kUnavailable, Code::kDeadlineExceeded};
  auto env = std::make_shared<FakeRetryEnv>(0.5);
  auto faulty = make_fault_injecting_store(std::move(file).value(), plan, env);
  auto* faults = faulty.get();
  auto store = make_retrying_store(std::move(faulty), RetryPolicy{}, env);

  constexpr int kCalls = 2000;
  int failed = 0;
  for (int i = 0; i < kCalls; ++i) {
    auto r = store->get(test::key_n(i % 20));
    if (!r.is_ok()) {
      ++failed;
      EXPECT_TRUE(r.status().retryable()) << r.status().to_string();
    } else {
      EXPECT_EQ(*r, "value");
    }
  }
  RetryStats st = store->stats();
  FaultStats fs = faults->stats();
  std::printf("20%% faults: calls=%llu retries=%llu gave_up=%llu budget_exhausted=%llu slept=%lldms budget=%d "
              "injected=%llu\n",
              (unsigned long long)st.calls, (unsigned long long)st.retries, (unsigned long long)st.gave_up,
              (unsigned long long)st.budget_exhausted, (long long)st.slept.count(), store->budget(),
              (unsigned long long)fs.failed);
  // Every injected failure was retried: attempts = calls + retries.
  EXPECT_EQ(fs.calls, st.calls + st.retries);
  EXPECT_EQ(st.retries, fs.failed - st.gave_up);
  // ~0.25 retries per call at a 20% failure rate; the budget never runs dry.
  EXPECT_GT(st.retries, kCalls * 15u / 100);
  EXPECT_LT(st.retries, kCalls * 35u / 100);
  EXPECT_EQ(st.budget_exhausted, 0u);
  EXPECT_GT(store->budget(), 400);
  // A call fails only after 5 failed attempts: 0.2^5 = 0.03%.
  EXPECT_EQ(static_cast<uint64_t>(failed), st.gave_up);
  EXPECT_LE(failed, 5);
  // Backoff slept 0.5 * 1 s per first retry, 0.5 * 2 s per second, ...
  EXPECT_GE(st.slept, milliseconds(500) * static_cast<int64_t>(st.retries));
}

}  // namespace
}  // namespace stowage
