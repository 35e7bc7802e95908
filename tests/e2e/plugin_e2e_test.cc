// End-to-end: Stowage as a managed (v2) Docker plugin on a real dockerd.
// deploy/plugin/build.sh turns the just-built binaries into a plugin, which
// is created, enabled, disabled, re-enabled and replaced by a rebuilt one
// (what an upgrade without a registry is), with its state in a host directory
// under this test's scratch dir. The postgres compose example runs with
// docker-compose (busybox in place of postgres) against the same plugin.
#include <sys/stat.h>
#include <sys/wait.h>

#include <filesystem>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "docker_harness.h"

namespace stowage::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kImage = "stowage-plugin-e2e-busybox:1";
constexpr const char* kPlugin = "stowage";
constexpr const char* kDriver = "stowage:latest";  // what Docker calls the plugin's driver

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

// One dockerd for the binary. The plugin's host state directory (its "state"
// mount) is `state`, outside the engine's data-root, like /var/lib/stowage-plugin.
class Env : public ::testing::Environment {
 public:
  void SetUp() override {
    dir = std::make_unique<TempDir>("stowage-plugin-e2e");
    state = dir->path() + "/state";
    fs::create_directories(state);
    docker = std::make_unique<DockerEngine>(dir->path() + "/docker");
    ASSERT_TRUE(docker->start());
    ASSERT_TRUE(docker->import_busybox(kImage));
  }
  void TearDown() override {
    if (docker) {
      // Runs after failures too: nothing of ours outlives the test.
      docker->remove_all_containers();
      docker->docker("plugin disable -f " + std::string(kPlugin));
      docker->docker("plugin rm -f " + std::string(kPlugin));
      docker->stop();
    }
    docker.reset();
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    dir.reset();
  }
  // Environment for tools that talk to this engine.
  std::string docker_env() const { return "DOCKER_HOST=unix://" + docker->socket_path() + " DOCKER=/usr/bin/docker "; }

  std::unique_ptr<TempDir> dir;
  std::string state;
  std::unique_ptr<DockerEngine> docker;
};

Env* env = nullptr;

std::string run(const std::string& args, int expect_rc = 0) {
  std::string out;
  int rc = env->docker->docker(args, &out);
  EXPECT_EQ(rc, expect_rc) << "docker " << args << "\n" << out;
  return trim(out);
}

std::string shell(const std::string& cmd, int expect_rc = 0) {
  std::string out;
  int rc = run_shell(cmd, &out);
  EXPECT_EQ(rc, expect_rc) << cmd << "\n" << out;
  return trim(out);
}

std::string source_dir() { return STOWAGE_SOURCE_DIR; }

// build.sh into `out`, `docker plugin create`, point its state mount at the
// test's directory and its Docker socket at this engine's, enable. Returns
// the plugin's ID ("" on failure).
std::string install_plugin(const std::string& out) {
  shell(env->docker_env() + source_dir() + "/deploy/plugin/build.sh --bin-dir " + bin_dir() + " --out " + out +
        " --name " + kPlugin);
  run(std::string("plugin set ") + kPlugin + " state.source=" + env->state +
      " docker-socket.source=" + env->docker->socket_path());
  std::string enable_out;
  int rc = env->docker->docker(std::string("plugin enable ") + kPlugin, &enable_out);
  if (rc != 0) {
    std::string log = read_file(env->docker->log_path());
    ADD_FAILURE() << "plugin enable failed: " << enable_out << "\ndockerd log tail:\n"
                  << log.substr(log.size() > 6000 ? log.size() - 6000 : 0);
    return "";
  }
  return run(std::string("plugin inspect -f '{{.Id}}' ") + kPlugin);
}

void remove_plugin() {
  // -f: volumes of the plugin hold references to it; they stay in Docker's
  // volume store and find the plugin again by name.
  run(std::string("plugin disable -f ") + kPlugin);
  run(std::string("plugin rm -f ") + kPlugin);
}

// Mounts in this namespace (dockerd's) of or on a plugin's propagated mount
// (its mountinfo line names the path as root or mount point). While one is mounted, deleting the plugin's directory
// would delete the volumes through it; Docker must unmount it first.
int propagated_mounts() {
  std::string info = read_file("/proc/self/mountinfo");
  int n = 0;
  for (size_t at = 0; (at = info.find("/propagated-mount ", at)) != std::string::npos; ++at) ++n;
  return n;
}

std::string stowctl(const std::string& args) {
  return shell(bin_dir() + "/stowctl --admin-socket " + env->state + "/admin.sock " + args);
}

std::string in_container(const std::string& volume, const std::string& cmd) {
  return run("run --rm -v " + volume + ":/data " + kImage + " sh -c '" + cmd + "'");
}

TEST(PluginE2E, ConfigMatchesWhatDockerExpects) {
  json c = json::parse(read_file(source_dir() + "/deploy/plugin/config.json"));
  EXPECT_EQ(c["interface"]["types"], json::array({"docker.volumedriver/1.0"}));
  EXPECT_EQ(c["interface"]["socket"], "stowage.sock");
  // The state mount sits on the propagated mount, so the volume directories
  // the plugin returns from Mount are visible to dockerd on the host.
  std::map<std::string, json> mounts;
  for (const auto& m : c["mounts"]) mounts[m["name"]] = m;
  EXPECT_EQ(mounts["state"]["destination"], c["propagatedMount"]);
  std::map<std::string, std::string> envs;
  for (const auto& e : c["env"]) envs[e["name"]] = e["value"];
  EXPECT_EQ(envs["STOWAGE_STATE_ROOT"], c["propagatedMount"]);
  EXPECT_EQ(envs["STOWAGE_PLUGIN_SOCKET"], "/run/docker/plugins/stowage.sock");
  EXPECT_EQ(envs["STOWAGE_DOCKER_SOCKET"], mounts["docker-socket"]["destination"]);
  // Every STOWAGE_ variable the plugin declares (and docs/PLUGIN.md offers to
  // `docker plugin set`) is one stowaged reads, with a valid default.
  const std::string help = shell(bin_dir() + "/stowaged --help");
  for (const auto& [name, value] : envs) {
    if (name.starts_with("STOWAGE_")) {
      EXPECT_NE(help.find("$" + name + "]"), std::string::npos) << name;
    }
  }
  std::string env_prefix;
  for (const auto& [name, value] : envs) {
    if (name.starts_with("STOWAGE_") && name != "STOWAGE_STATE_ROOT") env_prefix += name + "='" + value + "' ";
  }
  TempDir dir("stowage-plugin-config");
  write_file(dir.path() + "/empty.json", "{}");
  EXPECT_EQ(run_shell(env_prefix + "STOWAGE_STATE_ROOT='" + dir.path() + "/state' " + bin_dir() +
                      "/stowaged --check-config --config " + dir.path() + "/empty.json"),
            0);
}

TEST(PluginE2E, DataSurvivesDisableEnableAndUpgrade) {
  std::string id1 = install_plugin(env->dir->path() + "/plugin-1");
  ASSERT_FALSE(id1.empty());
  EXPECT_EQ(run(std::string("plugin inspect -f '{{.Enabled}}' ") + kPlugin), "true");

  run(std::string("volume create -d ") + kPlugin + " -o uid=1000 -o gid=1001 -o mode=0750 pv1");
  EXPECT_EQ(run("volume ls --format '{{.Driver}} {{.Name}}' --filter name=pv1"), std::string(kDriver) + " pv1");
  in_container("pv1", "echo written-by-one > /data/greeting");
  EXPECT_EQ(in_container("pv1", "cat /data/greeting"), "written-by-one");
  EXPECT_EQ(in_container("pv1", "stat -c \"%u:%g %a\" /data"), "1000:1001 750");

  // The data lives in the host state directory, not in the plugin's rootfs,
  // and stowctl on the host reaches the plugin's admin socket there.
  EXPECT_EQ(read_file(env->state + "/volumes/pv1/_data/greeting"), "written-by-one\n");
  json sv = json::parse(stowctl("volume inspect pv1 --json"));
  EXPECT_EQ(sv["options"]["uid"], "1000") << sv.dump();
  EXPECT_EQ(sv["mount_ids"], json::array()) << sv.dump();

  // Disable (stops stowaged) and enable again.
  EXPECT_GT(propagated_mounts(), 0);  // the check below can see them
  run(std::string("plugin disable -f ") + kPlugin);
  EXPECT_EQ(propagated_mounts(), 0) << read_file("/proc/self/mountinfo");
  EXPECT_EQ(read_file(env->state + "/volumes/pv1/_data/greeting"), "written-by-one\n");
  run(std::string("plugin enable ") + kPlugin);
  EXPECT_EQ(run("volume ls -q --filter name=pv1"), "pv1");
  EXPECT_EQ(in_container("pv1", "cat /data/greeting"), "written-by-one");

  // Upgrade: a rebuilt plugin replaces the old one, same state mount, while a
  // container keeps using the volume (its bind mount does not need stowaged).
  run(std::string("run -d --name pv1-holder -v pv1:/data ") + kImage +
      " sh -c 'while true; do date >> /data/holder; sleep 0.2; done'");
  std::string holder_log = env->state + "/volumes/pv1/_data/holder";
  ASSERT_TRUE(wait_until([&] { return !read_file(holder_log).empty(); }, std::chrono::seconds(30)));
  remove_plugin();
  std::string id2 = install_plugin(env->dir->path() + "/plugin-2");
  ASSERT_FALSE(id2.empty());
  EXPECT_NE(id1, id2);  // really a new plugin, not the old one re-enabled
  size_t before = read_file(holder_log).size();
  EXPECT_TRUE(wait_until([&] { return read_file(holder_log).size() > before; }, std::chrono::seconds(30)));
  EXPECT_EQ(json::parse(stowctl("volume inspect pv1 --json"))["mount_ids"].size(), 1u);
  run("rm -f pv1-holder");  // its Unmount reaches the new plugin
  EXPECT_EQ(json::parse(stowctl("volume inspect pv1 --json"))["mount_ids"], json::array());
  EXPECT_EQ(run("volume ls --format '{{.Driver}} {{.Name}}' --filter name=pv1"), std::string(kDriver) + " pv1");
  EXPECT_EQ(in_container("pv1", "rm /data/holder; cat /data/greeting; echo after-upgrade >> /data/greeting; stat -c \"%u:%g %a\" /data"),
            "written-by-one\n1000:1001 750");
  EXPECT_EQ(read_file(env->state + "/volumes/pv1/_data/greeting"), "written-by-one\nafter-upgrade\n");

  // Our errors reach the user through the plugin too.
  std::string out = run(std::string("volume create -d ") + kPlugin + " -o size=1G pv-bad", 1);
  EXPECT_NE(out.find("unknown option 'size'"), std::string::npos) << out;

  run("volume rm pv1");
  EXPECT_FALSE(fs::exists(env->state + "/volumes/pv1"));
}

// Enables the plugin unless it is: tests may run alone (--gtest_filter).
void ensure_plugin(const std::string& out) {
  std::string enabled;
  if (env->docker->docker(std::string("plugin inspect -f '{{.Enabled}}' ") + kPlugin, &enabled) != 0) {
    EXPECT_FALSE(install_plugin(out).empty());
  } else if (trim(enabled) != "true") {
    run(std::string("plugin enable ") + kPlugin);
  }
}

TEST(PluginE2E, QuiescePauseReachesDockerFromInsideThePlugin) {
  ensure_plugin(env->dir->path() + "/plugin-snap");
  run(std::string("volume create -d ") + kPlugin + " -o quiesce=pause psnap");
  run(std::string("run -d --name psnap-user -v psnap:/data ") + kImage + " sh -c 'echo v1 > /data/state; sleep 600'");
  ASSERT_TRUE(wait_until([&] { return read_file(env->state + "/volumes/psnap/_data/state") == "v1\n"; },
                         std::chrono::seconds(30)));
  // stowctl on the host, through the admin socket in the state directory;
  // stowaged pauses the container through the docker-socket mount.
  stowctl("snapshot create psnap s1");
  EXPECT_EQ(run("inspect -f '{{.State.Status}}' psnap-user"), "running");
  std::string log = read_file(env->docker->log_path());  // the plugin's stderr goes to dockerd's log
  EXPECT_NE(log.find("container paused for snapshot"), std::string::npos);
  EXPECT_NE(log.find("container unpaused"), std::string::npos);
  run("rm -f psnap-user");
  stowctl("snapshot rm psnap s1");
  run("volume rm psnap");
}

// The volumes block of the busybox variant is the example's, byte for byte.
std::string volumes_block(const std::string& compose) {
  size_t at = compose.find("\nvolumes:\n");
  return at == std::string::npos ? "" : compose.substr(at);
}

TEST(PluginE2E, ComposeExampleCreatesStowageVolumeThatSurvivesDownUp) {
  std::string example = read_file(source_dir() + "/deploy/examples/postgres/compose.yaml");
  std::string variant = read_file(source_dir() + "/tests/e2e/compose_busybox.yaml");
  ASSERT_FALSE(volumes_block(example).empty());
  ASSERT_EQ(volumes_block(variant), volumes_block(example));

  ensure_plugin(env->dir->path() + "/plugin-compose");
  std::string project = env->dir->path() + "/compose";
  fs::create_directories(project);
  fs::copy_file(source_dir() + "/tests/e2e/compose_busybox.yaml", project + "/compose.yaml");
  std::string compose = "cd " + project + " && " + env->docker_env() + "STOWAGE_DRIVER=" + kDriver +
                        " docker-compose -p pg -f compose.yaml ";

  shell(compose + "up -d");
  json v = json::parse(run("volume inspect pg_pgdata"))[0];
  EXPECT_EQ(v["Driver"], kDriver);
  EXPECT_EQ(v["Options"], json({{"uid", "999"}, {"gid", "999"}, {"mode", "0700"}}));
  std::string first = env->state + "/volumes/pg_pgdata/_data/first";
  ASSERT_TRUE(wait_until([&] { return !read_file(first).empty(); }, std::chrono::seconds(30)));
  std::string written = read_file(first);
  struct stat st {};
  ASSERT_EQ(::stat((env->state + "/volumes/pg_pgdata/_data").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 999u);
  EXPECT_EQ(st.st_mode & 07777, 0700u);

  shell(compose + "down");
  EXPECT_EQ(run("volume ls -q --filter name=pg_pgdata"), "pg_pgdata");
  shell(compose + "up -d");
  EXPECT_EQ(run("inspect -f '{{.State.Running}}' pg_db_1"), "true");
  EXPECT_EQ(run("exec pg_db_1 cat /var/lib/postgresql/data/first") + "\n", written);  // the same file, not a new one

  shell(compose + "down -v");
  EXPECT_EQ(run("volume ls -q --filter name=pg_pgdata"), "");
  EXPECT_FALSE(fs::exists(env->state + "/volumes/pg_pgdata"));
}

}  // namespace
}  // namespace stowage::test

int main(int argc, char** argv) {
  stowage::test::env = new stowage::test::Env;
  return stowage::test::run_e2e_tests(argc, argv, stowage::test::env);
}
