// End-to-end across two Docker hosts on one machine (docs/MIGRATION.md): each
// Host (host_harness.h) is its own mount namespace with its own dockerd and
// stowaged; they share only a bucket on a real Ceph radosgw. PostgreSQL 15
// runs in containers made from this machine's Debian packages (pg_image.h).
//
// - Hosts see only their own plugin socket and volumes.
// - PostgreSQL on a stowage volume: pgbench, data kept across containers.
// - Planned move: PostgreSQL on A, stop, the same volume name on B starts with
//   exactly the committed transactions (RPO 0).
// - Crash: A dies without a final backup; B is refused naming A, takes over
//   with takeover=force and gets A's last completed backup; PostgreSQL
//   recovers and answers.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "docker_harness.h"
#include "host_harness.h"
#include "pg_image.h"
#include "support/radosgw.h"

namespace stowage::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kBusybox = "stowage-two-host-busybox:1";
constexpr const char* kPostgres = "stowage-two-host-postgres:15";

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

RadosgwEnvironment* rgw_env = nullptr;

// The hosts of one test, torn down (and checked for leftovers) at its end.
class TwoHostE2E : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = std::make_unique<TempDir>("stowage-two-host"); }
  void TearDown() override {
    // Host destructors stop everything; the scratch directory goes last.
    hosts_.clear();
    dir_.reset();
  }

  // A host with no repository.
  Host& add_host(const std::string& name, std::vector<std::string> stowaged_args = {},
                 std::map<std::string, std::string> env = {}) {
    HostOptions o;
    o.name = name;
    o.dir = dir_->path() + "/" + name;
    o.stowaged_args = std::move(stowaged_args);
    o.stowaged_env = std::move(env);
    hosts_.push_back(std::make_unique<Host>(o));
    return *hosts_.back();
  }

  // Runs docker on `h`, expecting `expect_rc`; trimmed output.
  static std::string run(Host& h, const std::string& args, int expect_rc = 0) {
    std::string out;
    int rc = h.docker(args, &out);
    EXPECT_EQ(rc, expect_rc) << "host " << h.name() << ": docker " << args << "\n" << out;
    return trim(out);
  }

  std::unique_ptr<TempDir> dir_;
  std::vector<std::unique_ptr<Host>> hosts_;
};

std::vector<std::string> plugin_dir_entries(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) names.push_back(e.path().filename().string());
  return names;
}

TEST_F(TwoHostE2E, HostsSeeOnlyTheirOwnPluginSocketAndVolumes) {
  Host& a = add_host("a");
  Host& b = add_host("b");
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  ASSERT_TRUE(a.engine().import_busybox(kBusybox));
  ASSERT_TRUE(b.engine().import_busybox(kBusybox));

  // Three different mount namespaces: the test's, A's, B's.
  std::string mine = mount_ns_of(::getpid());
  EXPECT_NE(a.mount_ns(), mine);
  EXPECT_NE(b.mount_ns(), mine);
  EXPECT_NE(a.mount_ns(), b.mount_ns());
  // Each host's /run/docker/plugins holds exactly its own stowaged's socket;
  // the test's own (isolate_plugin_dir's tmpfs) holds none.
  struct stat sa{}, sb{}, in_a{}, in_b{};
  ASSERT_EQ(::stat(a.plugin_socket().c_str(), &sa), 0);
  ASSERT_EQ(::stat(b.plugin_socket().c_str(), &sb), 0);
  EXPECT_TRUE(S_ISSOCK(sa.st_mode));
  EXPECT_NE(sa.st_ino, sb.st_ino);
  std::string a_view = "/proc/" + std::to_string(a.ns_pid()) + "/root/run/docker/plugins";
  std::string b_view = "/proc/" + std::to_string(b.ns_pid()) + "/root/run/docker/plugins";
  ASSERT_EQ(::stat((a_view + "/stowage.sock").c_str(), &in_a), 0);
  ASSERT_EQ(::stat((b_view + "/stowage.sock").c_str(), &in_b), 0);
  EXPECT_EQ(in_a.st_ino, sa.st_ino);
  EXPECT_EQ(in_b.st_ino, sb.st_ino);
  EXPECT_EQ(plugin_dir_entries(a_view), std::vector<std::string>{"stowage.sock"});
  EXPECT_EQ(plugin_dir_entries("/run/docker/plugins"), std::vector<std::string>{});

  // A volume made through A's Docker exists on A only.
  run(a, "volume create --driver stowage iso-vol");
  run(a, std::string("run --rm -v iso-vol:/data ") + kBusybox + " sh -c 'echo from-a > /data/f'");
  EXPECT_EQ(run(a, "volume ls -q --filter driver=stowage"), "iso-vol");
  EXPECT_EQ(run(b, "volume ls -q --filter driver=stowage"), "");
  std::string out;
  ASSERT_EQ(a.stowctl("volume ls --json", &out), 0) << out;
  EXPECT_NE(out.find("iso-vol"), std::string::npos) << out;
  ASSERT_EQ(b.stowctl("volume ls --json", &out), 0) << out;
  EXPECT_EQ(out.find("iso-vol"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(a.stowaged().state_root() + "/volumes/iso-vol/_data/f"));
  EXPECT_FALSE(fs::exists(b.stowaged().state_root() + "/volumes/iso-vol"));

  // The same name on B is B's own, empty volume.
  run(b, "volume create --driver stowage iso-vol");
  EXPECT_EQ(run(b, std::string("run --rm -v iso-vol:/data ") + kBusybox + " ls /data"), "");
  EXPECT_EQ(run(a, std::string("run --rm -v iso-vol:/data ") + kBusybox + " cat /data/f"), "from-a");

  // A's teardown leaves nothing of A running, and B goes on.
  pid_t a_dockerd = -1;
  {
    std::string pid = trim(read_file(a.dir() + "/docker/dockerd.pid"));
    if (!pid.empty()) a_dockerd = static_cast<pid_t>(std::stol(pid));
  }
  EXPECT_FALSE(a.processes().empty());
  a.teardown();
  EXPECT_EQ(a.processes(), std::vector<pid_t>{});
  ASSERT_GT(a_dockerd, 0);
  EXPECT_NE(::kill(a_dockerd, 0), 0) << "A's dockerd outlived its host";
  EXPECT_FALSE(socket_accepts(a.plugin_socket()));
  EXPECT_EQ(run(b, "volume ls -q --filter driver=stowage"), "iso-vol");
}

// Creates the PGDATA volume PostgreSQL wants: owned by postgres, mode 0700.
std::string pg_volume_opts() {
  return "-o uid=" + std::to_string(kPostgresUid) + " -o gid=" + std::to_string(kPostgresUid) + " -o mode=0700";
}

// Rows in pgbench_history = transactions pgbench committed (each TPC-B-like
// transaction inserts one row); the balance sums must agree with them.
struct PgState {
  std::string history_rows, accounts_sum, history_sum;
  bool operator==(const PgState&) const = default;
};

PgState pg_state(PostgresContainer& pg) {
  PgState s;
  s.history_rows = pg.query("SELECT count(*) FROM pgbench_history");
  s.accounts_sum = pg.query("SELECT sum(abalance) FROM pgbench_accounts");
  s.history_sum = pg.query("SELECT coalesce(sum(delta), 0) FROM pgbench_history");
  return s;
}

std::ostream& operator<<(std::ostream& os, const PgState& s) {
  return os << "{history_rows=" << s.history_rows << " accounts_sum=" << s.accounts_sum
            << " history_sum=" << s.history_sum << "}";
}

void run_pgbench(PostgresContainer& pg, const std::string& args) {
  std::string out;
  int rc = pg.pgbench(args, &out);
  ASSERT_EQ(rc, 0) << "pgbench " << args << "\n" << out;
}

TEST_F(TwoHostE2E, PostgresOnStowageVolumeRunsPgbenchAndKeepsDataAcrossContainers) {
  Host& a = add_host("a");
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(import_postgres_image(a.engine(), kPostgres));
  run(a, "volume create --driver stowage " + pg_volume_opts() + " pg-single");

  PostgresContainer pg1(a.engine(), kPostgres, "pg-single-1", "pg-single");
  std::string why = pg1.start();
  ASSERT_EQ(why, "");
  EXPECT_EQ(pg1.query("SHOW server_version_num").substr(0, 2), "15");
  EXPECT_EQ(pg1.query("SHOW data_directory"), "/var/lib/postgresql/data");
  run_pgbench(pg1, "-i -s 1 -q");
  run_pgbench(pg1, "-n -c 2 -t 40");
  PgState before = pg_state(pg1);
  EXPECT_EQ(before.history_rows, "80");
  EXPECT_EQ(before.accounts_sum, before.history_sum);
  // The data directory is the stowage volume's, on A's disk.
  std::string data = a.stowaged().state_root() + "/volumes/pg-single/_data";
  EXPECT_EQ(trim(read_file(data + "/PG_VERSION")), "15");
  EXPECT_EQ(pg1.stop_and_remove(), 0);
  std::string out;
  ASSERT_EQ(a.stowctl("volume inspect pg-single --json", &out), 0) << out;
  EXPECT_EQ(json::parse(out)["mount_ids"], json::array()) << out;

  // A new container on the same volume finds every committed transaction.
  PostgresContainer pg2(a.engine(), kPostgres, "pg-single-2", "pg-single");
  why = pg2.start();
  ASSERT_EQ(why, "");
  EXPECT_EQ(pg_state(pg2), before);
  EXPECT_EQ(pg2.logs().find("initialised"), std::string::npos) << "the second container ran initdb again";
  run_pgbench(pg2, "-n -c 1 -t 10");
  EXPECT_EQ(pg2.query("SELECT count(*) FROM pgbench_history"), "90");
  EXPECT_EQ(pg2.stop_and_remove(), 0);
}


// --- Two hosts sharing a repository -----------------------------------------

// Lease settings short enough for a test (the crash test does not wait for
// expiry: it forces the takeover), long enough that a loaded machine never
// makes a live holder miss its renewals.
constexpr int kLeaseTtlSeconds = 20;
constexpr int kLeaseRenewSeconds = 5;

std::string host_id(const std::string& name) { return "twohost-" + name; }

// j[key] when it is a string, else "" (absent, null, or not an object).
std::string string_at(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return "";
  return j[key].get<std::string>();
}

class TwoHostRepoE2E : public TwoHostE2E {
 protected:
  void SetUp() override {
    TwoHostE2E::SetUp();
    ASSERT_TRUE(rgw_env->ok()) << rgw_env->error();
    // A bucket per test: no test sees another's leases or snapshots.
    bucket_ = "two-host-" + std::to_string(::getpid()) + "-" + std::to_string(++buckets_);
    ASSERT_EQ(rgw_env->rgw().create_bucket(bucket_), "");
    a_ = &repo_host("a");
    b_ = &repo_host("b");
    ASSERT_TRUE(a_->start());
    ASSERT_TRUE(b_->start());
    if (postgres_) {
      ASSERT_TRUE(import_postgres_image(a_->engine(), kPostgres));
      ASSERT_TRUE(import_postgres_image(b_->engine(), kPostgres));
    } else {
      ASSERT_TRUE(a_->engine().import_busybox(kBusybox));
      ASSERT_TRUE(b_->engine().import_busybox(kBusybox));
    }
  }

  // A host whose stowaged uses the shared repository (docs/CONFIG.md).
  Host& repo_host(const std::string& name) {
    const Radosgw& rgw = rgw_env->rgw();
    return add_host(name,
                    {"--repository", "s3://" + bucket_ + "/stowage", "--s3-endpoint", rgw.endpoint(), "--s3-region",
                     rgw.region(), "--host-id", host_id(name), "--lease-ttl-seconds", std::to_string(lease_ttl_s_),
                     "--lease-renew-seconds", std::to_string(lease_renew_s_)},
                    {{"AWS_ACCESS_KEY_ID", rgw.user().access_key}, {"AWS_SECRET_ACCESS_KEY", rgw.user().secret_key}});
  }

  // On `h`: a PGDATA volume `volume` (extra create options `opts`), PostgreSQL
  // in container `container`, pgbench -i -s 1 and 2 × `txns` transactions.
  std::unique_ptr<PostgresContainer> postgres_with_pgbench(Host& h, const std::string& volume,
                                                           const std::string& opts, const std::string& container,
                                                           int txns) {
    run(h, "volume create --driver stowage " + pg_volume_opts() + " " + opts + " " + volume);
    auto pg = std::make_unique<PostgresContainer>(h.engine(), kPostgres, container, volume);
    std::string why = pg->start();
    EXPECT_EQ(why, "");
    if (!why.empty()) return nullptr;
    run_pgbench(*pg, "-i -s 1 -q");
    run_pgbench(*pg, "-n -c 2 -t " + std::to_string(txns));
    return pg;
  }

  // Waits until `h` has made the final backup of `volume` and released its
  // lease; fails the test if that does not happen.
  bool wait_final_backup(Host& h, const std::string& volume) {
    json st;
    bool done = h.wait_final_backup(volume, std::chrono::seconds(120), &st);
    EXPECT_TRUE(done) << "host " << h.name() << " did not finish the final backup of " << volume
                      << " and release its lease: " << st.dump() << logs();
    return done;
  }

  // Both stowaged logs, for failure messages.
  std::string logs() {
    std::string s;
    for (auto& h : hosts_) s += "\n--- stowaged log of host " + h->name() + ":\n" + read_file(h->stowaged().log_path());
    return s;
  }

  std::string bucket_;
  static inline int buckets_ = 0;
  Host* a_ = nullptr;  // both up after SetUp, with the PostgreSQL image (or busybox)
  Host* b_ = nullptr;
  // Set by subclasses' constructors.
  int lease_ttl_s_ = kLeaseTtlSeconds, lease_renew_s_ = kLeaseRenewSeconds;
  bool postgres_ = true;
};

// Busybox only, and a short lease: for what needs no database.
class TwoHostBusyboxE2E : public TwoHostRepoE2E {
 protected:
  TwoHostBusyboxE2E() {
    postgres_ = false;
    lease_ttl_s_ = 6;
    lease_renew_s_ = 2;
  }
};

// The volume root's owner and mode travel in the snapshot (its "root" record):
// B creates the volume with default options and still gets A's root.
TEST_F(TwoHostBusyboxE2E, VolumeOnlyInTheRepositoryComesUpOnBWithItsDataOwnerAndMode) {
  Host& a = *a_;
  Host& b = *b_;
  run(a, "volume create --driver stowage -o uid=1000 -o gid=1001 -o mode=0750 carried");
  run(a, std::string("run --rm -v carried:/data ") + kBusybox +
             " sh -c 'mkdir /data/sub && echo from-a > /data/sub/f && chown 1002:1003 /data/sub/f'");
  ASSERT_TRUE(wait_final_backup(a, "carried"));
  EXPECT_EQ(run(b, "volume ls -q --filter driver=stowage"), "");

  // B names the volume without options (docker run with the stowage driver):
  // it comes from the repository as A left it, the volume's root included.
  EXPECT_EQ(run(b, std::string("run --rm --volume-driver stowage -v carried:/data ") + kBusybox +
                       " sh -c 'stat -c \"%u:%g %a\" /data /data/sub/f; cat /data/sub/f'"),
            "1000:1001 750\n1002:1003 644\nfrom-a")
      << logs();
  EXPECT_EQ(run(b, "volume ls -q --filter driver=stowage"), "carried");
}

TEST_F(TwoHostBusyboxE2E, CrashedHolderKeepsBOutUntilItsLeaseExpires) {
  Host& a = *a_;
  Host& b = *b_;
  run(a, "volume create --driver stowage expiring");
  run(a, std::string("run -d --name holder -v expiring:/data ") + kBusybox +
             " sh -c 'echo v1 > /data/f; sync; sleep 600'");
  ASSERT_TRUE(wait_until([&] { return read_file(a.stowaged().state_root() + "/volumes/expiring/_data/f") == "v1\n"; },
                         std::chrono::seconds(30)));
  std::string out;
  ASSERT_EQ(a.stowctl("backup create expiring", &out), 0) << out << logs();
  a.crash();

  // B's first look: the lease is A's and B has not yet seen it go silent.
  const std::string cat = std::string(" --volume-driver stowage -v expiring:/data ") + kBusybox + " cat /data/f";
  EXPECT_NE(b.docker("run --rm" + cat, &out), 0) << out;
  EXPECT_NE(out.find("in use on host '" + host_id("a") + "'"), std::string::npos) << out << logs();
  // Once A's lease has gone unrenewed for its ttl, B takes it without force.
  bool taken = wait_until(
      [&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        return b.docker("run --rm" + cat, &out) == 0;
      },
      std::chrono::seconds(120));
  ASSERT_TRUE(taken) << out << logs();
  EXPECT_EQ(trim(out), "v1");
  json st = b.backup_status("expiring");
  EXPECT_TRUE(st.is_object() && st["lease"].is_object()) << st.dump();
}

TEST_F(TwoHostRepoE2E, PlannedMoveStartsPostgresOnBWithEveryCommittedTransaction) {
  Host& a = *a_;
  Host& b = *b_;

  auto pa = postgres_with_pgbench(a, "pgmove", "", "pg-on-a", 50);
  ASSERT_NE(pa, nullptr);
  // Nothing writes any more: this is every committed transaction.
  PgState on_a = pg_state(*pa);
  EXPECT_EQ(on_a.history_rows, "100");
  EXPECT_EQ(on_a.accounts_sum, on_a.history_sum);
  // Not on B: B's Docker and stowaged know only their own volumes.
  EXPECT_EQ(run(b, "volume ls -q --filter driver=stowage"), "");

  // The planned stop: PostgreSQL shuts down (checkpoint), the container goes,
  // and A's last Unmount starts the final backup and the lease release.
  ASSERT_EQ(pa->stop_and_remove(), 0);
  ASSERT_TRUE(wait_final_backup(a, "pgmove"));

  // The same volume on B, created as on A (as the same compose file would):
  // Create restores it from the repository, the first Mount takes the lease
  // and waits for the restore.
  run(b, "volume create --driver stowage " + pg_volume_opts() + " pgmove");
  PostgresContainer pb(b.engine(), kPostgres, "pg-on-b", "pgmove");
  ASSERT_EQ(pb.start(), "") << logs();
  EXPECT_EQ(pg_state(pb), on_a) << "RPO 0: B must have exactly what A committed";
  EXPECT_EQ(pb.logs().find("initialised"), std::string::npos) << "B ran initdb: the volume came up empty";
  run_pgbench(pb, "-n -c 1 -t 10");
  EXPECT_EQ(pb.query("SELECT count(*) FROM pgbench_history"), "110");

  // B holds the volume now: A, with its old copy, is refused, naming B.
  std::string out;
  EXPECT_NE(a.docker(std::string("run --rm -v pgmove:/data ") + kPostgres + " true", &out), 0) << out;
  EXPECT_NE(out.find("in use on host '" + host_id("b") + "'"), std::string::npos) << out;
  ASSERT_EQ(pb.stop_and_remove(), 0);
}

// A → B → A → B: the last move lands on a host with a stale copy of the
// volume (its own data from the first visit); it must catch up with exactly
// what A committed since, not keep what it had.
// On A's second visit, the final backup started by Docker's copy-up Unmount
// is still running when PostgreSQL stops: the agent must back up again
// before it lets the lease go (it once released it on the older backup).
TEST_F(TwoHostRepoE2E, MoveBackToAHostWithAStaleCopyBringsEveryCommittedTransaction) {
  Host& a = *a_;
  Host& b = *b_;
  auto pa = postgres_with_pgbench(a, "pgstale", "", "pg-on-a", 10);
  ASSERT_NE(pa, nullptr);
  ASSERT_EQ(pa->stop_and_remove(), 0);
  ASSERT_TRUE(wait_final_backup(a, "pgstale"));

  run(b, "volume create --driver stowage " + pg_volume_opts() + " pgstale");
  PostgresContainer pb(b.engine(), kPostgres, "pg-on-b", "pgstale");
  ASSERT_EQ(pb.start(), "") << logs();
  EXPECT_EQ(pb.query("SELECT count(*) FROM pgbench_history"), "20");
  ASSERT_EQ(pb.stop_and_remove(), 0);
  ASSERT_TRUE(wait_final_backup(b, "pgstale"));

  // Back on A (its copy is older than B's final backup), more work, stop.
  PostgresContainer pa2(a.engine(), kPostgres, "pg-on-a-2", "pgstale");
  ASSERT_EQ(pa2.start(), "") << logs();
  EXPECT_EQ(pa2.query("SELECT count(*) FROM pgbench_history"), "20");
  run_pgbench(pa2, "-n -c 2 -t 25");
  PgState on_a = pg_state(pa2);
  EXPECT_EQ(on_a.history_rows, "70");
  ASSERT_EQ(pa2.stop_and_remove(), 0);
  ASSERT_TRUE(wait_final_backup(a, "pgstale"));

  // B still has its copy from the first visit: it must not be what it serves.
  PostgresContainer pb2(b.engine(), kPostgres, "pg-on-b-2", "pgstale");
  ASSERT_EQ(pb2.start(), "") << logs();
  EXPECT_EQ(pg_state(pb2), on_a) << "B served its stale copy instead of A's last state" << logs();
  ASSERT_EQ(pb2.stop_and_remove(), 0);
}

// Now plus `ahead`, in the daemon's time format.
std::string rfc3339_now(std::chrono::seconds ahead = std::chrono::seconds(0)) {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ahead.count();
  tm t{};
  ::gmtime_r(&ts.tv_sec, &t);
  char buf[64];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  std::snprintf(buf + n, sizeof buf - n, ".%09ldZ", ts.tv_nsec);
  return buf;
}

TEST_F(TwoHostRepoE2E, CrashedHostIsRefusedUntilForcedThenBRunsItsLastScheduledBackup) {
  Host& a = *a_;
  Host& b = *b_;

  // Scheduled backups every minute; quiesce=pause: each copies a paused
  // PostgreSQL, a crash-consistent image.
  auto pa = postgres_with_pgbench(a, "pgcrash", "-o quiesce=pause -o backup=every:1m", "pg-on-a", 30);
  ASSERT_NE(pa, nullptr);
  PgState at_backup = pg_state(*pa);
  EXPECT_EQ(at_backup.history_rows, "60");
  // Nothing writes now: the next scheduled run that starts from here on holds
  // exactly this state (times are RFC 3339 in UTC, fixed width, so they
  // compare as strings; both hosts share this machine's clock).
  // The next run must also be far enough away that none starts before A dies
  // (it would back up the work below, or part of it); else wait for one more.
  const std::string quiet_since = rfc3339_now();
  json st, sched;
  auto next_run_far = [&] {
    std::string out;
    if (a.stowctl("schedule ls --json", &out) != 0) return false;
    sched = json::parse(out, nullptr, false);  // one object per scheduled volume
    if (!sched.is_array()) return false;
    for (const json& r : sched) {
      if (r.value("volume", "") != "pgcrash") continue;
      return !r.value("running", true) && r["next_run"].is_string() &&
             r["next_run"].get<std::string>() >= rfc3339_now(std::chrono::seconds(20));
    }
    return false;
  };
  ASSERT_TRUE(wait_until(
      [&] {
        // In this order: no run can start between the two reads.
        if (!next_run_far()) return false;
        st = a.backup_status("pgcrash");
        const json& lb = st.is_object() ? st["last_backup"] : json();
        return lb.is_object() && lb.value("ok", false) && lb.value("reason", "") == "scheduled" &&
               lb.value("time", "") >= quiet_since;
      },
      std::chrono::seconds(210)))
      << st.dump() << "\n" << sched.dump() << logs();
  const std::string last_backup = string_at(st["last_backup"], "snapshot");
  EXPECT_FALSE(last_backup.empty()) << st.dump();
  std::string out;
  // Work after the last backup: lost with A.
  run_pgbench(*pa, "-n -c 2 -t 20");
  EXPECT_EQ(pa->query("SELECT count(*) FROM pgbench_history"), "100");

  // A dies: stowaged first, so no final backup and no lease release.
  a.crash();
  EXPECT_EQ(a.processes(), std::vector<pid_t>{});

  // B is refused, with an error naming A.
  const std::string mount =
      " --mount type=volume,src=pgcrash,dst=/var/lib/postgresql/data,volume-driver=stowage " + std::string(kPostgres);
  EXPECT_NE(b.docker("run --rm" + mount + " true", &out), 0) << out;
  EXPECT_NE(out.find("in use on host '" + host_id("a") + "'"), std::string::npos) << out << logs();

  // The operator forces the takeover. Docker does not send Create again for
  // a volume it knows (so its options could not reach stowaged): drop B's
  // never-mounted record first.
  run(b, "volume rm pgcrash");
  run(b, "volume create --driver stowage " + pg_volume_opts() + " -o takeover=force pgcrash");
  PostgresContainer pb(b.engine(), kPostgres, "pg-on-b", "pgcrash");
  ASSERT_EQ(pb.start(), "") << logs();
  // Exactly A's last scheduled backup; PostgreSQL recovered from the paused image.
  EXPECT_EQ(pg_state(pb), at_backup);
  EXPECT_EQ(pb.logs().find("initialised"), std::string::npos) << "B ran initdb: the volume came up empty";
  st = b.backup_status("pgcrash");
  // B's data came from that snapshot (ids may be shown shortened). Not
  // synced_snapshot: the final backup after Docker's copy-up Unmount on B may
  // already have replaced it with B's own (same content).
  const std::string restored = st.is_object() ? string_at(st["last_restore"], "snapshot") : "";
  EXPECT_TRUE(!restored.empty() && !last_backup.empty() &&
              (restored.rfind(last_backup, 0) == 0 || last_backup.rfind(restored, 0) == 0))
      << "B restored " << restored << ", A's last backup was " << last_backup << "\n" << st.dump() << logs();
  run_pgbench(pb, "-n -c 1 -t 5");
  EXPECT_EQ(pb.query("SELECT count(*) FROM pgbench_history"), "65");
  ASSERT_EQ(pb.stop_and_remove(), 0);
}

}  // namespace
}  // namespace stowage::test

int main(int argc, char** argv) {
  stowage::test::rgw_env = new stowage::test::RadosgwEnvironment;
  return stowage::test::run_e2e_tests(argc, argv, stowage::test::rgw_env);
}
