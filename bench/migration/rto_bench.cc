// Recovery time of a moved PostgreSQL volume (docs/MIGRATION.md): how long
// from the Mount request on another host until PostgreSQL accepts
// connections, for a ~2 GB data directory (pgbench scale 130), on
//   1. a new host with an empty disk (everything comes from the repository);
//   2. a host with a stale copy (it ran the volume before; more pgbench ran
//      elsewhere since), which needs only what changed.
// Two simulated hosts on this machine (tests/e2e/host_harness.h), a real
// radosgw, PostgreSQL 15 in containers. Prints the numbers; asserts only that
// each step worked. Not run in CI.
//
// Usage (root): rto_bench [--gtest_filter=...]
//   RTO_SCALE      pgbench scale (default 130, ≈ 2 GB)
//   RTO_TXNS       transactions per client for the stale-copy round (default 5000, 4 clients)
// Build it in a Release tree for meaningful numbers.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "docker_harness.h"
#include "host_harness.h"
#include "pg_image.h"
#include "support/radosgw.h"

namespace stowage::test {
namespace {

constexpr const char* kPostgres = "stowage-rto-postgres:15";
RadosgwEnvironment* rgw_env = nullptr;

int env_int(const char* name, int dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : dflt;
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string docker_ok(Host& h, const std::string& args) {
  std::string out;
  int rc = h.docker(args, &out);
  EXPECT_EQ(rc, 0) << "host " << h.name() << ": docker " << args << "\n" << out;
  return out;
}

struct Recovery {
  double create_s = 0, run_to_ready_s = 0;
  double total() const { return create_s + run_to_ready_s; }
};

constexpr const char* kVolumeOpts = "-o uid=999 -o gid=999 -o mode=0700";

// Create (the restore starts here) and docker run (its Mount waits for the
// restore) until pg_isready answers.
Recovery recover_on(Host& h, const std::string& volume, const std::string& container) {
  Recovery r;
  auto t0 = std::chrono::steady_clock::now();
  docker_ok(h, std::string("volume create --driver stowage ") + kVolumeOpts + " " + volume);
  r.create_s = since(t0);
  auto t1 = std::chrono::steady_clock::now();
  PostgresContainer pg(h.engine(), kPostgres, container, volume);
  std::string why = pg.start();
  r.run_to_ready_s = since(t1);
  EXPECT_EQ(why, "");
  return r;
}

std::string du(const std::string& path) {
  std::string out;
  run_shell("du -sh " + path + " | cut -f1", &out);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

TEST(RtoBench, PostgresVolumeOnEmptyAndStaleHost) {
  ASSERT_TRUE(rgw_env->ok()) << rgw_env->error();
  const int scale = env_int("RTO_SCALE", 130);
  const int txns = env_int("RTO_TXNS", 5000);
  ASSERT_EQ(rgw_env->rgw().create_bucket("rto-bench"), "");
  const Radosgw& rgw = rgw_env->rgw();
  std::map<std::string, std::string> env = {{"AWS_ACCESS_KEY_ID", rgw.user().access_key},
                                            {"AWS_SECRET_ACCESS_KEY", rgw.user().secret_key},
                                            {"AWS_REGION", rgw.region()},
                                            {"STOWAGE_S3_ENDPOINT", rgw.endpoint()}};
  TempDir dir("stowage-rto-bench");
  auto host = [&](const std::string& name) {
    HostOptions o;
    o.name = name;
    o.dir = dir.path() + "/" + name;
    o.stowaged_args = {"--repository", "s3://rto-bench/stowage", "--host-id", "rto-" + name};
    o.stowaged_env = env;
    return std::make_unique<Host>(o);
  };
  auto a = host("a");
  auto b = host("b");
  ASSERT_TRUE(a->start());
  ASSERT_TRUE(b->start());
  ASSERT_TRUE(import_postgres_image(a->engine(), kPostgres));
  ASSERT_TRUE(import_postgres_image(b->engine(), kPostgres));

  // The dataset on A; its stop makes the final backup.
  auto t0 = std::chrono::steady_clock::now();
  docker_ok(*a, std::string("volume create --driver stowage ") + kVolumeOpts + " db");
  {
    PostgresContainer pg(a->engine(), kPostgres, "db-a1", "db");
    ASSERT_EQ(pg.start(), "");
    std::string out;
    ASSERT_EQ(pg.pgbench("-i -s " + std::to_string(scale) + " -q", &out), 0) << out;
    ASSERT_EQ(pg.sql("CHECKPOINT", &out), 0) << out;
    std::printf("dataset: pgbench -i -s %d in %.1f s, PGDATA %s\n", scale, since(t0),
                du(a->stowaged().state_root() + "/volumes/db/_data").c_str());
    auto ts = std::chrono::steady_clock::now();
    pg.stop_and_remove();
    ASSERT_TRUE(a->wait_final_backup("db", std::chrono::minutes(30)));
    std::printf("A: stop + final backup %.1f s\n", since(ts));
  }

  // 1. B has never had the volume.
  Recovery empty = recover_on(*b, "db", "db-b1");
  std::printf("RTO new host, empty disk:  %.1f s (create %.1f s, run until accepting connections %.1f s)\n",
              empty.total(), empty.create_s, empty.run_to_ready_s);
  {
    PostgresContainer pg(b->engine(), kPostgres, "db-b1", "db");
    pg.stop_and_remove();
    ASSERT_TRUE(b->wait_final_backup("db", std::chrono::minutes(30)));
  }

  // 2. A runs it again (its copy is current), writes more, stops; B's copy is
  // now stale by that much.
  {
    PostgresContainer pg(a->engine(), kPostgres, "db-a2", "db");
    auto t1 = std::chrono::steady_clock::now();
    ASSERT_EQ(pg.start(), "");
    std::printf("A again (its copy stale by B's session): %.1f s until accepting connections\n", since(t1));
    std::string out;
    auto tb = std::chrono::steady_clock::now();
    ASSERT_EQ(pg.pgbench("-n -c 4 -j 2 -t " + std::to_string(txns), &out), 0) << out;
    std::printf("A: pgbench -c 4 -t %d in %.1f s\n", txns, since(tb));
    auto ts = std::chrono::steady_clock::now();
    pg.stop_and_remove();
    ASSERT_TRUE(a->wait_final_backup("db", std::chrono::minutes(30)));
    std::printf("A: stop + final backup %.1f s\n", since(ts));
  }
  Recovery stale{};
  {
    auto t1 = std::chrono::steady_clock::now();
    PostgresContainer pg(b->engine(), kPostgres, "db-b2", "db");
    std::string why = pg.start();
    stale.run_to_ready_s = since(t1);
    EXPECT_EQ(why, "");
    EXPECT_EQ(pg.query("SELECT count(*) FROM pgbench_history"), std::to_string(4 * txns));
    pg.stop_and_remove();
  }
  std::printf("RTO host with stale copy:  %.1f s (run until accepting connections)\n", stale.total());
  std::fflush(stdout);
}

}  // namespace
}  // namespace stowage::test

int main(int argc, char** argv) {
  stowage::test::rgw_env = new stowage::test::RadosgwEnvironment;
  return stowage::test::run_e2e_tests(argc, argv, stowage::test::rgw_env);
}
