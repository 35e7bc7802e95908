// RetryingStore: a decorator that repeats failed ObjectStore calls after the
// AWS SDK "standard" retry mode: full-jitter exponential backoff capped at
// 20 s, a bounded number of attempts, and a shared retry budget (token bucket)
// so that an outage turns into fast failures instead of a retry storm. Only
// errors flagged retryable at their source are retried.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include "stowage/object_store.h"

namespace stowage {

struct RetryPolicy {
  int max_attempts = 5;  // total tries per call, including the first (AWS: 3)
  std::chrono::milliseconds base_delay{1000};  // backoff unit b in b*2^i
  std::chrono::milliseconds max_delay{20'000};  // cap of a single backoff
  // Token bucket shared by all calls through one decorator (AWS values).
  int budget_capacity = 500;
  int retry_cost = 5;           // taken per retry of a transient error
  int timeout_retry_cost = 10;  // taken per retry of kDeadlineExceeded
  int success_refund = 1;       // added by a call that succeeds first time
  // Called before each retry's backoff (metrics); must be thread-safe and quick.
  std::function<void()> on_retry;
};

// Time and randomness for the decorator, injected so tests run without real
// sleeps and with chosen jitter. Implementations must be thread-safe.
class RetryEnv {
 public:
  virtual ~RetryEnv() = default;
  virtual void sleep_for(std::chrono::milliseconds d) = 0;
  // Uniform in [0, 1).
  virtual double uniform01() = 0;
};

// Real sleeps, jitter from a randomly seeded generator.
std::shared_ptr<RetryEnv> real_retry_env();

// Counters for observing retry behaviour (tests, logs).
struct RetryStats {
  uint64_t calls = 0;
  uint64_t retries = 0;             // extra attempts made
  uint64_t budget_exhausted = 0;    // retries refused for lack of budget
  uint64_t gave_up = 0;             // calls that failed after max_attempts
  std::chrono::milliseconds slept{0};
};

// Backoff before retry number `retry` (1 = first retry): r * min(max_delay,
// base_delay * 2^(retry-1)) with r = env.uniform01(). Exposed for tests.
std::chrono::milliseconds retry_backoff(const RetryPolicy& policy, int retry, double r);

// The decorator also exposes its counters.
class RetryingStore : public ObjectStore {
 public:
  virtual RetryStats stats() const = 0;
  // Tokens currently in the budget.
  virtual int budget() const = 0;
};

// Wraps `inner`. A call is retried only when its status is retryable() and its
// code is not kNotFound, kAlreadyExists, kPermissionDenied or
// kInvalidArgument; while attempts remain; and while the budget has tokens.
// The last status is returned with "after N attempts" context. Caveat: a
// create_only put whose first attempt timed out after the server stored it
// comes back kAlreadyExists on retry; callers of create_only must treat that
// case (e.g. read the object back and check whether it is their own).
std::unique_ptr<RetryingStore> make_retrying_store(std::unique_ptr<ObjectStore> inner, RetryPolicy policy = {},
                                                  std::shared_ptr<RetryEnv> env = real_retry_env());

}  // namespace stowage
