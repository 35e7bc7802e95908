// The ObjectStore conformance suite: one set of behaviours every store must
// show, instantiated for the file store, S3 on a real Ceph radosgw started by
// this binary, the fault-injecting store (20% failed calls) under the retry
// decorator, and a remote S3 endpoint named by STOWAGE_TEST_S3_* variables.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <random>
#include <set>
#include <thread>

#include "stowage/object_store.h"
#include "stowage/store_faults.h"
#include "stowage/store_file.h"
#include "stowage/store_retry.h"
#include "stowage/store_s3.h"
#include "support/radosgw.h"
#include "support/test_support.h"

namespace stowage {
namespace {

using test::RadosgwEnvironment;
using test::TempDir;

RadosgwEnvironment* g_rgw = nullptr;  // owned by gtest, set in main()
// Faults injected into the FaultyFileWithRetry instance over the whole run;
// checked at exit so that instance cannot pass by never failing.
std::atomic<uint64_t> g_injected_faults{0};
constexpr char kBucket[] = "stowage-conformance";

std::string env_or(const char* name, const char* fallback = "") {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// Deterministic, incompressible test bytes.
std::string pattern(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    std::memcpy(s.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return s;
}

// Jitter 0 and no real sleeping: the faulty instance runs at full speed.
class InstantRetryEnv final : public RetryEnv {
 public:
  void sleep_for(std::chrono::milliseconds) override {}
  double uniform01() override { return 0.5; }
};

// Makes a fresh, empty store namespace for one test and cleans it up.
struct StoreFactory {
  std::string name;
  // Returns the store, or sets *skip / *error.
  // `scratch` is an empty directory that lives as long as the store.
  // `on_teardown` may be set to a check run after the test.
  std::function<std::unique_ptr<ObjectStore>(const std::string& test_id, const TempDir& scratch, std::string* skip,
                                             std::string* error, std::function<void()>* on_teardown)>
      make;
};

S3Config radosgw_config(const std::string& prefix) {
  S3Config c;
  c.endpoint = g_rgw->rgw().endpoint();
  c.region = g_rgw->rgw().region();
  c.bucket = kBucket;
  c.prefix = prefix;
  c.access_key = g_rgw->rgw().user().access_key;
  c.secret_key = g_rgw->rgw().user().secret_key;
  return c;
}

// The remote endpoint named by STOWAGE_TEST_S3_* (credentials may also come
// from the standard AWS variables); every run works under its own prefix.
S3Config remote_config(const std::string& id) {
  S3Config c;
  c.endpoint = env_or("STOWAGE_TEST_S3_ENDPOINT");
  c.bucket = env_or("STOWAGE_TEST_S3_BUCKET");
  c.region = env_or("STOWAGE_TEST_S3_REGION", env_or("AWS_REGION", "us-east-1").c_str());
  c.access_key = env_or("STOWAGE_TEST_S3_ACCESS_KEY", env_or("AWS_ACCESS_KEY_ID").c_str());
  c.secret_key = env_or("STOWAGE_TEST_S3_SECRET_KEY", env_or("AWS_SECRET_ACCESS_KEY").c_str());
  c.session_token = env_or("AWS_SESSION_TOKEN");
  c.prefix = "stowage-conformance/" + std::to_string(::getpid()) + "/" + id;
  return c;
}

std::unique_ptr<ObjectStore> must(Result<std::unique_ptr<ObjectStore>> r, std::string* error) {
  if (!r.is_ok()) {
    *error = r.status().to_string();
    return nullptr;
  }
  return std::move(r).value();
}

// Wraps `inner` in 20% injected transient failures under the retry decorator,
// and arranges for a teardown check that the retries absorbed all of them.
std::unique_ptr<ObjectStore> faulty_with_retry(std::unique_ptr<ObjectStore> inner, std::function<void()>* on_teardown) {
  FaultPlan plan;
  plan.seed = 20240601;
  plan.fail_rate = 0.2;
  plan.fail_codes = {Code::kUnavailable, Code::kDeadlineExceeded};
  RetryPolicy policy;
  policy.max_attempts = 12;  // 0.2^12: no call in the suite should run out
  auto env = std::make_shared<InstantRetryEnv>();
  auto faulty = make_fault_injecting_store(std::move(inner), plan, env);
  FaultInjectingStore* faults = faulty.get();
  auto retrying = make_retrying_store(std::move(faulty), policy, env);
  RetryingStore* retries = retrying.get();
  *on_teardown = [faults, retries] {
    g_injected_faults += faults->stats().failed;
    EXPECT_EQ(retries->stats().gave_up, 0u);
    EXPECT_EQ(retries->stats().budget_exhausted, 0u);
  };
  return retrying;
}

std::vector<StoreFactory> factories() {
  return {
      {"File",
       [](const std::string&, const TempDir& scratch, std::string*, std::string* error, std::function<void()>*) {
         return must(open_file_store(scratch.path() + "/repo"), error);
       }},
      {"RadosgwS3",
       [](const std::string& id, const TempDir&, std::string*, std::string* error,
          std::function<void()>*) -> std::unique_ptr<ObjectStore> {
         if (!g_rgw->ok()) {
           *error = g_rgw->error();
           return nullptr;
         }
         return must(open_s3_store(radosgw_config("t/" + id)), error);
       }},
      {"FaultyFileWithRetry",
       [](const std::string&, const TempDir& scratch, std::string*, std::string* error,
          std::function<void()>* on_teardown) -> std::unique_ptr<ObjectStore> {
         auto file = must(open_file_store(scratch.path() + "/repo"), error);
         if (!file) return nullptr;
         return faulty_with_retry(std::move(file), on_teardown);
       }},
      {"FaultyRadosgwS3WithRetry",
       [](const std::string& id, const TempDir&, std::string*, std::string* error,
          std::function<void()>* on_teardown) -> std::unique_ptr<ObjectStore> {
         if (!g_rgw->ok()) {
           *error = g_rgw->error();
           return nullptr;
         }
         auto s3 = must(open_s3_store(radosgw_config("faulty/" + id)), error);
         if (!s3) return nullptr;
         return faulty_with_retry(std::move(s3), on_teardown);
       }},
      {"RemoteS3",
       [](const std::string& id, const TempDir&, std::string* skip, std::string* error,
          std::function<void()>*) -> std::unique_ptr<ObjectStore> {
         std::string endpoint = env_or("STOWAGE_TEST_S3_ENDPOINT");
         if (endpoint.empty()) {
           *skip = "STOWAGE_TEST_S3_ENDPOINT not set";
           return nullptr;
         }
         return must(open_s3_store(remote_config(id)), error);
       }},
  };
}

class ObjectStoreConformance : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string skip, error;
    store_ = GetParam().make(info->name(), scratch_, &skip, &error, &on_teardown_);
    if (!skip.empty()) {
      if (env_or("STOWAGE_TEST_DISALLOW_SKIP") == "1") FAIL() << skip << " and STOWAGE_TEST_DISALLOW_SKIP=1";
      GTEST_SKIP() << skip;
    }
    ASSERT_NE(store_, nullptr) << error;
    // Leftovers from an earlier, crashed run would break the listing tests.
    auto existing = store_->list("");
    ASSERT_TRUE(existing.is_ok()) << existing.status().to_string();
    for (const auto& o : *existing) ASSERT_TRUE(store_->remove(o.key).is_ok());
  }
  void TearDown() override {
    if (!store_) return;
    if (on_teardown_) on_teardown_();
    // Keeps the shared radosgw bucket small (memstore holds it in RAM).
    auto all = store_->list("");
    if (all.is_ok()) {
      for (const auto& o : *all) (void)store_->remove(o.key);
    }
  }

  void put_ok(const std::string& key, const std::string& data) {
    Status s = store_->put(key, data);
    ASSERT_TRUE(s.is_ok()) << key << ": " << s.to_string();
  }
  std::string get_ok(const std::string& key, uint64_t off = 0, uint64_t len = 0) {
    auto r = store_->get(key, off, len);
    EXPECT_TRUE(r.is_ok()) << key << ": " << r.status().to_string();
    return r.is_ok() ? *r : std::string("<error>");
  }
  std::vector<std::string> keys(const std::string& prefix) {
    auto r = store_->list(prefix);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    std::vector<std::string> out;
    if (r.is_ok()) {
      for (auto& o : *r) out.push_back(o.key);
    }
    return out;
  }

  TempDir scratch_{"stowage-store"};
  std::function<void()> on_teardown_;
  std::unique_ptr<ObjectStore> store_;
};

TEST_P(ObjectStoreConformance, PutGetHeadRoundTrip) {
  std::string data("binary\0data\xff\x01", 14);
  put_ok("dir/obj", data);
  EXPECT_EQ(get_ok("dir/obj"), data);
  auto h = store_->head("dir/obj");
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  EXPECT_EQ(h->key, "dir/obj");
  EXPECT_EQ(h->size, data.size());
}

TEST_P(ObjectStoreConformance, OverwriteReplaces) {
  put_ok("k", "first version, longer");
  put_ok("k", "second");
  EXPECT_EQ(get_ok("k"), "second");
  EXPECT_EQ(store_->head("k")->size, 6u);
}

TEST_P(ObjectStoreConformance, MissingKeyIsNotFoundAndNotRetryable) {
  auto g = store_->get("no/such/key");
  ASSERT_FALSE(g.is_ok());
  EXPECT_EQ(g.status().code(), Code::kNotFound) << g.status().to_string();
  EXPECT_FALSE(g.status().retryable());
  auto h = store_->head("no/such/key");
  ASSERT_FALSE(h.is_ok());
  EXPECT_EQ(h.status().code(), Code::kNotFound) << h.status().to_string();
  EXPECT_FALSE(h.status().retryable());
  EXPECT_TRUE(store_->remove("no/such/key").is_ok()) << "remove of a missing key is idempotent";
}

TEST_P(ObjectStoreConformance, RemoveDeletes) {
  put_ok("gone/a", "x");
  put_ok("gone/b", "y");
  ASSERT_TRUE(store_->remove("gone/a").is_ok());
  EXPECT_EQ(store_->get("gone/a").status().code(), Code::kNotFound);
  EXPECT_EQ(keys("gone/"), std::vector<std::string>{"gone/b"});
}

TEST_P(ObjectStoreConformance, CreateOnly) {
  ASSERT_TRUE(store_->put("lease", "mine", {.create_only = true}).is_ok());
  Status again = store_->put("lease", "theirs", {.create_only = true});
  EXPECT_EQ(again.code(), Code::kAlreadyExists) << again.to_string();
  EXPECT_FALSE(again.retryable());
  EXPECT_EQ(get_ok("lease"), "mine");
  // A plain put still overwrites.
  put_ok("lease", "replaced");
  EXPECT_EQ(get_ok("lease"), "replaced");
}

TEST_P(ObjectStoreConformance, CreateOnlyRaceHasOneWinner) {
  ASSERT_TRUE(store_->caps().conditional_create);
  constexpr int kThreads = 8;
  std::atomic<int> won{0}, lost{0}, other{0};
  std::vector<std::jthread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      Status s = store_->put("race", "writer " + std::to_string(i), {.create_only = true});
      (s.is_ok() ? won : s.code() == Code::kAlreadyExists ? lost : other)++;
    });
  }
  threads.clear();
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(lost.load(), kThreads - 1);
  EXPECT_EQ(other.load(), 0);
  EXPECT_TRUE(get_ok("race").starts_with("writer "));
}

TEST_P(ObjectStoreConformance, RangedGet) {
  const std::string data = "0123456789abcdef";
  put_ok("r", data);
  EXPECT_EQ(get_ok("r", 0, 4), "0123");
  EXPECT_EQ(get_ok("r", 10, 3), "abc");
  EXPECT_EQ(get_ok("r", 10), "abcdef");
  EXPECT_EQ(get_ok("r", 14, 100), "ef") << "a range running past the end returns what exists";
  EXPECT_EQ(get_ok("r", 16), "") << "offset == size is an empty read";
  auto past = store_->get("r", 17, 1);
  ASSERT_FALSE(past.is_ok());
  EXPECT_EQ(past.status().code(), Code::kInvalidArgument) << past.status().to_string();
  EXPECT_FALSE(past.status().retryable());
  auto far = store_->get("r", 1000);
  EXPECT_EQ(far.status().code(), Code::kInvalidArgument) << far.status().to_string();
}

TEST_P(ObjectStoreConformance, ZeroByteObject) {
  put_ok("empty", "");
  EXPECT_EQ(get_ok("empty"), "");
  EXPECT_EQ(get_ok("empty", 0, 10), "");
  auto h = store_->head("empty");
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  EXPECT_EQ(h->size, 0u);
  auto l = store_->list("empty");
  ASSERT_TRUE(l.is_ok());
  ASSERT_EQ(l->size(), 1u);
  EXPECT_EQ((*l)[0].size, 0u);
  ASSERT_TRUE(store_->put("empty-co", "", {.create_only = true}).is_ok());
  EXPECT_EQ(store_->put("empty-co", "", {.create_only = true}).code(), Code::kAlreadyExists);
}

TEST_P(ObjectStoreConformance, LargeObject64MiB) {
  const std::string data = pattern(64u << 20, 64);
  put_ok("big/64m", data);
  auto h = store_->head("big/64m");
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  EXPECT_EQ(h->size, data.size());
  std::string back = get_ok("big/64m");
  EXPECT_EQ(back.size(), data.size());
  EXPECT_TRUE(back == data) << "64 MiB object differs after round trip";
  // A window across what is a part boundary for S3 multipart (8 MiB parts).
  const uint64_t off = (8u << 20) - 100;
  EXPECT_TRUE(get_ok("big/64m", off, 300) == data.substr(off, 300));
  EXPECT_TRUE(get_ok("big/64m", data.size() - 5) == data.substr(data.size() - 5));
}

TEST_P(ObjectStoreConformance, HostileKeysRoundTrip) {
  const std::vector<std::string> hostile = {
      "sp ace/a b",   "plus+sign",        "eq=uals&amp",        "per%cent%2F%41", "tilde~/~x",
      "ünïcødé/日本語/🙂", "quote\"'<xml>&", "semi;colon,comma", "q?uery#frag",    "star*(paren)[br]{c}",
      "at@dollar$!",  "back\\slash",      "caret^`grave|pipe",  ".hidden/..dots", "trailing.dot.",
      "a/b/c/d/e/f/g/h/deep", std::string(200, 'L') + "/" + std::string(200, 'M'),
  };
  for (size_t i = 0; i < hostile.size(); ++i) put_ok(hostile[i], "v" + std::to_string(i));
  for (size_t i = 0; i < hostile.size(); ++i) {
    EXPECT_EQ(get_ok(hostile[i]), "v" + std::to_string(i)) << hostile[i];
    auto h = store_->head(hostile[i]);
    EXPECT_TRUE(h.is_ok()) << hostile[i] << ": " << h.status().to_string();
  }
  std::vector<std::string> sorted = hostile;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(keys(""), sorted);
  EXPECT_EQ(keys("ünïcødé/"), std::vector<std::string>{"ünïcødé/日本語/🙂"});
  EXPECT_EQ(keys("per%"), std::vector<std::string>{"per%cent%2F%41"});
  EXPECT_EQ(keys("plus+"), std::vector<std::string>{"plus+sign"});
  for (const auto& k : hostile) ASSERT_TRUE(store_->remove(k).is_ok()) << k;
  EXPECT_TRUE(keys("").empty());
}

TEST_P(ObjectStoreConformance, InvalidKeysAreRejected) {
  for (std::string bad : {std::string(""), std::string("/abs"), std::string("a/../b"), std::string(".."),
                          std::string("."), std::string("a//b"), std::string("dir/"), std::string("./x"),
                          std::string("nul\0byte", 8), std::string("new\nline"), std::string(1025, 'k'),
                          std::string(".stowage-tmp/x")}) {
    Status s = store_->put(bad, "x");
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << "'" << bad << "': " << s.to_string();
    EXPECT_FALSE(s.retryable());
    EXPECT_EQ(store_->get(bad).status().code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(keys("").empty());
}

TEST_P(ObjectStoreConformance, ListIsSortedAndPrefixExact) {
  for (const char* k : {"b/2", "a/1", "a/10", "a/2", "ab", "a/sub/x", "c"}) put_ok(k, k);
  EXPECT_EQ(keys(""), (std::vector<std::string>{"a/1", "a/10", "a/2", "a/sub/x", "ab", "b/2", "c"}));
  EXPECT_EQ(keys("a/"), (std::vector<std::string>{"a/1", "a/10", "a/2", "a/sub/x"}));
  EXPECT_EQ(keys("a"), (std::vector<std::string>{"a/1", "a/10", "a/2", "a/sub/x", "ab"}));
  EXPECT_EQ(keys("a/1"), (std::vector<std::string>{"a/1", "a/10"}));
  EXPECT_EQ(keys("a/s"), (std::vector<std::string>{"a/sub/x"}));
  EXPECT_TRUE(keys("zzz").empty());
  EXPECT_TRUE(keys("a/sub/x/").empty());
  auto l = store_->list("c");
  ASSERT_TRUE(l.is_ok());
  ASSERT_EQ(l->size(), 1u);
  EXPECT_EQ((*l)[0].size, 1u);
}

TEST_P(ObjectStoreConformance, ListMoreThan1000Keys) {
  constexpr int kKeys = 1100;
  constexpr int kThreads = 16;
  std::atomic<int> next{0}, failures{0};
  std::vector<std::jthread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < kKeys; i = next++) {
        char key[32];
        std::snprintf(key, sizeof key, "many/%05d", i);
        if (!store_->put(key, std::string(static_cast<size_t>(i % 7), 'x')).is_ok()) failures++;
      }
    });
  }
  threads.clear();
  ASSERT_EQ(failures.load(), 0);
  put_ok("manz", "outside the prefix");
  auto l = store_->list("many/");
  ASSERT_TRUE(l.is_ok()) << l.status().to_string();
  ASSERT_EQ(l->size(), static_cast<size_t>(kKeys));
  for (int i = 0; i < kKeys; ++i) {
    char key[32];
    std::snprintf(key, sizeof key, "many/%05d", i);
    ASSERT_EQ((*l)[i].key, key);
    ASSERT_EQ((*l)[i].size, static_cast<uint64_t>(i % 7));
  }
}

TEST_P(ObjectStoreConformance, ConcurrentWritersAndReaders) {
  constexpr int kThreads = 8, kPerThread = 20;
  std::atomic<int> bad{0};
  std::vector<std::jthread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string key = "conc/" + std::to_string(t) + "/" + std::to_string(i);
        std::string data = pattern(1000 + static_cast<size_t>(i) * 37, static_cast<uint64_t>(t * 1000 + i));
        if (!store_->put(key, data).is_ok()) bad++;
        auto g = store_->get(key);
        if (!g.is_ok() || *g != data) bad++;
      }
    });
  }
  threads.clear();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(keys("conc/").size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST_P(ObjectStoreConformance, DescribeHasNoSecrets) {
  std::string d = store_->describe();
  EXPECT_FALSE(d.empty());
  if (g_rgw->ok()) {
    EXPECT_EQ(d.find(g_rgw->rgw().user().secret_key), std::string::npos) << d;
  }
  const std::string secret = env_or("STOWAGE_TEST_S3_SECRET_KEY", env_or("AWS_SECRET_ACCESS_KEY").c_str());
  if (!secret.empty()) {
    EXPECT_EQ(d.find(secret), std::string::npos);
  }
}

INSTANTIATE_TEST_SUITE_P(Stores, ObjectStoreConformance, ::testing::ValuesIn(factories()),
                         [](const auto& info) { return info.param.name; });

// ---- S3-specific behaviour against radosgw (not every store has credentials).

class RadosgwS3 : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(g_rgw->ok()) << g_rgw->error(); }
  std::unique_ptr<ObjectStore> open(S3Config c) {
    auto r = open_s3_store(std::move(c));
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? std::move(r).value() : nullptr;
  }
};

TEST_F(RadosgwS3, WrongCredentialsArePermissionDenied) {
  S3Config c = radosgw_config("wrongcreds");
  c.secret_key = "not-the-secret";
  auto store = open(c);
  ASSERT_NE(store, nullptr);
  Status put = store->put("x", "y");
  EXPECT_EQ(put.code(), Code::kPermissionDenied) << put.to_string();
  EXPECT_FALSE(put.retryable());
  auto list = store->list("");
  EXPECT_EQ(list.status().code(), Code::kPermissionDenied) << list.status().to_string();
  c.access_key = "NOSUCHACCESSKEY";
  auto get = open(c)->get("x");
  EXPECT_EQ(get.status().code(), Code::kPermissionDenied) << get.status().to_string();
  // Wrapped in retries it fails just as fast: one attempt, no sleeping.
  auto retrying = make_retrying_store(open(c), {}, std::make_shared<InstantRetryEnv>());
  EXPECT_EQ(retrying->put("x", "y").code(), Code::kPermissionDenied);
  EXPECT_EQ(retrying->stats().retries, 0u);
}

TEST(RemoteS3, WrongCredentialsArePermissionDenied) {
  if (env_or("STOWAGE_TEST_S3_ENDPOINT").empty()) {
    if (env_or("STOWAGE_TEST_DISALLOW_SKIP") == "1") FAIL() << "STOWAGE_TEST_S3_ENDPOINT not set";
    GTEST_SKIP() << "STOWAGE_TEST_S3_ENDPOINT not set";
  }
  S3Config c = remote_config("wrongcreds");
  c.secret_key += "-wrong";
  auto store = open_s3_store(c);
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  Status put = (*store)->put("x", "y");
  EXPECT_EQ(put.code(), Code::kPermissionDenied) << put.to_string();
  EXPECT_FALSE(put.retryable());
  EXPECT_EQ((*store)->list("").status().code(), Code::kPermissionDenied);
}

TEST_F(RadosgwS3, MissingBucketIsNotFound) {
  S3Config c = radosgw_config("");
  c.bucket = "no-such-bucket-here";
  auto store = open(c);
  EXPECT_EQ(store->list("").status().code(), Code::kNotFound);
  EXPECT_EQ(store->put("k", "v").code(), Code::kNotFound);
  EXPECT_EQ(store->remove("k").code(), Code::kNotFound) << "a missing bucket is not an idempotent delete";
}

TEST_F(RadosgwS3, SmallPagesAndSmallPartsStillRoundTrip) {
  S3Config c = radosgw_config("smallparts");
  c.list_page_size = 7;
  c.multipart_threshold = 5u << 20;
  c.part_size = 1;  // clamped up to the 5 MiB minimum
  c.max_in_flight = 2;
  auto store = open(c);
  auto clear = [&] {
    auto all = store->list("");
    ASSERT_TRUE(all.is_ok()) << all.status().to_string();
    for (const auto& o : *all) ASSERT_TRUE(store->remove(o.key).is_ok());
  };
  clear();
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(store->put("p/" + std::to_string(100 + i), "v").is_ok());
  auto l = store->list("p/");
  ASSERT_TRUE(l.is_ok()) << l.status().to_string();
  ASSERT_EQ(l->size(), 30u);
  EXPECT_EQ(l->front().key, "p/100");
  EXPECT_EQ(l->back().key, "p/129");
  // 11 MiB + 3: three parts, the last one tiny.
  const std::string data = pattern((11u << 20) + 3, 11);
  ASSERT_TRUE(store->put("multi", data).is_ok());
  EXPECT_EQ(store->head("multi")->size, data.size());
  EXPECT_TRUE(*store->get("multi") == data);
  // create_only never goes multipart, so If-None-Match is honoured.
  EXPECT_EQ(store->put("multi", data, {.create_only = true}).code(), Code::kAlreadyExists);
  ASSERT_TRUE(store->put("multi-co", data, {.create_only = true}).is_ok());
  EXPECT_EQ(store->put("multi-co", data, {.create_only = true}).code(), Code::kAlreadyExists);
  clear();
}

// TCP sockets (any state, TIME_WAIT included) with `port` at either end, from
// /proc/net/tcp: every connection ever opened to radosgw lingers there for a
// minute, so the count rises by one per new connection.
int sockets_on_port(int port) {
  std::string table = test::read_file("/proc/net/tcp") + test::read_file("/proc/net/tcp6");
  char hex[8];
  std::snprintf(hex, sizeof hex, ":%04X ", port);
  int n = 0;
  for (size_t pos = 0; (pos = table.find(hex, pos)) != std::string::npos; ++pos) ++n;
  return n;
}

TEST_F(RadosgwS3, ConnectionsAreReusedAndInFlightIsBounded) {
  const std::string& ep = g_rgw->rgw().endpoint();
  const int port = std::stoi(ep.substr(ep.rfind(':') + 1));
  S3Config c = radosgw_config("reuse");
  c.max_in_flight = 3;
  auto store = open(c);
  ASSERT_TRUE(store->put("obj", "data").is_ok());
  const int before = sockets_on_port(port);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(store->head("obj").is_ok());
  // Sequential requests ride the one pooled connection.
  EXPECT_LE(sockets_on_port(port) - before, 2 * 1) << "sequential requests opened new connections";
  // 16 threads, but never more than 3 requests (so 3 connections) at once.
  std::atomic<int> bad{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < 16; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < 20; ++i) bad += store->get("obj").is_ok() ? 0 : 1;
      });
    }
  }
  EXPECT_EQ(bad.load(), 0);
  // Each connection is counted once per end (client and server) on loopback.
  EXPECT_LE(sockets_on_port(port) - before, 2 * 3);
  ASSERT_TRUE(store->remove("obj").is_ok());
}

TEST_F(RadosgwS3, ConnectionRefusedIsRetryableUnavailable) {
  S3Config c = radosgw_config("");
  c.endpoint = "http://127.0.0.1:" + std::to_string(test::free_tcp_port());
  c.connect_timeout = std::chrono::milliseconds(2000);
  auto store = open(c);
  auto g = store->get("k");
  EXPECT_EQ(g.status().code(), Code::kUnavailable) << g.status().to_string();
  EXPECT_TRUE(g.status().retryable());

  // A whole outage behind the retry decorator: each call gives up after its
  // attempts, and the budget caps the extra load at 100 retries in total.
  auto retrying = make_retrying_store(open(c), RetryPolicy{}, std::make_shared<InstantRetryEnv>());
  for (int i = 0; i < 200; ++i) {
    auto r = retrying->head(std::string("k").append(std::to_string(i)));
    ASSERT_EQ(r.status().code(), Code::kUnavailable) << r.status().to_string();
  }
  EXPECT_EQ(retrying->stats().retries, 100u);
  EXPECT_EQ(retrying->budget(), 0);
  EXPECT_GT(retrying->stats().budget_exhausted, 150u);
}

TEST_F(RadosgwS3, OpenObjectStoreReadsEnvironment) {
  // open_object_store() is the production entry point; give it the fixture's
  // endpoint through the documented variables.
  ::setenv("STOWAGE_S3_ENDPOINT", g_rgw->rgw().endpoint().c_str(), 1);
  ::setenv("AWS_ACCESS_KEY_ID", g_rgw->rgw().user().access_key.c_str(), 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", g_rgw->rgw().user().secret_key.c_str(), 1);
  ::setenv("AWS_REGION", "us-east-1", 1);
  auto store = open_object_store(std::string("s3://") + kBucket + "/viaurl/");
  ::unsetenv("STOWAGE_S3_ENDPOINT");
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ::unsetenv("AWS_REGION");
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  ASSERT_TRUE((*store)->put("hello world", "hi").is_ok());
  EXPECT_EQ(*(*store)->get("hello world"), "hi");
  // The prefix really is a prefix inside the bucket.
  auto raw = open(radosgw_config(""));
  EXPECT_EQ(*raw->get("viaurl/hello world"), "hi");
  ASSERT_TRUE((*store)->remove("hello world").is_ok());
}

}  // namespace
}  // namespace stowage

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  stowage::g_rgw = new stowage::test::RadosgwEnvironment();
  ::testing::AddGlobalTestEnvironment(stowage::g_rgw);
  // Create the bucket once, right after the environment starts.
  struct BucketEnv : ::testing::Environment {
    void SetUp() override {
      if (!stowage::g_rgw->ok()) return;
      std::string err = stowage::g_rgw->rgw().create_bucket(stowage::kBucket);
      if (!err.empty()) ADD_FAILURE() << err;
    }
  };
  ::testing::AddGlobalTestEnvironment(new BucketEnv);
  struct FaultsLandedEnv : ::testing::Environment {
    void TearDown() override {
      const bool ran = ::testing::GTEST_FLAG(filter).find("Faulty") != std::string::npos ||
                       ::testing::GTEST_FLAG(filter) == "*";
      if (ran && stowage::g_injected_faults == 0) ADD_FAILURE() << "Faulty*WithRetry instances: no fault was injected";
      std::printf("Faulty*WithRetry instances: %llu faults injected and retried\n",
                  static_cast<unsigned long long>(stowage::g_injected_faults.load()));
    }
  };
  ::testing::AddGlobalTestEnvironment(new FaultsLandedEnv);
  return RUN_ALL_TESTS();
}
