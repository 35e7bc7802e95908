// End-to-end: a real dockerd uses a real stowaged as its volume driver.
// Both run inside this test's private mount namespace (see
// isolate_plugin_dir()), with their own state under a scratch directory.
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.h"
#include "docker_harness.h"

namespace stowage::test {
namespace {

using json = nlohmann::json;

constexpr const char* kImage = "stowage-e2e-busybox:1";
constexpr const char* kPluginSocket = "/run/docker/plugins/stowage.sock";

// One dockerd and one stowaged for the whole binary: starting dockerd costs
// seconds, and the tests below also restart both on purpose.
class Env : public ::testing::Environment {
 public:
  void SetUp() override {
    dir = std::make_unique<TempDir>("stowage-e2e");
    stowaged = std::make_unique<Daemon>(dir->path() + "/stowage", kPluginSocket);
    std::filesystem::create_directories(dir->path() + "/stowage");
    ASSERT_TRUE(stowaged->start({"--docker-socket", dir->path() + "/docker/docker.sock"}));
    docker = std::make_unique<DockerEngine>(dir->path() + "/docker");
    ASSERT_TRUE(docker->start());
    ASSERT_TRUE(docker->import_busybox(kImage));
  }
  void TearDown() override {
    if (docker) {
      if (!stowaged->running()) (void)stowaged->start();
      docker->remove_all_containers();
      docker->stop();
    }
    docker.reset();
    stowaged.reset();
    // Shims orphaned by the dockerd crashes were reparented to us: reap them.
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    dir.reset();
  }
  std::unique_ptr<TempDir> dir;
  std::unique_ptr<Daemon> stowaged;
  std::unique_ptr<DockerEngine> docker;
};

Env* env = nullptr;

std::string run(const std::string& args, int expect_rc = 0) {
  std::string out;
  int rc = env->docker->docker(args, &out);
  EXPECT_EQ(rc, expect_rc) << "docker " << args << "\n" << out;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

TEST(DockerE2E, CreateWriteReadAcrossContainersWithOwnerAndStatus) {
  run("volume create --driver stowage -o uid=1000 -o gid=1001 -o mode=0750 e2e-data");
  EXPECT_EQ(run("volume ls --format '{{.Driver}} {{.Name}}' --filter name=e2e-data"), "stowage e2e-data");
  run(std::string("run --rm -v e2e-data:/data ") + kImage + " sh -c 'echo hello-from-one > /data/greeting'");
  EXPECT_EQ(run(std::string("run --rm -v e2e-data:/data ") + kImage + " cat /data/greeting"), "hello-from-one");
  EXPECT_EQ(run(std::string("run --rm -v e2e-data:/data ") + kImage + " stat -c '%u:%g %a' /data"), "1000:1001 750");

  json inspect = json::parse(run("volume inspect e2e-data"))[0];
  EXPECT_EQ(inspect["Driver"], "stowage");
  EXPECT_EQ(inspect["Mountpoint"], env->stowaged->state_root() + "/volumes/e2e-data/_data");
  EXPECT_EQ(inspect["Status"]["kind"], "dir");
  EXPECT_EQ(inspect["Status"]["mounts"], 0);
  EXPECT_EQ(inspect["Status"]["options"]["uid"], "1000");
  EXPECT_TRUE(inspect["Status"]["bytes_used"].is_number()) << inspect.dump();
  // Every mount was released when its container ended.
  std::string out;
  ASSERT_EQ(env->stowaged->stowctl("volume inspect e2e-data --json", &out), 0) << out;
  EXPECT_EQ(json::parse(out)["mount_ids"], json::array());
  run("volume rm e2e-data");
}

TEST(DockerE2E, BadOptionsAndNamesAreRefusedWithOurMessage) {
  std::string out = run("volume create --driver stowage -o size=10G e2e-bad", 1);
  EXPECT_NE(out.find("unknown option 'size'; valid options are: uid, gid, mode"), std::string::npos) << out;
  out = run("volume create --driver stowage -o uid=root e2e-bad", 1);
  EXPECT_NE(out.find("option 'uid'"), std::string::npos) << out;
  out = run("volume ls -q --filter name=e2e-bad");
  EXPECT_EQ(out, "");
}

TEST(DockerE2E, RemoveRefusedWhileInUseAcceptedAfter) {
  run("volume create --driver stowage e2e-busy");
  run(std::string("run -d --name e2e-holder -v e2e-busy:/data ") + kImage + " sleep 600");
  std::string out = run("volume rm e2e-busy", 1);
  EXPECT_NE(out.find("in use"), std::string::npos) << out;
  std::string sout;
  ASSERT_EQ(env->stowaged->stowctl("volume inspect e2e-busy --json", &sout), 0);
  EXPECT_EQ(json::parse(sout)["mount_ids"].size(), 1u);
  run("rm -f e2e-holder");
  run("volume rm e2e-busy");
  EXPECT_EQ(run("volume ls -q --filter name=e2e-busy"), "");
  EXPECT_FALSE(std::filesystem::exists(env->stowaged->state_root() + "/volumes/e2e-busy"));
}

TEST(DockerE2E, Kill9OfStowagedLeavesRunningContainerWorking) {
  run("volume create --driver stowage e2e-crash");
  run(std::string("run -d --name e2e-writer -v e2e-crash:/data ") + kImage +
      " sh -c 'i=0; while true; do i=$((i+1)); echo $i >> /data/log; sleep 0.1; done'");
  std::string log = env->stowaged->state_root() + "/volumes/e2e-crash/_data/log";
  ASSERT_TRUE(wait_until([&] { return read_file(log).size() > 4; }, std::chrono::seconds(30)));

  env->stowaged->kill9();
  size_t before = read_file(log).size();
  // The container keeps writing to its volume with the plugin dead.
  EXPECT_TRUE(wait_until([&] { return read_file(log).size() > before + 10; }, std::chrono::seconds(30)));
  EXPECT_EQ(run("inspect -f '{{.State.Running}}' e2e-writer"), "true");

  // The supervisor (systemd in production) restarts stowaged; Docker goes on.
  ASSERT_TRUE(env->stowaged->start());
  std::string lines = run(std::string("run --rm -v e2e-crash:/data ") + kImage + " wc -l /data/log");
  EXPECT_NE(lines.find("/data/log"), std::string::npos);
  std::string sout;
  ASSERT_EQ(env->stowaged->stowctl("volume inspect e2e-crash --json", &sout), 0);
  EXPECT_EQ(json::parse(sout)["mount_ids"].size(), 1u) << sout;  // the writer's mount survived the crash
  run("rm -f e2e-writer");
  ASSERT_EQ(env->stowaged->stowctl("volume inspect e2e-crash --json", &sout), 0);
  EXPECT_EQ(json::parse(sout)["mount_ids"].size(), 0u) << sout;
  run("volume rm e2e-crash");
}

TEST(DockerE2E, DockerdRestartKeepsVolumesAndRestartsContainers) {
  run("volume create --driver stowage e2e-restart");
  run(std::string("run -d --name e2e-always --restart=always --stop-timeout=1 -v e2e-restart:/data ") + kImage +
      " sh -c 'date >> /data/starts; sleep 600'");
  std::string starts = env->stowaged->state_root() + "/volumes/e2e-restart/_data/starts";
  ASSERT_TRUE(wait_until([&] { return !read_file(starts).empty(); }, std::chrono::seconds(30)));

  // A clean restart: dockerd stops the container (Unmount) and starts it again (Mount).
  env->docker->stop();
  ASSERT_TRUE(env->docker->start());
  EXPECT_EQ(run("volume ls -q --filter name=e2e-restart"), "e2e-restart");
  ASSERT_TRUE(wait_until([&] { return run("inspect -f '{{.State.Running}}' e2e-always") == "true"; },
                         std::chrono::seconds(60)));
  auto start_count = [&] {
    std::string s = read_file(starts);
    return std::count(s.begin(), s.end(), '\n');
  };
  ASSERT_TRUE(wait_until([&] { return start_count() >= 2; }, std::chrono::seconds(30)));

  // A crash of dockerd: it restarts the container too, with the same volume.
  env->docker->kill9();
  ASSERT_TRUE(env->docker->start());
  ASSERT_TRUE(wait_until([&] { return run("inspect -f '{{.State.Running}}' e2e-always") == "true"; },
                         std::chrono::seconds(60)));
  EXPECT_EQ(run(std::string("run --rm -v e2e-restart:/data ") + kImage + " test -s /data/starts && echo ok"), "ok");

  // And a restart of both, stowaged first, as after a host reboot without the reboot.
  env->docker->stop();
  env->stowaged->kill9();
  ASSERT_TRUE(env->stowaged->start());
  ASSERT_TRUE(env->docker->start());
  EXPECT_EQ(run("volume ls -q --filter name=e2e-restart"), "e2e-restart");
  ASSERT_TRUE(wait_until([&] { return run("inspect -f '{{.State.Running}}' e2e-always") == "true"; },
                         std::chrono::seconds(60)));
  run("rm -f e2e-always");
  std::string sout;
  ASSERT_EQ(env->stowaged->stowctl("volume inspect e2e-restart --json", &sout), 0);
  EXPECT_EQ(json::parse(sout)["mount_ids"].size(), 0u) << sout;
  run("volume rm e2e-restart");
}

TEST(DockerE2E, SnapshotRunningVolumeRollbackAndClone) {
  run("volume create --driver stowage -o quiesce=pause e2e-snap");
  run(std::string("run -d --name e2e-snapper -v e2e-snap:/data ") + kImage +
      " sh -c 'echo v1 > /data/state; sync; sleep 600'");
  std::string state = env->stowaged->state_root() + "/volumes/e2e-snap/_data/state";
  ASSERT_TRUE(wait_until([&] { return read_file(state) == "v1\n"; }, std::chrono::seconds(30)));

  // quiesce=pause: the container is paused for the copy and running after it.
  std::string out;
  ASSERT_EQ(env->stowaged->stowctl("snapshot create e2e-snap good", &out), 0) << out;
  EXPECT_EQ(run("inspect -f '{{.State.Status}}' e2e-snapper"), "running");
  std::string log = read_file(env->stowaged->log_path());
  EXPECT_NE(log.find("container paused for snapshot"), std::string::npos);
  EXPECT_NE(log.find("container unpaused"), std::string::npos);
  // A failing snapshot (the name is taken) still unpauses.
  EXPECT_EQ(env->stowaged->stowctl("snapshot create e2e-snap good", &out), 1);
  EXPECT_EQ(run("inspect -f '{{.State.Status}}' e2e-snapper"), "running");

  json inspect = json::parse(run("volume inspect e2e-snap"))[0];
  EXPECT_EQ(inspect["Status"]["snapshots"], json::array({"good"}));
  EXPECT_GT(inspect["Status"]["snapshots_bytes"].get<uint64_t>(), 0u);

  // The container damages its data; roll back once it is gone.
  run("exec e2e-snapper sh -c 'echo broken > /data/state'");
  EXPECT_EQ(env->stowaged->stowctl("snapshot rollback e2e-snap good", &out), 1);  // still mounted
  EXPECT_NE(out.find("is mounted"), std::string::npos) << out;
  run("rm -f e2e-snapper");
  ASSERT_EQ(env->stowaged->stowctl("snapshot rollback e2e-snap good", &out), 0) << out;
  EXPECT_EQ(run(std::string("run --rm -v e2e-snap:/data ") + kImage + " cat /data/state"), "v1");

  // Clone into a new volume through Docker.
  run("volume create --driver stowage -o from-snapshot=e2e-snap@good e2e-clone");
  EXPECT_EQ(run(std::string("run --rm -v e2e-clone:/data ") + kImage + " cat /data/state"), "v1");
  out = run("volume create --driver stowage -o from-snapshot=e2e-snap@missing e2e-clone2", 1);
  EXPECT_NE(out.find("no such snapshot: missing"), std::string::npos) << out;

  out = run("volume rm e2e-snap", 1);
  EXPECT_NE(out.find("snapshot"), std::string::npos) << out;
  ASSERT_EQ(env->stowaged->stowctl("snapshot rm e2e-snap good", &out), 0) << out;
  run("volume rm e2e-snap");
  run("volume rm e2e-clone");
}

}  // namespace
}  // namespace stowage::test

int main(int argc, char** argv) {
  stowage::test::env = new stowage::test::Env;
  return stowage::test::run_e2e_tests(argc, argv, stowage::test::env);
}
