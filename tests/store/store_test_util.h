// Helpers shared by the store unit tests: a controllable RetryEnv and a store
// that answers from a script.
#pragma once

#include <deque>
#include <string>
#include <mutex>

#include "stowage/object_store.h"
#include "stowage/store_retry.h"

namespace stowage::test {

// "k<n>". Built with append(): GCC 12 at -O3 wrongly flags "k" + std::string
// as an overlapping memcpy (-Wrestrict).
inline std::string key_n(long n) { return std::string("k").append(std::to_string(n)); }

// Records requested sleeps instead of sleeping; jitter is a fixed value.
class FakeRetryEnv final : public RetryEnv {
 public:
  explicit FakeRetryEnv(double r = 0.5) : r_(r) {}
  void sleep_for(std::chrono::milliseconds d) override {
    std::lock_guard lock(mu_);
    sleeps_.push_back(d);
  }
  double uniform01() override { return r_; }
  std::vector<std::chrono::milliseconds> sleeps() {
    std::lock_guard lock(mu_);
    return sleeps_;
  }

 private:
  double r_;
  std::mutex mu_;
  std::vector<std::chrono::milliseconds> sleeps_;
};

// Every call pops the next scripted status (OK when the script is empty) and
// counts itself. Reads return "data".
class ScriptedStore final : public ObjectStore {
 public:
  void script(std::vector<Status> s) {
    std::lock_guard lock(mu_);
    script_.assign(s.begin(), s.end());
  }
  // Fail every call with `s` (an outage) until cleared with std::nullopt.
  void fail_always(std::optional<Status> s) {
    std::lock_guard lock(mu_);
    always_ = std::move(s);
  }
  int calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }

  Status put(std::string_view, std::string_view, PutOptions) override { return next(); }
  Result<Bytes> get(std::string_view, uint64_t, uint64_t) override {
    Status s = next();
    if (!s.is_ok()) return s;
    return Bytes("data");
  }
  Result<ObjectInfo> head(std::string_view key) override {
    Status s = next();
    if (!s.is_ok()) return s;
    return ObjectInfo{std::string(key), 4};
  }
  Result<std::vector<ObjectInfo>> list(std::string_view) override {
    Status s = next();
    if (!s.is_ok()) return s;
    return std::vector<ObjectInfo>{};
  }
  Status remove(std::string_view) override { return next(); }
  StoreCaps caps() const override { return {}; }
  std::string describe() const override { return "scripted"; }

 private:
  Status next() {
    std::lock_guard lock(mu_);
    ++calls_;
    if (always_) return *always_;
    if (script_.empty()) return Status::ok();
    Status s = script_.front();
    script_.pop_front();
    return s;
  }
  std::mutex mu_;
  std::deque<Status> script_;
  std::optional<Status> always_;
  int calls_ = 0;
};

}  // namespace stowage::test
