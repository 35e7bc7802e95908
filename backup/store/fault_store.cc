// FaultInjectingStore: seeded, reproducible misbehaviour over any ObjectStore.
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "stowage/store_deadline.h"
#include "stowage/store_faults.h"

namespace stowage {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

// A deterministic stream of random numbers for one call.
class CallRng {
 public:
  explicit CallRng(uint64_t seed) : state_(seed) {}
  uint64_t next() { return state_ = splitmix64(state_); }
  double uniform01() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  bool chance(double p) { return uniform01() < p; }

 private:
  uint64_t state_;
};

class FaultStore final : public FaultInjectingStore {
 public:
  FaultStore(std::unique_ptr<ObjectStore> inner, FaultPlan plan, std::shared_ptr<RetryEnv> env)
      : inner_(std::move(inner)), plan_(std::move(plan)), env_(std::move(env)) {
    if (plan_.fail_codes.empty()) plan_.fail_codes = {Code::kUnavailable};
  }

  Status put(std::string_view key, std::string_view data, PutOptions opts) override {
    CallRng rng = begin(StoreOp::kPut, key);
    if (!applies(StoreOp::kPut)) return inner_->put(key, data, opts);
    STOWAGE_RETURN_IF_ERROR(maybe_fail(rng, "put", key));
    if (rng.chance(plan_.lose_write_rate)) {
      count(&FaultStats::lost_writes);
      return Status::ok();
    }
    return inner_->put(key, data, opts);
  }

  Result<Bytes> get(std::string_view key, uint64_t offset, uint64_t length) override {
    CallRng rng = begin(StoreOp::kGet, key);
    if (!applies(StoreOp::kGet)) return inner_->get(key, offset, length);
    STOWAGE_RETURN_IF_ERROR(maybe_fail(rng, "get", key));
    bool truncate = rng.chance(plan_.truncate_read_rate);
    bool corrupt = rng.chance(plan_.corrupt_read_rate);
    uint64_t pick = rng.next();
    auto r = inner_->get(key, offset, length);
    if (!r.is_ok() || r->empty()) return r;
    if (truncate) {
      count(&FaultStats::truncated);
      r->resize(pick % r->size());
    } else if (corrupt) {
      count(&FaultStats::corrupted);
      (*r)[pick % r->size()] ^= static_cast<char>(1u << (pick >> 61));
    }
    return r;
  }

  Result<ObjectInfo> head(std::string_view key) override {
    CallRng rng = begin(StoreOp::kHead, key);
    if (applies(StoreOp::kHead)) STOWAGE_RETURN_IF_ERROR(maybe_fail(rng, "head", key));
    return inner_->head(key);
  }

  Result<std::vector<ObjectInfo>> list(std::string_view prefix) override {
    CallRng rng = begin(StoreOp::kList, prefix);
    if (applies(StoreOp::kList)) STOWAGE_RETURN_IF_ERROR(maybe_fail(rng, "list", prefix));
    return inner_->list(prefix);
  }

  Status remove(std::string_view key) override {
    CallRng rng = begin(StoreOp::kRemove, key);
    if (applies(StoreOp::kRemove)) STOWAGE_RETURN_IF_ERROR(maybe_fail(rng, "remove", key));
    return inner_->remove(key);
  }

  StoreCaps caps() const override { return inner_->caps(); }
  std::string describe() const override { return "faulty(" + inner_->describe() + ")"; }

  FaultStats stats() const override {
    std::lock_guard lock(mu_);
    return stats_;
  }

 private:
  bool applies(StoreOp op) const { return (plan_.ops & static_cast<unsigned>(op)) != 0; }

  // Seeds this call's randomness from (seed, op, key, n-th call of op on key).
  CallRng begin(StoreOp op, std::string_view key) {
    std::lock_guard lock(mu_);
    ++stats_.calls;
    uint64_t n = calls_[{static_cast<unsigned>(op), std::string(key)}]++;
    return CallRng(splitmix64(plan_.seed ^ splitmix64(fnv1a(key) ^ (static_cast<uint64_t>(op) << 56) ^ n)));
  }

  void count(uint64_t FaultStats::*field) {
    std::lock_guard lock(mu_);
    ++(stats_.*field);
  }

  Status maybe_fail(CallRng& rng, std::string_view op, std::string_view key) {
    if (plan_.delay_rate > 0 && rng.chance(plan_.delay_rate)) {
      count(&FaultStats::delayed);
      const std::chrono::milliseconds delay(
          static_cast<int64_t>(rng.uniform01() * static_cast<double>(plan_.max_delay.count())));
      // Like a network store, a delayed call ends at the calling thread's
      // deadline (StoreDeadline) without reaching the inner store.
      if (const auto left = StoreDeadline::left(); left && delay >= *left) {
        env_->sleep_for(std::chrono::duration_cast<std::chrono::milliseconds>(*left));
        return Status::deadline_exceeded("injected delay past the deadline: " + std::string(op) + " '" +
                                         std::string(key) + "'");
      }
      env_->sleep_for(delay);
    }
    if (!rng.chance(plan_.fail_rate)) return Status::ok();
    count(&FaultStats::failed);
    Code code = plan_.fail_codes[rng.next() % plan_.fail_codes.size()];
    bool retryable = code == Code::kUnavailable || code == Code::kDeadlineExceeded;
    return Status(code, "injected fault: " + std::string(op) + " '" + std::string(key) + "'", retryable);
  }

  const std::unique_ptr<ObjectStore> inner_;
  FaultPlan plan_;
  const std::shared_ptr<RetryEnv> env_;
  mutable std::mutex mu_;
  std::map<std::tuple<unsigned, std::string>, uint64_t> calls_;
  FaultStats stats_;
};

}  // namespace

std::unique_ptr<FaultInjectingStore> make_fault_injecting_store(std::unique_ptr<ObjectStore> inner, FaultPlan plan,
                                                               std::shared_ptr<RetryEnv> env) {
  return std::make_unique<FaultStore>(std::move(inner), std::move(plan), std::move(env));
}

}  // namespace stowage
