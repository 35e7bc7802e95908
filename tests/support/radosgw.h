// A throwaway Ceph cluster with an S3 endpoint, for tests: one monitor, one
// in-memory (memstore) OSD and one radosgw, all on 127.0.0.1 with free ports,
// their own ceph.conf, data and logs under a caller-given directory, and no
// cephx. Starts in a few seconds; every process dies with the test process
// (PR_SET_PDEATHSIG, so construct it on a thread that outlives the tests,
// e.g. in a ::testing::Environment or SetUpTestSuite).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "support/test_support.h"

namespace stowage::test {

struct S3User {
  std::string uid;
  std::string access_key;
  std::string secret_key;
};

class Radosgw {
 public:
  Radosgw() = default;
  ~Radosgw() { stop(); }
  Radosgw(const Radosgw&) = delete;
  Radosgw& operator=(const Radosgw&) = delete;

  // Starts the cluster under `dir` (created if missing; its contents are
  // replaced) and creates the default user. Returns "" on success, otherwise
  // what failed with the tail of the relevant log. Bounded to ~90 s.
  std::string start(const std::string& dir);
  // Kills every process (SIGKILL: memstore keeps nothing worth a clean stop).
  void stop();

  // "http://127.0.0.1:PORT", valid after a successful start().
  const std::string& endpoint() const { return endpoint_; }
  // radosgw accepts any SigV4 region; tests use this one.
  std::string region() const { return "us-east-1"; }
  const S3User& user() const { return user_; }
  // ceph.conf of the cluster (for ceph / radosgw-admin commands).
  const std::string& conf_path() const { return conf_; }

  // Adds another S3 user. "" on success, otherwise an error message.
  std::string create_user(const S3User& user);
  // Creates `bucket` owned by the default user (idempotent). "" or an error.
  std::string create_bucket(const std::string& bucket);

 private:
  std::string fail(const std::string& what, const std::string& log);

  std::string dir_, conf_, endpoint_;
  S3User user_{"stowage-test", "STOWAGETESTACCESSKEY", "stowage-test-secret-key"};
  std::unique_ptr<Subprocess> mon_, osd_, rgw_;
};

// One Radosgw per test binary: started in SetUp, stopped in TearDown. Register
// with ::testing::AddGlobalTestEnvironment and keep the pointer; tests then
// ASSERT_TRUE(env->ok()) << env->error() before using env->rgw().
class RadosgwEnvironment : public ::testing::Environment {
 public:
  void SetUp() override;
  void TearDown() override;
  bool ok() const { return error_.empty() && started_; }
  const std::string& error() const { return error_; }
  Radosgw& rgw() { return rgw_; }

 private:
  std::unique_ptr<TempDir> dir_;
  Radosgw rgw_;
  std::string error_;
  bool started_ = false;
};

}  // namespace stowage::test
