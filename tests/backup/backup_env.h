// Shared setup for the pipeline tests: a file-store repository in a temp dir,
// a store decorator that fails puts of chosen keys (crash points), a
// controllable clock, and backup/restore shorthands.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "stowage/backup_pipeline.h"
#include "stowage/repository.h"
#include "stowage/restore.h"
#include "stowage/store_file.h"
#include "backup/tree_fixture.h"
#include "support/test_support.h"

namespace stowage::test {

class ManualClock : public Clock {
 public:
  explicit ManualClock(int64_t now) : now_(now) {}
  int64_t now_ns() const override { return now_.load(); }
  void set(int64_t ns) { now_ = ns; }
  void advance(int64_t ns) { now_ += ns; }

 private:
  std::atomic<int64_t> now_;
};

// Fails every put whose key starts with `prefix` once `allow` such puts have
// succeeded, as a crash at that point would (the process never gets further).
class CrashingStore : public ObjectStore {
 public:
  CrashingStore(std::unique_ptr<ObjectStore> inner, std::string prefix, int allow)
      : inner_(std::move(inner)), prefix_(std::move(prefix)), allow_(allow) {}
  Status put(std::string_view key, std::string_view data, PutOptions opts) override {
    if (key.substr(0, prefix_.size()) == prefix_) {
      std::lock_guard lk(mu_);
      if (allow_-- <= 0) return Status::io_error("injected crash before put " + std::string(key));
    }
    return inner_->put(key, data, opts);
  }
  Result<Bytes> get(std::string_view key, uint64_t offset, uint64_t length) override {
    return inner_->get(key, offset, length);
  }
  Result<ObjectInfo> head(std::string_view key) override { return inner_->head(key); }
  Result<std::vector<ObjectInfo>> list(std::string_view prefix) override { return inner_->list(prefix); }
  Status remove(std::string_view key) override { return inner_->remove(key); }
  StoreCaps caps() const override { return inner_->caps(); }
  std::string describe() const override { return "crashing(" + inner_->describe() + ")"; }

 private:
  std::unique_ptr<ObjectStore> inner_;
  std::string prefix_;
  std::mutex mu_;
  int allow_;
};

inline RepositoryConfig small_pack_config() {
  RepositoryConfig c;
  c.id = sha256("pipeline test repository");
  c.created_ns = 1;
  c.pack_size = 1u << 20;  // the minimum: several packs from little data
  return c;
}

inline std::unique_ptr<ObjectStore> must_file_store(const std::string& root) {
  auto s = open_file_store(root);
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
  return std::move(s).value();
}

inline std::unique_ptr<Repository> must_open(std::unique_ptr<ObjectStore> store) {
  auto r = Repository::open(std::move(store));
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r.is_ok() ? std::move(r).value() : nullptr;
}

inline BackupOptions backup_opts(const std::string& source, const std::string& name, int64_t time_ns = 0) {
  BackupOptions o;
  o.source = source;
  o.name = name;
  o.hostname = "test-host";
  o.workers = 2;
  if (time_ns) o.clock = std::make_shared<ManualClock>(time_ns);
  o.log = [](std::string_view) {};
  return o;
}

inline RestoreOptions restore_opts(const std::string& target) {
  RestoreOptions o;
  o.target = target;
  o.workers = 3;
  o.log = [](std::string_view) {};
  return o;
}

// Restores `id` into the new directory `target` and expects it to equal `expected`.
inline void expect_restores_to(Repository& repo, const Hash256& id, const std::string& target,
                               const std::string& expected) {
  auto r = run_restore(repo, id, restore_opts(target));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const auto diffs = diff_trees(expected, target);
  EXPECT_TRUE(diffs.empty()) << ::testing::PrintToString(diffs);
}

}  // namespace stowage::test
