// RetryingStore: AWS "standard" retry mode over any ObjectStore.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <random>
#include <thread>

#include "stowage/store_deadline.h"
#include "stowage/store_retry.h"

namespace stowage {
namespace {

class RealRetryEnv final : public RetryEnv {
 public:
  void sleep_for(std::chrono::milliseconds d) override { std::this_thread::sleep_for(d); }
  double uniform01() override {
    std::lock_guard lock(mu_);
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  }

 private:
  std::mutex mu_;
  std::mt19937_64 rng_{std::random_device{}()};
};

// Permanent by nature, whatever flag the source set: retrying cannot help and
// would hide the real answer (restic #1628 retried a missing file for hours).
bool never_retry(Code c) {
  return c == Code::kNotFound || c == Code::kAlreadyExists || c == Code::kPermissionDenied ||
         c == Code::kInvalidArgument;
}

class RetryingStoreImpl final : public RetryingStore {
 public:
  RetryingStoreImpl(std::unique_ptr<ObjectStore> inner, RetryPolicy policy, std::shared_ptr<RetryEnv> env)
      : inner_(std::move(inner)), policy_(policy), env_(std::move(env)), tokens_(policy.budget_capacity) {
    policy_.max_attempts = std::max(1, policy_.max_attempts);
  }

  Status put(std::string_view key, std::string_view data, PutOptions opts) override {
    return run([&] { return inner_->put(key, data, opts); });
  }
  Result<Bytes> get(std::string_view key, uint64_t offset, uint64_t length) override {
    return run([&] { return inner_->get(key, offset, length); });
  }
  Result<ObjectInfo> head(std::string_view key) override {
    return run([&] { return inner_->head(key); });
  }
  Result<std::vector<ObjectInfo>> list(std::string_view prefix) override {
    return run([&] { return inner_->list(prefix); });
  }
  Status remove(std::string_view key) override {
    return run([&] { return inner_->remove(key); });
  }
  StoreCaps caps() const override { return inner_->caps(); }
  std::string describe() const override { return inner_->describe(); }

  RetryStats stats() const override {
    std::lock_guard lock(mu_);
    return stats_;
  }
  int budget() const override {
    std::lock_guard lock(mu_);
    return tokens_;
  }

 private:
  template <typename Fn>
  auto run(Fn fn) -> decltype(fn()) {
    {
      std::lock_guard lock(mu_);
      ++stats_.calls;
    }
    int last_cost = 0;  // tokens taken for the latest retry, refunded on success
    for (int attempt = 1;; ++attempt) {
      auto result = fn();
      const Status& st = status_of(result);
      if (st.is_ok()) {
        std::lock_guard lock(mu_);
        tokens_ = std::min(policy_.budget_capacity, tokens_ + (attempt == 1 ? policy_.success_refund : last_cost));
        return result;
      }
      if (!st.retryable() || never_retry(st.code())) return result;
      if (attempt >= policy_.max_attempts) {
        std::lock_guard lock(mu_);
        ++stats_.gave_up;
        return Status(st.code(), "after " + std::to_string(attempt) + " attempts: " + st.message(), true);
      }
      const int cost = st.code() == Code::kDeadlineExceeded ? policy_.timeout_retry_cost : policy_.retry_cost;
      {
        std::lock_guard lock(mu_);
        if (tokens_ < cost) {
          ++stats_.budget_exhausted;
          return Status(st.code(), "retry budget exhausted after " + std::to_string(attempt) + " attempts: " +
                                       st.message(),
                        true);
        }
        tokens_ -= cost;
        ++stats_.retries;
      }
      last_cost = cost;
      if (policy_.on_retry) policy_.on_retry();
      auto delay = retry_backoff(policy_, attempt, env_->uniform01());
      if (auto deadline = StoreDeadline::current();
          deadline && std::chrono::steady_clock::now() + delay >= *deadline) {
        return Status(Code::kDeadlineExceeded,
                      "out of time after " + std::to_string(attempt) + " attempts: " + st.message(), true);
      }
      env_->sleep_for(delay);
      std::lock_guard lock(mu_);
      stats_.slept += delay;
    }
  }

  const std::unique_ptr<ObjectStore> inner_;
  RetryPolicy policy_;
  const std::shared_ptr<RetryEnv> env_;
  mutable std::mutex mu_;
  int tokens_;
  RetryStats stats_;
};

}  // namespace

std::shared_ptr<RetryEnv> real_retry_env() { return std::make_shared<RealRetryEnv>(); }

std::chrono::milliseconds retry_backoff(const RetryPolicy& policy, int retry, double r) {
  // 2^(retry-1) overflows nothing here: the cap applies long before 2^63.
  const double exp = std::ldexp(1.0, std::clamp(retry - 1, 0, 62));
  const double ceiling = std::min(static_cast<double>(policy.max_delay.count()),
                                  static_cast<double>(policy.base_delay.count()) * exp);
  return std::chrono::milliseconds(static_cast<int64_t>(std::clamp(r, 0.0, 1.0) * ceiling));
}

std::unique_ptr<RetryingStore> make_retrying_store(std::unique_ptr<ObjectStore> inner, RetryPolicy policy,
                                                  std::shared_ptr<RetryEnv> env) {
  return std::make_unique<RetryingStoreImpl>(std::move(inner), policy, std::move(env));
}

}  // namespace stowage
