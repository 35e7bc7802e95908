// A simulated Docker host for multi-host end-to-end tests on one machine: its
// own mount namespace, its own dockerd (data-root, exec-root, API socket) and
// its own stowaged (state root, plugin and admin sockets, host id), sharing
// with other hosts only what the test gives them all (a repository bucket).
//
// dockerd finds volume plugins in the fixed directory /run/docker/plugins. A
// Host keeps a holder process in a private mount namespace (`unshare -m
// --propagation private`) where the host's own `<dir>/plugins` directory is
// bind-mounted on /run/docker/plugins; dockerd and stowaged are started in
// that namespace with `nsenter -t <holder> -m`. So each host's dockerd sees
// only its own stowage.sock, while the test reaches every socket through the
// host's directory. Mounts made inside the namespace (container root
// filesystems) never propagate out and vanish with its last process.
//
// Must be used from a process that called isolate_plugin_dir() (run_e2e_tests
// does), so that orphaned shims are reaped by the test process.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon_harness.h"
#include "docker_harness.h"

namespace stowage::test {

struct HostOptions {
  std::string name;  // "a", "b": used in logs and, by default, as the host id
  std::string dir;   // scratch directory of this host (created)
  // Extra stowaged arguments (--repository, --host-id, lease settings, …) and
  // environment (S3 endpoint, credentials), kept across restarts.
  std::vector<std::string> stowaged_args;
  std::map<std::string, std::string> stowaged_env;
};

class Host {
 public:
  explicit Host(HostOptions opts);
  // teardown().
  ~Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  // Creates the namespace, then starts stowaged and dockerd in it. Fails the
  // current test (and returns false) with the reason and log tails.
  bool start();

  // Removes every container (starting dockerd again if it was killed), stops
  // dockerd and stowaged, ends the holder, and waits (bounded) until no
  // process is left in the namespace; a survivor fails the current test and
  // is killed. Idempotent. Runs from the destructor, so also after failures.
  void teardown();

  // Each daemon on its own, in the namespace. start_* fail the current test
  // (and return false) when the daemon does not come up.
  bool start_stowaged();
  int stop_stowaged();  // SIGTERM: a clean stop
  void kill_stowaged();  // SIGKILL: a crash
  bool start_dockerd();
  int stop_dockerd();  // SIGTERM: containers stopped, volumes unmounted
  void kill_dockerd();  // SIGKILL of dockerd (containers stay up under their shims)
  // A power cut, as far as one machine can fake it: SIGKILL of stowaged,
  // dockerd, containerd, every shim and every container process of this host
  // (everything in its namespace and in namespaces below it), so nothing of
  // it runs on and nothing gets a final sync.
  void crash();

  // docker CLI against this host's engine; exit status, combined output in *out.
  int docker(const std::string& args, std::string* out = nullptr);
  // stowctl against this host's stowaged admin socket.
  int stowctl(const std::string& args, std::string* out = nullptr);

  // This host's backup agent state of `volume`: the "backup" object of
  // `stowctl volume inspect NAME --json` (lease, last_backup, synced_snapshot,
  // restore, fenced; docs/MIGRATION.md), or null when there is none.
  nlohmann::json backup_status(const std::string& volume);
  // Waits (bounded) until the final backup that follows the last Unmount of
  // `volume` is done and its lease released, as a planned move needs before
  // another host mounts it. The last status seen goes to *last.
  bool wait_final_backup(const std::string& volume, std::chrono::seconds timeout, nlohmann::json* last = nullptr);

  const std::string& name() const { return opts_.name; }
  const std::string& dir() const { return opts_.dir; }
  DockerEngine& engine() { return *engine_; }
  Daemon& stowaged() { return *daemon_; }
  // The plugin socket this host's dockerd uses (its /run/docker/plugins/stowage.sock),
  // by a path valid in the test's namespace.
  std::string plugin_socket() const { return opts_.dir + "/plugins/stowage.sock"; }
  // The holder's pid (-1 when not started) and its mount namespace ("mnt:[…]").
  pid_t ns_pid() const;
  const std::string& mount_ns() const { return ns_id_; }

  // Pids of live (non-zombie) processes of this host other than the
  // namespace holder: those whose mount namespace is this host's, and their
  // descendants (containers, in namespaces of their own).
  std::vector<pid_t> processes() const;

 private:
  bool start_namespace();
  void reap_orphans();

  HostOptions opts_;
  std::unique_ptr<Subprocess> holder_;
  std::string ns_id_;
  std::unique_ptr<DockerEngine> engine_;
  std::unique_ptr<Daemon> daemon_;
  bool torn_down_ = false;
};

// Reads /proc/<pid>/ns/mnt ("mnt:[4026531840]"); "" when the process is gone
// or a zombie.
std::string mount_ns_of(pid_t pid);

}  // namespace stowage::test
