// Volumes follow their container (docs/MIGRATION.md): two real stowaged
// daemons, each with its own state root and sockets, sharing one repository
// (file://, and s3:// on a real radosgw started by the test). Leases, restore on a new host, stale-copy restore, final backup
// on the last Unmount, forced takeover and fencing.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "daemon_harness.h"
#include "support/radosgw.h"

namespace stowage::test {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  return s;
}

RadosgwEnvironment* g_rgw = nullptr;  // owned by gtest

enum class Repo { kFile, kS3 };

class MigrationTest : public ::testing::TestWithParam<Repo> {
 protected:
  std::vector<std::string> args(const std::string& host) {
    return {"--repository", url_, "--host-id", host, "--lease-ttl-seconds", "4", "--lease-renew-seconds", "1"};
  }
  void SetUp() override {
    url_ = "file://" + dir_.path() + "/repo";
    if (GetParam() == Repo::kS3) {
      ASSERT_TRUE(g_rgw->ok()) << g_rgw->error();
      static int bucket = 0;
      const std::string name = "migration-" + std::to_string(++bucket);
      ASSERT_EQ(g_rgw->rgw().create_bucket(name), "");
      url_ = "s3://" + name + "/repo";
      const std::map<std::string, std::string> env = {{"STOWAGE_S3_ENDPOINT", g_rgw->rgw().endpoint()},
                                                      {"AWS_REGION", g_rgw->rgw().region()},
                                                      {"AWS_ACCESS_KEY_ID", g_rgw->rgw().user().access_key},
                                                      {"AWS_SECRET_ACCESS_KEY", g_rgw->rgw().user().secret_key}};
      a_.set_env(env);
      b_.set_env(env);
    }
    ASSERT_TRUE(a_.start(args("node-a")));
    ASSERT_TRUE(b_.start(args("node-b")));
  }
  static json inspect(Daemon& d, const std::string& name) {
    std::string out;
    if (d.stowctl("volume inspect --json " + name, &out) != 0) return json();
    return json::parse(out, nullptr, false);
  }
  // Waits (60 s at most) until `d` has made the final backup of `name` after
  // its last Unmount and released the lease.
  static bool final_backup_done(Daemon& d, const std::string& name) {
    return wait_until(
        [&] {
          json j = inspect(d, name);
          return j.is_object() && j["backup"]["lease"].is_null() && j["backup"]["last_backup"].is_object() &&
                 j["backup"]["last_backup"]["reason"] == "final";
        },
        60s);
  }
  static std::string mountpoint(PluginClient& c, const std::string& name, const std::string& id) {
    auto r = c.call("Mount", {{"Name", name}, {"ID", id}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json().value("Mountpoint", "");
  }

  TempDir dir_{"stowage-migration"};
  std::string url_;
  Daemon a_{dir_.path() + "/a"}, b_{dir_.path() + "/b"};
  PluginClient ca_{a_.plugin_socket()}, cb_{b_.plugin_socket()};
};

TEST_P(MigrationTest, VolumeMovesToAnotherHostWithItsExactBytes) {
  ASSERT_EQ(ca_.call("Create", {{"Name", "db"}}).status, 200);
  const std::string mpa = mountpoint(ca_, "db", "ctr-a");
  ASSERT_FALSE(mpa.empty());
  const std::string big = pattern(6u << 20, 1);
  write_file(mpa + "/big", big);
  ASSERT_EQ(::mkdir((mpa + "/sub").c_str(), 0750), 0);
  write_file(mpa + "/sub/small", "hello from node-a\n");

  // A backup while mounted (through the daemon, by volume name).
  std::string out;
  ASSERT_EQ(a_.stowctl("backup create db", &out), 0) << out;
  json ia = inspect(a_, "db");
  ASSERT_TRUE(ia["backup"]["last_backup"].is_object()) << ia.dump();
  EXPECT_TRUE(ia["backup"]["last_backup"]["ok"].get<bool>()) << ia.dump();
  EXPECT_EQ(ia["backup"]["lease"]["holder"], "node-a");

  // B, with empty state, learns of the volume: Create restores it in the
  // background, but Mount fails while A holds the lease, naming A and expiry.
  ASSERT_EQ(cb_.call("Create", {{"Name", "db"}}).status, 200);
  auto m = cb_.call("Mount", {{"Name", "db"}, {"ID", "ctr-b"}});
  EXPECT_NE(m.status, 200);
  const std::string err = m.json().value("Err", "");
  EXPECT_NE(err.find("node-a"), std::string::npos) << err;
  EXPECT_NE(err.find("expires"), std::string::npos) << err;

  // A keeps writing, then its container stops: final backup, lease released.
  std::string big2 = big;
  for (size_t i = 3u << 20; i < (3u << 20) + 4096; ++i) big2[i] = 'x';
  write_file(mpa + "/big", big2);
  write_file(mpa + "/sub/late", "written just before the unmount\n");
  ASSERT_EQ(ca_.call("Unmount", {{"Name", "db"}, {"ID", "ctr-a"}}).status, 200);
  ASSERT_TRUE(final_backup_done(a_, "db")) << inspect(a_, "db").dump() << read_file(a_.log_path());
  EXPECT_TRUE(inspect(a_, "db")["backup"]["last_backup"]["ok"].get<bool>());

  // Now B mounts: its copy (restored from the first backup) is brought up to
  // date fetching only what changed.
  const std::string mpb = mountpoint(cb_, "db", "ctr-b");
  ASSERT_FALSE(mpb.empty()) << read_file(b_.log_path());
  EXPECT_EQ(read_file(mpb + "/big"), big2);
  EXPECT_EQ(read_file(mpb + "/sub/small"), "hello from node-a\n");
  EXPECT_EQ(read_file(mpb + "/sub/late"), "written just before the unmount\n");
  struct stat st {};
  ASSERT_EQ(::stat((mpb + "/sub").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  json ib = inspect(b_, "db");
  const json& lr = ib["backup"]["last_restore"];
  ASSERT_TRUE(lr.is_object()) << ib.dump();
  EXPECT_GT(lr["blobs_reused"].get<uint64_t>(), 0u) << ib.dump();
  EXPECT_GE(lr["bytes_reused"].get<uint64_t>(), 4u << 20) << ib.dump();
  EXPECT_EQ(ib["backup"]["lease"]["holder"], "node-b");
  EXPECT_EQ(ib["backup"]["lease"]["generation"], 2);

  // And A cannot mount it back while B has it.
  auto back = ca_.call("Mount", {{"Name", "db"}, {"ID", "ctr-a2"}});
  EXPECT_NE(back.status, 200);
  EXPECT_NE(back.json().value("Err", "").find("node-b"), std::string::npos) << back.body;
}

TEST_P(MigrationTest, NewHostRestoresOnFirstMountWithoutCreate) {
  ASSERT_EQ(ca_.call("Create", {{"Name", "web"}}).status, 200);
  const std::string mpa = mountpoint(ca_, "web", "c1");
  write_file(mpa + "/index.html", pattern(100000, 5));
  ASSERT_EQ(ca_.call("Unmount", {{"Name", "web"}, {"ID", "c1"}}).status, 200);
  ASSERT_TRUE(wait_until([&] { return inspect(a_, "web")["backup"]["lease"].is_null(); }, 60s));
  // B has never heard of "web": Mount alone creates and restores it.
  const std::string mpb = mountpoint(cb_, "web", "c2");
  ASSERT_FALSE(mpb.empty()) << read_file(b_.log_path());
  EXPECT_EQ(read_file(mpb + "/index.html"), pattern(100000, 5));
  auto g = cb_.call("Get", {{"Name", "web"}});
  EXPECT_EQ(g.status, 200) << g.body;
}

TEST_P(MigrationTest, ForcedTakeoverFencesTheOldHolder) {
  ASSERT_EQ(ca_.call("Create", {{"Name", "pg"}}).status, 200);
  const std::string mpa = mountpoint(ca_, "pg", "old");
  write_file(mpa + "/data", pattern(200000, 9));
  std::string out;
  ASSERT_EQ(a_.stowctl("backup create pg", &out), 0) << out;

  // A is "unreachable" as far as B knows; B forces the issue at Create.
  auto cr = cb_.call("Create", {{"Name", "pg"}, {"Opts", {{"takeover", "force"}}}});
  ASSERT_EQ(cr.status, 200) << cr.body;
  const std::string mpb = mountpoint(cb_, "pg", "new");
  ASSERT_FALSE(mpb.empty()) << read_file(b_.log_path());
  EXPECT_EQ(read_file(mpb + "/data"), pattern(200000, 9));

  // A notices at its next renewal, says so, and refuses to back up.
  ASSERT_TRUE(wait_until([&] { return inspect(a_, "pg")["backup"]["fenced"].is_object(); }, 30s))
      << inspect(a_, "pg").dump();
  const std::string why = inspect(a_, "pg")["backup"]["fenced"]["reason"];
  EXPECT_NE(why.find("node-b"), std::string::npos) << why;
  EXPECT_NE(a_.stowctl("backup create pg", &out), 0);
  EXPECT_NE(out.find("fenced"), std::string::npos) << out;
  ASSERT_EQ(a_.stowctl("volume inspect pg", &out), 0);
  EXPECT_NE(out.find("FENCED"), std::string::npos) << out;
  // B backs up as the new holder.
  ASSERT_EQ(b_.stowctl("backup create pg", &out), 0) << out;

  // The CLI takes it back to A the same way.
  ASSERT_EQ(a_.stowctl("volume takeover pg", &out), 0) << out;
  EXPECT_NE(out.find("generation 3"), std::string::npos) << out;
  ASSERT_TRUE(wait_until([&] { return inspect(b_, "pg")["backup"]["fenced"].is_object(); }, 30s));
  EXPECT_TRUE(inspect(a_, "pg")["backup"]["fenced"].is_null());
}

TEST_P(MigrationTest, CrashedHolderTakesItsLeaseBackAndFinishesTheMove) {
  ASSERT_EQ(ca_.call("Create", {{"Name", "cache"}}).status, 200);
  const std::string mpa = mountpoint(ca_, "cache", "c1");
  write_file(mpa + "/f", pattern(300000, 3));
  a_.kill9();
  ASSERT_TRUE(a_.start());
  // The restarted daemon holds the lease of its still-mounted volume again
  // (same host id), so B is still kept out.
  ASSERT_TRUE(wait_until(
      [&] {
        json j = inspect(a_, "cache");
        return j.is_object() && j["backup"]["lease"].is_object();
      },
      30s))
      << inspect(a_, "cache").dump();
  EXPECT_GE(inspect(a_, "cache")["backup"]["lease"]["generation"].get<int>(), 2);
  ASSERT_EQ(cb_.call("Create", {{"Name", "cache"}}).status, 200);
  auto m = cb_.call("Mount", {{"Name", "cache"}, {"ID", "c2"}});
  EXPECT_NE(m.status, 200) << m.body;
  EXPECT_NE(m.json().value("Err", "").find("node-a"), std::string::npos) << m.body;
  // Docker's Unmount still arrives after the restart: final backup, release, move.
  ASSERT_EQ(ca_.call("Unmount", {{"Name", "cache"}, {"ID", "c1"}}).status, 200);
  ASSERT_TRUE(wait_until([&] { return inspect(a_, "cache")["backup"]["lease"].is_null(); }, 60s))
      << inspect(a_, "cache").dump();
  const std::string mpb = mountpoint(cb_, "cache", "c2");
  ASSERT_FALSE(mpb.empty());
  EXPECT_EQ(read_file(mpb + "/f"), pattern(300000, 3));
}

// `stowctl volume release` forgets mount IDs whose Unmount will never come
// (containers removed while stowaged was down). It acts as that last
// Unmount: the final backup saves what the container wrote, then the lease
// goes and the volume can move. (Before, the lease stayed held for good.)
TEST_P(MigrationTest, VolumeReleaseActsAsTheLastUnmount) {
  ASSERT_EQ(ca_.call("Create", {{"Name", "gone"}}).status, 200);
  const std::string mpa = mountpoint(ca_, "gone", "removed-container");
  write_file(mpa + "/f", "written by a container removed while stowaged was down\n");
  std::string out;
  ASSERT_EQ(a_.stowctl("volume release gone", &out), 0) << out;
  ASSERT_TRUE(final_backup_done(a_, "gone")) << inspect(a_, "gone").dump() << read_file(a_.log_path());
  ASSERT_EQ(cb_.call("Create", {{"Name", "gone"}}).status, 200);
  const std::string mpb = mountpoint(cb_, "gone", "c2");
  ASSERT_FALSE(mpb.empty()) << read_file(b_.log_path());
  EXPECT_EQ(read_file(mpb + "/f"), "written by a container removed while stowaged was down\n");
}

INSTANTIATE_TEST_SUITE_P(Repositories, MigrationTest, ::testing::Values(Repo::kFile, Repo::kS3),
                         [](const ::testing::TestParamInfo<Repo>& i) {
                           return i.param == Repo::kFile ? std::string("File") : std::string("Radosgw");
                         });

// stowaged starts while its repository does not answer (nothing listens on
// the endpoint): Docker's calls for local volumes are served, a volume that
// needs the repository is refused with the reason, and inspect shows it.
TEST(UnreachableRepository, DaemonStartsAndServesLocalVolumes) {
  TempDir dir{"stowage-unreachable"};
  // A port held bound but not listening: connecting is refused at once, and
  // no other process (the test's radosgw cluster) can take it meanwhile.
  const int held = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(held, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(held, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(held, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{held};
  Daemon d{dir.path()};
  d.set_env({{"STOWAGE_S3_ENDPOINT", "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port))},
             {"AWS_ACCESS_KEY_ID", "AKIAUNREACHABLE00001"},
             {"AWS_SECRET_ACCESS_KEY", "no-server-behind-this"}});
  ASSERT_TRUE(d.start({"--repository", "s3://nobody/repo", "--host-id", "node-a", "--mount-wait-seconds", "3"}));
  PluginClient c{d.plugin_socket()};
  ASSERT_EQ(c.call("Create", {{"Name", "scratch"}, {"Opts", {{"backup", "off"}}}}).status, 200);
  auto m = c.call("Mount", {{"Name", "scratch"}, {"ID", "ctr-1"}});
  EXPECT_EQ(m.status, 200) << m.body;
  EXPECT_FALSE(m.json().value("Mountpoint", "").empty()) << m.body;
  EXPECT_EQ(c.call("Get", {{"Name", "scratch"}}).status, 200);

  ASSERT_EQ(c.call("Create", {{"Name", "db"}}).status, 200);
  m = c.call("Mount", {{"Name", "db"}, {"ID", "ctr-2"}});
  EXPECT_NE(m.status, 200) << m.body;
  const std::string err = m.json().value("Err", "");
  EXPECT_NE(err.find("the backup repository has not been reached yet"), std::string::npos) << err;
  EXPECT_NE(err.find("keeps trying"), std::string::npos) << err;

  // Once the first attempt has failed (after the store's retries), errors
  // carry its reason and no call waits any more.
  ASSERT_TRUE(wait_until([&] { return read_file(d.log_path()).find("backup repository not reachable") != std::string::npos; },
                         60s))
      << read_file(d.log_path());
  m = c.call("Mount", {{"Name", "db"}, {"ID", "ctr-2"}});
  EXPECT_NE(m.status, 200) << m.body;
  EXPECT_NE(m.json().value("Err", "").find("Couldn't connect to server"), std::string::npos) << m.body;
  std::string out;
  ASSERT_EQ(d.stowctl("volume inspect db", &out), 0) << out;
  EXPECT_NE(out.find("NOT REACHED YET"), std::string::npos) << out;
  EXPECT_NE(out.find("Couldn't connect to server"), std::string::npos) << out;
  EXPECT_NE(d.stowctl("backup create db", &out), 0);
  EXPECT_NE(out.find("not been reached yet"), std::string::npos) << out;
  EXPECT_TRUE(d.running());
}

}  // namespace
}  // namespace stowage::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  stowage::test::g_rgw = new stowage::test::RadosgwEnvironment();
  ::testing::AddGlobalTestEnvironment(stowage::test::g_rgw);
  return RUN_ALL_TESTS();
}
