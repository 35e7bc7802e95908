// Integration tests: a real stowaged process, spoken to over its sockets
// exactly as Docker and stowctl do.
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <future>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "daemon_harness.h"

namespace stowage::test {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(daemon_.start()); }
  void TearDown() override {
    // Whatever a test did, the daemon must still be alive and answering.
    EXPECT_TRUE(daemon_.running()) << read_file(daemon_.log_path());
  }
  HttpResult call(const std::string& ep, const json& body) { return client_.call(ep, body); }

  TempDir dir_{"stowage-it"};
  Daemon daemon_{dir_.path()};
  PluginClient client_{daemon_.plugin_socket()};
};

void expect_err(const HttpResult& r, int status, const std::string& fragment) {
  EXPECT_EQ(r.status, status) << r.body;
  json j = r.json();
  ASSERT_TRUE(j.is_object()) << r.body;
  ASSERT_TRUE(j["Err"].is_string()) << r.body;
  EXPECT_NE(j["Err"].get<std::string>().find(fragment), std::string::npos)
      << "expected '" << fragment << "' in " << r.body;
}

TEST_F(DaemonTest, HandshakeAndCapabilities) {
  auto a = client_.post("/Plugin.Activate", "");
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.json(), json::parse(R"({"Implements":["VolumeDriver"]})"));
  EXPECT_EQ(a.content_type, "application/vnd.docker.plugins.v1.2+json");
  auto c = client_.post("/VolumeDriver.Capabilities", "");
  EXPECT_EQ(c.json(), json::parse(R"({"Capabilities":{"Scope":"local"}})"));
}

TEST_F(DaemonTest, FullLifecycleWithExactShapes) {
  auto cr = call("Create", {{"Name", "db"}, {"Opts", {{"uid", "999"}, {"gid", "998"}, {"mode", "0700"}}}});
  ASSERT_EQ(cr.status, 200) << cr.body;
  EXPECT_EQ(cr.json(), json::parse(R"({"Err":""})"));

  auto g = call("Get", {{"Name", "db"}});
  ASSERT_EQ(g.status, 200) << g.body;
  json v = g.json()["Volume"];
  EXPECT_EQ(v["Name"], "db");
  std::string mp = v["Mountpoint"];
  EXPECT_EQ(mp, daemon_.state_root() + "/volumes/db/_data");
  std::regex rfc3339(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z)");
  EXPECT_TRUE(std::regex_match(v["CreatedAt"].get<std::string>(), rfc3339)) << v["CreatedAt"];
  EXPECT_EQ(v["Status"]["mounts"], 0);
  EXPECT_EQ(v["Status"]["options"]["uid"], "999");
  EXPECT_TRUE(v["Status"]["bytes_used"].is_number());
  struct stat st {};
  ASSERT_EQ(::stat(mp.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 999u);
  EXPECT_EQ(st.st_gid, 998u);
  EXPECT_EQ(st.st_mode & 07777, 0700u);

  auto m = call("Mount", {{"Name", "db"}, {"ID", "ctr-1"}});
  EXPECT_EQ(m.json(), (json{{"Mountpoint", mp}, {"Err", ""}}));
  auto p = call("Path", {{"Name", "db"}});
  EXPECT_EQ(p.json(), (json{{"Mountpoint", mp}, {"Err", ""}}));
  auto l = call("List", json::object());
  ASSERT_EQ(l.json()["Volumes"].size(), 1u);
  EXPECT_EQ(l.json()["Volumes"][0]["Name"], "db");
  EXPECT_EQ(l.json()["Volumes"][0]["Mountpoint"], mp);

  expect_err(call("Remove", {{"Name", "db"}}), 409, "in use");
  EXPECT_EQ(call("Get", {{"Name", "db"}}).json()["Volume"]["Status"]["mount_ids"], json::array({"ctr-1"}));
  EXPECT_EQ(call("Unmount", {{"Name", "db"}, {"ID", "ctr-1"}}).json(), json::parse(R"({"Err":""})"));
  EXPECT_EQ(call("Remove", {{"Name", "db"}}).json(), json::parse(R"({"Err":""})"));
  expect_err(call("Get", {{"Name", "db"}}), 404, "no such volume");
  EXPECT_FALSE(fs::exists(daemon_.state_root() + "/volumes/db"));
  EXPECT_EQ(call("List", json::object()).json()["Volumes"], json::array());
}

TEST_F(DaemonTest, BadBodiesGetClearErrors) {
  expect_err(client_.post("/VolumeDriver.Create", "{not json"), 400, "not valid JSON");
  expect_err(client_.post("/VolumeDriver.Create", ""), 400, "body is empty");
  expect_err(client_.post("/VolumeDriver.Create", "[1,2]"), 400, "must be a JSON object");
  expect_err(client_.post("/VolumeDriver.Create", "\"str\""), 400, "must be a JSON object");
  expect_err(call("Create", json::object()), 400, "missing field \"Name\"");
  expect_err(call("Create", {{"Name", nullptr}}), 400, "missing field \"Name\"");
  expect_err(call("Create", {{"Name", 12}}), 400, "must be a string, got number");
  expect_err(call("Create", {{"Name", "v"}, {"Opts", "uid=1"}}), 400, "\"Opts\" must be an object");
  expect_err(call("Create", {{"Name", "v"}, {"Opts", {{"uid", 5}}}}), 400, "option 'uid' must be a string");
  expect_err(call("Create", {{"Name", "v"}, {"Opts", {{"size", "1G"}}}}), 400, "valid options are: uid, gid, mode");
  expect_err(call("Create", {{"Name", "v"}, {"Opts", {{"uid", "-5"}}}}), 400, "option 'uid'");
  expect_err(call("Create", {{"Name", "v"}, {"Opts", {{"mode", "999"}}}}), 400, "option 'mode'");
  ASSERT_EQ(call("Create", {{"Name", "v"}}).status, 200);
  expect_err(call("Mount", {{"Name", "v"}}), 400, "missing field \"ID\"");
  expect_err(call("Mount", {{"Name", "v"}, {"ID", ""}}), 400, "non-empty ID");
  expect_err(call("Mount", {{"Name", "nope"}, {"ID", "x"}}), 404, "no such volume");
  expect_err(call("Unmount", {{"Name", "v"}, {"ID", 3}}), 400, "\"ID\" must be a string");
  expect_err(client_.post("/VolumeDriver.Frobnicate", "{}"), 404, "unknown endpoint");
  expect_err(client_.post("/VolumeDriver.Get", R"({"Name":"v"})", "GET"), 405, "not allowed");
  // Unicode escapes decode to bytes the name rule refuses.
  expect_err(client_.post("/VolumeDriver.Create", R"({"Name":"a\u0000b"})"), 400, "byte 0x00");
  expect_err(client_.post("/VolumeDriver.Create", "{\"Name\":\"\xff\xfe\"}"), 400, "not valid JSON");
  // Nothing but the one good volume was created.
  EXPECT_EQ(call("List", json::object()).json()["Volumes"].size(), 1u);
}

TEST_F(DaemonTest, HostileNamesCreateNothingOutsideTheStateRoot) {
  std::vector<std::string> names = {"..", ".", "../../etc", "/abs", "a/b", "", ".hidden", "-x", "a b",
                                    std::string(129, 'n'), "naïve", "x\ny"};
  for (const auto& n : names) {
    auto r = call("Create", {{"Name", n}});
    EXPECT_EQ(r.status, 400) << "'" << n << "': " << r.body;
    EXPECT_FALSE(r.json()["Err"].get<std::string>().empty());
  }
  int entries = 0;
  for (auto& e : fs::directory_iterator(daemon_.state_root() + "/volumes")) {
    ADD_FAILURE() << "unexpected " << e.path();
    ++entries;
  }
  EXPECT_EQ(entries, 0);
  EXPECT_FALSE(fs::exists(dir_.path() + "/etc"));
  EXPECT_FALSE(fs::exists(daemon_.state_root() + "/abs"));
}

TEST_F(DaemonTest, OversizedBodyIsRefusedAndDaemonKeepsServing) {
  std::string big = R"({"Name":"v","Opts":{"x":")" + std::string(2 << 20, 'a') + "\"}}";
  expect_err(client_.post("/VolumeDriver.Create", big), 413, "exceeds the limit");
  PluginClient fresh(daemon_.plugin_socket());
  EXPECT_EQ(fresh.call("List", json::object()).status, 200);
}

// Connects and sends raw bytes; returns whatever the server answers until it
// closes or 5 s pass.
std::string raw_exchange(const std::string& socket, const std::string& bytes) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "connect failed";
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) < 0) {
    ::close(fd);
    return "send failed";
  }
  ::shutdown(fd, SHUT_WR);  // the client is done talking
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

TEST_F(DaemonTest, GarbageAndTruncatedHttpAreAnsweredOrClosed) {
  std::string r = raw_exchange(daemon_.plugin_socket(), "THIS IS NOT HTTP\r\n\r\n");
  EXPECT_NE(r.find("400"), std::string::npos) << r;
  EXPECT_NE(r.find("Err"), std::string::npos) << r;
  r = raw_exchange(daemon_.plugin_socket(), std::string("\x00\x01\x02\xff", 4) + "\r\n\r\n");
  EXPECT_NE(r.find("400"), std::string::npos) << r;
  std::string huge_header = "POST /VolumeDriver.List HTTP/1.1\r\nX: " + std::string(64 * 1024, 'h') + "\r\n\r\n";
  r = raw_exchange(daemon_.plugin_socket(), huge_header);
  EXPECT_NE(r.find("431"), std::string::npos) << r.substr(0, 200);
  // Content-Length larger than what is sent, then the client goes away.
  r = raw_exchange(daemon_.plugin_socket(), "POST /VolumeDriver.List HTTP/1.1\r\nContent-Length: 10\r\n\r\n{");
  EXPECT_TRUE(r.empty() || r.find("HTTP/1.1") != std::string::npos);
  EXPECT_EQ(call("List", json::object()).status, 200);
}

TEST_F(DaemonTest, StalledClientDoesNotBlockOthers) {
  // A client that sends half a request and stops.
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, daemon_.plugin_socket().c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  std::string half = "POST /VolumeDriver.Create HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"Na";
  ASSERT_GT(::send(fd, half.data(), half.size(), MSG_NOSIGNAL), 0);
  for (int i = 0; i < 20; ++i) {
    auto r = call("Create", {{"Name", "v" + std::to_string(i)}});
    EXPECT_EQ(r.status, 200) << r.error << r.body;
  }
  ::close(fd);
}

TEST_F(DaemonTest, TwoHundredConcurrentClients) {
  constexpr int kClients = 200;
  constexpr int kRounds = 3;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  std::mutex err_mu;
  std::string first_error;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      PluginClient cl(daemon_.plugin_socket());
      std::string name = "conc" + std::to_string(c);
      auto check = [&](const HttpResult& r) {
        if (r.status != 200 || r.json()["Err"] != "") {
          failures++;
          std::lock_guard l(err_mu);
          if (first_error.empty()) first_error = name + ": " + r.error + " " + r.body;
        }
      };
      for (int round = 0; round < kRounds; ++round) {
        check(cl.call("Create", {{"Name", name}}));
        check(cl.call("Mount", {{"Name", name}, {"ID", "m" + std::to_string(round)}}));
        check(cl.call("Get", {{"Name", name}}));
        check(cl.call("Unmount", {{"Name", name}, {"ID", "m" + std::to_string(round)}}));
        check(cl.call("Remove", {{"Name", name}}));
      }
      check(cl.call("Create", {{"Name", name}}));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0) << first_error;
  auto l = call("List", json::object());
  EXPECT_EQ(l.json()["Volumes"].size(), static_cast<size_t>(kClients));
}

TEST_F(DaemonTest, ReattachAfterKill9WithGetReadyAtFirstConnect) {
  for (int i = 0; i < 20; ++i) {
    std::string n = "r" + std::to_string(i);
    ASSERT_EQ(call("Create", {{"Name", n}, {"Opts", {{"mode", "0750"}}}}).status, 200);
    if (i % 2 == 0) {
      ASSERT_EQ(call("Mount", {{"Name", n}, {"ID", "id-" + n}}).status, 200);
    }
    if (i % 4 == 0) {
      ASSERT_EQ(call("Mount", {{"Name", n}, {"ID", "id2-" + n}}).status, 200);
    }
  }
  write_file(daemon_.state_root() + "/volumes/r3/_data/file", "payload");
  daemon_.kill9();
  ASSERT_FALSE(daemon_.running());

  // Start again and fire Get the moment the socket accepts, as dockerd does.
  ASSERT_TRUE(daemon_.start());
  PluginClient fresh(daemon_.plugin_socket());
  for (int i = 0; i < 20; ++i) {
    std::string n = "r" + std::to_string(i);
    auto g = fresh.call("Get", {{"Name", n}});
    ASSERT_EQ(g.status, 200) << g.body;
    json ids = g.json()["Volume"]["Status"]["mount_ids"];
    size_t expect = (i % 4 == 0) ? 2 : (i % 2 == 0) ? 1 : 0;
    EXPECT_EQ(ids.size(), expect) << n;
    EXPECT_EQ(g.json()["Volume"]["Status"]["options"]["mode"], "0750");
  }
  EXPECT_EQ(read_file(daemon_.state_root() + "/volumes/r3/_data/file"), "payload");
  expect_err(fresh.call("Remove", {{"Name", "r0"}}), 409, "in use");
}

// stowaged restarting (systemd does) on a full state root comes up and
// answers Get and List, as dockerd needs to keep its volumes; calls that need
// space are refused naming the cause, and work once space is freed.
TEST(DaemonFullDisk, StartsOnAFullStateRootAndRecoversOnceSpaceIsFreed) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounts a tmpfs: needs root";
  SmallFs small(8 << 20);
  ASSERT_EQ(small.error(), "");
  TempDir dir("stowage-it-full");
  ASSERT_EQ(::symlink(small.path().c_str(), (dir / "state").c_str()), 0) << std::strerror(errno);
  Daemon d{dir.path()};
  ASSERT_TRUE(d.start());
  {
    PluginClient c{d.plugin_socket()};
    ASSERT_EQ(c.call("Create", {{"Name", "v1"}}).status, 200);
    ASSERT_EQ(c.call("Mount", {{"Name", "v1"}, {"ID", "id1"}}).status, 200);
    ASSERT_EQ(c.call("Create", {{"Name", "v2"}}).status, 200);
  }
  d.kill9();  // the records are in the journal only
  const std::string filler = small.path() + "/filler";
  small.fill(filler);

  ASSERT_TRUE(d.start()) << read_file(d.log_path());
  PluginClient c{d.plugin_socket()};
  auto g = c.call("Get", {{"Name", "v1"}});
  ASSERT_EQ(g.status, 200) << g.body;
  EXPECT_EQ(g.json()["Volume"]["Status"]["mount_ids"], json::array({"id1"}));
  EXPECT_EQ(c.call("List", json::object()).json()["Volumes"].size(), 2u);
  expect_err(c.call("Create", {{"Name", "v3"}}), 500, "No space left on device");
  expect_err(c.call("Create", {{"Name", "v3"}}), 500, "create volume 'v3'");

  ASSERT_TRUE(fs::remove(filler));
  EXPECT_EQ(c.call("Create", {{"Name", "v3"}}).status, 200);
  EXPECT_EQ(c.call("Mount", {{"Name", "v2"}, {"ID", "id2"}}).status, 200);
  ASSERT_EQ(d.stop(), 0);
  ASSERT_TRUE(d.start());
  PluginClient again{d.plugin_socket()};
  EXPECT_EQ(again.call("Get", {{"Name", "v1"}}).json()["Volume"]["Status"]["mount_ids"], json::array({"id1"}));
  EXPECT_EQ(again.call("Get", {{"Name", "v2"}}).json()["Volume"]["Status"]["mount_ids"], json::array({"id2"}));
  EXPECT_EQ(again.call("Get", {{"Name", "v3"}}).status, 200);
  EXPECT_EQ(d.stop(), 0);
}

TEST_F(DaemonTest, SecondDaemonOnSameStateRootIsRefused) {
  Subprocess::Options o;
  o.argv = {bin_dir() + "/stowaged", "--state-root", daemon_.state_root(), "--plugin-socket",
            dir_.path() + "/other.sock", "--admin-socket", dir_.path() + "/other-admin.sock"};
  o.log_path = dir_.path() + "/second.log";
  Subprocess second(o);
  int st = second.wait(std::chrono::seconds(30));
  ASSERT_NE(st, -1) << "second daemon kept running";
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) != 0);
  std::string log = read_file(o.log_path);
  EXPECT_NE(log.find("another stowaged (pid " + std::to_string(daemon_.pid())), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(dir_.path() + "/other.sock"));
}

TEST_F(DaemonTest, AdminSocketIsPrivateAndStowctlWorks) {
  struct stat st {};
  ASSERT_EQ(::stat(daemon_.admin_socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(call("Create", {{"Name", "alpha"}, {"Opts", {{"uid", "7"}}}}).status, 200);
  ASSERT_EQ(call("Mount", {{"Name", "alpha"}, {"ID", "c9"}}).status, 200);
  write_file(daemon_.state_root() + "/volumes/alpha/_data/blob", std::string(300 * 1024, 'z'));

  std::string out;
  ASSERT_EQ(daemon_.stowctl("volume ls", &out), 0) << out;
  EXPECT_NE(out.find("NAME"), std::string::npos);
  EXPECT_NE(out.find("alpha"), std::string::npos) << out;
  ASSERT_EQ(daemon_.stowctl("volume ls --json", &out), 0) << out;
  json arr = json::parse(out);
  ASSERT_EQ(arr.size(), 1u);
  EXPECT_EQ(arr[0]["name"], "alpha");
  EXPECT_GE(arr[0]["bytes_used"].get<uint64_t>(), 300u * 1024);
  EXPECT_EQ(arr[0]["mount_ids"], json::array({"c9"}));
  ASSERT_EQ(daemon_.stowctl("volume inspect alpha", &out), 0) << out;
  EXPECT_NE(out.find("uid=7"), std::string::npos) << out;
  EXPECT_NE(out.find("c9"), std::string::npos) << out;
  ASSERT_EQ(daemon_.stowctl("volume inspect alpha --json", &out), 0) << out;
  EXPECT_EQ(json::parse(out)["mountpoint"], daemon_.state_root() + "/volumes/alpha/_data");

  EXPECT_EQ(daemon_.stowctl("volume inspect nosuch", &out), 1);
  EXPECT_NE(out.find("no such volume: nosuch"), std::string::npos) << out;
  EXPECT_EQ(daemon_.stowctl("volume inspect ../etc", &out), 2);
  EXPECT_NE(out.find("must start with a letter"), std::string::npos) << out;

  ASSERT_EQ(daemon_.stowctl("volume release alpha", &out), 0) << out;
  EXPECT_NE(out.find("released 1"), std::string::npos) << out;
  EXPECT_EQ(call("Remove", {{"Name", "alpha"}}).status, 200);

  // An easy mistake: the plugin socket given as the admin socket. Its error
  // replies are not the admin API's, and stowctl says so instead of aborting.
  for (const char* cmd : {"volume ls", "volume inspect alpha"}) {
    EXPECT_EQ(test::run_shell(test::bin_dir() + "/stowctl --admin-socket " + daemon_.plugin_socket() + " " + cmd, &out),
              1)
        << cmd << ": " << out;
    EXPECT_NE(out.find("is it stowaged's admin socket?"), std::string::npos) << out;
  }
}

TEST_F(DaemonTest, SnapshotCommandsThroughStowctl) {
  ASSERT_EQ(call("Create", {{"Name", "snapvol"}}).status, 200);
  std::string data = daemon_.state_root() + "/volumes/snapvol/_data";
  write_file(data + "/f", "before");
  std::string out;
  ASSERT_EQ(daemon_.stowctl("snapshot create snapvol first", &out), 0) << out;
  EXPECT_NE(out.find("created snapshot snapvol@first"), std::string::npos) << out;
  ASSERT_EQ(daemon_.stowctl("snapshot create snapvol --json", &out), 0) << out;
  std::string stamped = json::parse(out)["name"];
  EXPECT_EQ(stamped.size(), 16u) << stamped;  // YYYYMMDDTHHMMSSZ
  EXPECT_EQ(daemon_.stowctl("snapshot create snapvol first", &out), 1);
  EXPECT_NE(out.find("already exists"), std::string::npos) << out;
  EXPECT_EQ(daemon_.stowctl("snapshot create snapvol ../evil", &out), 2);
  EXPECT_NE(out.find("snapshot name must start"), std::string::npos) << out;

  ASSERT_EQ(daemon_.stowctl("snapshot ls snapvol --json", &out), 0) << out;
  json ls = json::parse(out);
  ASSERT_EQ(ls[0]["snapshots"].size(), 2u);
  ASSERT_EQ(daemon_.stowctl("snapshot ls", &out), 0) << out;
  EXPECT_NE(out.find("first"), std::string::npos) << out;

  auto g = call("Get", {{"Name", "snapvol"}});
  EXPECT_EQ(g.json()["Volume"]["Status"]["snapshots"].size(), 2u) << g.body;
  EXPECT_GE(g.json()["Volume"]["Status"]["snapshots_bytes"].get<uint64_t>(), 12u);

  write_file(data + "/f", "after");
  ASSERT_EQ(call("Mount", {{"Name", "snapvol"}, {"ID", "m1"}}).status, 200);
  EXPECT_EQ(daemon_.stowctl("snapshot rollback snapvol first", &out), 1);
  EXPECT_NE(out.find("is mounted"), std::string::npos) << out;
  EXPECT_EQ(read_file(data + "/f"), "after");
  ASSERT_EQ(daemon_.stowctl("snapshot rollback snapvol first --force", &out), 0) << out;
  EXPECT_EQ(read_file(data + "/f"), "before");
  ASSERT_EQ(call("Unmount", {{"Name", "snapvol"}, {"ID", "m1"}}).status, 200);

  // Clone through Docker's Create, as `docker volume create -o from-snapshot=` does.
  ASSERT_EQ(call("Create", {{"Name", "clone"}, {"Opts", {{"from-snapshot", "snapvol@first"}}}}).status, 200);
  EXPECT_EQ(read_file(daemon_.state_root() + "/volumes/clone/_data/f"), "before");
  expect_err(call("Create", {{"Name", "c2"}, {"Opts", {{"from-snapshot", "snapvol@nope"}}}}), 404, "no such snapshot");

  expect_err(call("Remove", {{"Name", "snapvol"}}), 409, "snapshot");
  ASSERT_EQ(daemon_.stowctl("snapshot rm snapvol first", &out), 0) << out;
  ASSERT_EQ(daemon_.stowctl("snapshot rm snapvol " + stamped, &out), 0) << out;
  EXPECT_EQ(daemon_.stowctl("snapshot rm snapvol first", &out), 1);
  EXPECT_EQ(call("Remove", {{"Name", "snapvol"}}).status, 200);
}

// An admin call that takes long (here a snapshot of a quiesce=pause volume
// whose Docker API never answers; in life a large copy or a backup) runs on
// the admin socket's own pool: with one I/O thread, Docker's Get and the
// admin API's reads are still answered meanwhile. They used to wait for it.
TEST(DaemonAdmin, ALongAdminCallDoesNotHoldUpDocker) {
  TempDir dir("stowage-it");
  // A Docker API socket that accepts and never answers, until closed.
  const std::string docker_sock = dir / "docker.sock";
  const int lfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(lfd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, docker_sock.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  ASSERT_EQ(::listen(lfd, 4), 0);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } listener{lfd};

  Daemon d{dir.path()};
  ASSERT_TRUE(d.start({"--threads", "1", "--docker-socket", docker_sock}));
  PluginClient c{d.plugin_socket()};
  ASSERT_EQ(c.call("Create", {{"Name", "db"}, {"Opts", {{"quiesce", "pause"}}}}).status, 200);

  auto snapshot = std::async(std::launch::async, [&] {
    std::string out;
    const int rc = d.stowctl("snapshot create db held", &out);
    return std::make_pair(rc, out);
  });
  // The snapshot's handler is running once it asks Docker to pause.
  pollfd p{lfd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 60'000), 1) << "the snapshot never reached the Docker API";
  const int held = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(held, 0);
  Closer conn{held};

  // Asked from other threads so that a regression fails instead of hanging.
  auto get = std::async(std::launch::async, [&] { return PluginClient(d.plugin_socket()).call("Get", {{"Name", "db"}}); });
  auto ls = std::async(std::launch::async, [&] {
    std::string out;
    return std::make_pair(d.stowctl("volume ls --json", &out), out);
  });
  ASSERT_EQ(get.wait_for(std::chrono::seconds(20)), std::future_status::ready) << "Get waited for the snapshot";
  EXPECT_EQ(get.get().status, 200);
  ASSERT_EQ(ls.wait_for(std::chrono::seconds(20)), std::future_status::ready) << "volume ls waited for the snapshot";
  EXPECT_EQ(ls.get().first, 0);
  EXPECT_EQ(snapshot.wait_for(std::chrono::seconds(0)), std::future_status::timeout) << "the snapshot was not held";

  // Docker "fails": the snapshot fails and says why; the daemon goes on.
  ::shutdown(held, SHUT_RDWR);
  const auto [rc, out] = snapshot.get();
  EXPECT_NE(rc, 0) << out;
  EXPECT_EQ(c.call("Get", {{"Name", "db"}}).status, 200);
  EXPECT_TRUE(d.running());
}

TEST(DaemonStartup, RefusesToReplaceANonSocketFile) {
  TempDir dir("stowage-it");
  write_file(dir / "plugin.sock", "not a socket");
  Subprocess::Options o;
  o.argv = {bin_dir() + "/stowaged", "--state-root", dir / "state", "--plugin-socket", dir / "plugin.sock",
            "--admin-socket", dir / "admin.sock"};
  o.log_path = dir / "log";
  Subprocess p(o);
  int st = p.wait(std::chrono::seconds(30));
  ASSERT_NE(st, -1);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1);
  EXPECT_NE(read_file(dir / "log").find("is not a socket"), std::string::npos) << read_file(dir / "log");
  EXPECT_EQ(read_file(dir / "plugin.sock"), "not a socket");
}

TEST(DaemonStartup, RelativeStateRootAndBadFlagsFailClearly) {
  TempDir dir("stowage-it");
  std::string out;
  int rc = run_shell(bin_dir() + "/stowaged --state-root relative --plugin-socket " + (dir / "p.sock") +
                         " --admin-socket " + (dir / "a.sock"),
                     &out);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("must be an absolute path"), std::string::npos) << out;
  rc = run_shell(bin_dir() + "/stowaged --threads 0", &out);
  EXPECT_NE(rc, 0);
  rc = run_shell(bin_dir() + "/stowctl --admin-socket " + (dir / "none.sock") + " volume ls", &out);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("cannot reach stowaged"), std::string::npos) << out;
}

}  // namespace
}  // namespace stowage::test
