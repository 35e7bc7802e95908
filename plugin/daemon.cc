#include "daemon.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>

#include "admin_api.h"
#include "backup_agent.h"
#include "daemon_metrics.h"
#include "dir_backend.h"
#include "docker_api.h"
#include "fs_util.h"
#include "http_server.h"
#include "ops_api.h"
#include "repository_store.h"
#include "scheduled_backups.h"
#include "volume_manager.h"

namespace stowage {

namespace {

// Threads for Docker calls that may wait (a journal flush, a lease): as many
// as such calls can usefully wait at once; a flush releases them together.
// Creates and Removes (which wait for a flush) and Mounts and Unmounts
// (which wait only for their own volume) have a pool each, so that a flush
// stall does not queue container starts behind the calls waiting for it.
constexpr unsigned kWaitThreads = 8;
// Threads for admin calls that change something (snapshots, backups,
// restores, takeovers: seconds to hours). Further ones queue; reads of the
// admin API and every Docker call are served meanwhile.
constexpr unsigned kAdminWaitThreads = 4;
// Threads for admin reads: they walk volumes for their usage and probe the
// repository (up to 5 s when it does not answer).
constexpr unsigned kAdminReadThreads = 2;

// Holds an exclusive flock on <root>/stowaged.lock for the process lifetime:
// two daemons on one state root would corrupt it.
Result<int> lock_state_root(const std::string& root) {
  std::string path = root + "/stowaged.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return errno_status(errno, "open " + path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    std::string holder;
    char buf[32] = {};
    if (::pread(fd, buf, sizeof buf - 1, 0) > 0) holder = buf;
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return Status::failed_precondition("another stowaged (pid " + holder + ") is using state root " + root);
    }
    return errno_status(err, "lock " + path);
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The pid is only informational; the lock is what matters.
  }
  return fd;
}

std::string read_boot_id() {
  auto id = read_small_file("/proc/sys/kernel/random/boot_id", 128);
  if (!id.is_ok()) return "";
  std::string s = *id;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Tells systemd (Type=notify) that the sockets are listening. A tiny datagram
// protocol, so we do not need libsystemd.
void notify_systemd_ready(Logger& log) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string p = path;
  if (p.size() >= sizeof addr.sun_path) return;
  std::memcpy(addr.sun_path, p.data(), p.size());
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  const char msg[] = "READY=1";
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + p.size());
  if (::sendto(fd, msg, sizeof msg - 1, 0, reinterpret_cast<sockaddr*>(&addr), len) < 0) {
    log.warn("systemd notification failed", {{"error", std::strerror(errno)}});
  }
  ::close(fd);
}

}  // namespace

Status run_daemon(const DaemonOptions& opts) {
  Logger log(opts.log_format, opts.log_level);
  for (const std::string* secret : {&opts.s3.secret_key, &opts.s3.session_token, &opts.s3.access_key}) {
    log.add_redaction(*secret);
  }
  ::umask(077);  // sockets and state files are private; volume roots get explicit modes
  if (opts.state_root.empty() || opts.state_root[0] != '/') {
    return Status::invalid_argument("--state-root must be an absolute path, got '" + opts.state_root + "'");
  }
  STOWAGE_RETURN_IF_ERROR(make_dirs(opts.state_root));
  STOWAGE_ASSIGN_OR_RETURN(int lock_fd, lock_state_root(opts.state_root));

  DirBackend backend;
  auto engine = CopyEngine::create(CopyEngineOptions{{}, [&log](std::string_view line) {
                                                         log.warn("copy engine", {{"detail", std::string(line)}});
                                                       }});
  SnapshotStore snapshots(*engine);
  DockerQuiescer quiescer(opts.docker_socket, log);
  VolumeManager::Options vopts;
  vopts.state_root = opts.state_root;
  vopts.boot_id = read_boot_id();
  vopts.snapshots = &snapshots;
  vopts.quiescer = &quiescer;
  vopts.check_create = [configured = !opts.repository_url.empty()](const VolumeOptions& o) {
    return check_backup_repository(o, configured);
  };
  STOWAGE_ASSIGN_OR_RETURN(auto volumes, VolumeManager::open(vopts, backend, log));

  MetricsRegistry registry;
  DaemonMetrics metrics(registry, kStowageVersion);
  metrics.collect_volumes(*volumes);

  // With a repository: leases, restore on a new host, final backups (docs/MIGRATION.md).
  std::unique_ptr<BackupAgent> agent;
  VolumeStatusHooks status_hooks;
  if (!opts.repository_url.empty()) {
    // Fails only on a malformed repository setting; reaching the repository
    // is the agent's background work, so an unreachable S3 endpoint never
    // keeps Docker from the local volumes.
    STOWAGE_RETURN_IF_ERROR(open_repository_store(opts, &metrics).status());
    BackupAgent::Options aopts;
    aopts.open_store = [&opts, &metrics] { return open_repository_store(opts, &metrics); };
    aopts.state_dir = opts.state_root + "/agent";
    aopts.lease.host = opts.host_id;
    aopts.lease.daemon_id = vopts.boot_id + "/" + std::to_string(::getpid());
    aopts.lease.pid = ::getpid();
    aopts.lease.ttl_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(opts.lease_ttl).count();
    aopts.renew_interval_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(opts.lease_renew).count();
    aopts.mount_wait_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(opts.mount_wait).count();
    aopts.call_budget_ns = aopts.mount_wait_ns;
    STOWAGE_ASSIGN_OR_RETURN(agent, BackupAgent::open(std::move(aopts), *volumes, log));
    status_hooks.lease = [a = agent.get()](const std::string& v) { return a->lease_json(v); };
    status_hooks.last_backup = [a = agent.get()](const std::string& v) { return a->last_backup_json(v); };
  }

  // Scheduled backups of volumes created with backup= (and keep=), docs/BACKUP.md.
  STOWAGE_ASSIGN_OR_RETURN(auto scheduler, open_scheduled_backups({opts.state_root, opts.backup_max_concurrent, agent.get()},
                                                                  *volumes, log));

  boost::asio::io_context ioc;
  DockerVolumeApi docker_api(*volumes, log, &metrics);
  docker_api.set_agent(agent.get());
  AdminApi admin_api(*volumes, log, kStowageVersion);
  admin_api.set_agent(agent.get());
  admin_api.set_scheduler(scheduler.get());
  OpsApi ops_api(*volumes, metrics, opts, log, status_hooks);

  STOWAGE_RETURN_IF_ERROR(make_dirs(parent_dir(opts.plugin_socket)));
  STOWAGE_RETURN_IF_ERROR(make_dirs(parent_dir(opts.admin_socket)));
  // The admin socket first: once the plugin socket accepts, everything is up.
  // No admin call that may take long runs on the I/O threads that answer
  // Docker: its POSTs and DELETEs (a snapshot copy, a backup) on one pool,
  // its reads of volumes (usage walks, the repository's backups) and status
  // (a repository probe) on another, so that they are answered while long
  // operations fill the first. Health, metrics and schedules stay on the I/O
  // threads, never behind a slow read. Destroyed (joined) after the servers
  // stop.
  boost::asio::thread_pool admin_pool(kAdminWaitThreads);
  boost::asio::thread_pool admin_read_pool(kAdminReadThreads);
  HttpServer::Options admin_opts;
  admin_opts.socket_path = opts.admin_socket;
  admin_opts.socket_mode = 0600;
  admin_opts.name = "admin";
  admin_opts.pool_for = [&](const HttpRequest& r) -> boost::asio::thread_pool* {
    if (r.method != "GET") return &admin_pool;
    const bool slow = r.target.starts_with("/v1/volumes") || r.target.starts_with("/v1/status");
    return slow ? &admin_read_pool : nullptr;
  };
  STOWAGE_ASSIGN_OR_RETURN(
      auto admin_server,
      HttpServer::listen(
          ioc, admin_opts,
          [&](const HttpRequest& r) {
            if (auto reply = ops_api.handle_admin(r)) return *reply;
            return admin_api.handle(r);
          },
          [](int status, std::string_view msg) { return AdminApi::error(status, "BadRequest", msg); }, log));

  // Docker calls that may wait run on a pool of their own, so a slow flush
  // (or object store) never holds up the I/O threads serving Mount, Get and
  // Path for other containers (HttpServer::Options::pool_for). Destroyed
  // before docker_api and the volumes its handlers use.
  boost::asio::thread_pool wait_pool(kWaitThreads);
  boost::asio::thread_pool mount_pool(kWaitThreads);
  HttpServer::Options plugin_opts;
  plugin_opts.socket_path = opts.plugin_socket;
  plugin_opts.socket_mode = 0660;
  plugin_opts.name = "docker";
  plugin_opts.pool_for = [&](const HttpRequest& r) -> boost::asio::thread_pool* {
    // Create and Remove wait for the journal's flush; Mount and Unmount for
    // a snapshot, clone or rollback of their volume (its `busy` lock, held
    // for a whole copy) and, with a repository, for leases, a restore or a
    // final backup. Get, Path, List and Capabilities never wait (Get takes
    // the last usage measure: VolumeManager::Usage::kCached).
    if (r.target == "/VolumeDriver.Create" || r.target == "/VolumeDriver.Remove") return &wait_pool;
    if (r.target == "/VolumeDriver.Mount" || r.target == "/VolumeDriver.Unmount") return &mount_pool;
    return nullptr;
  };
  STOWAGE_ASSIGN_OR_RETURN(
      auto plugin_server,
      HttpServer::listen(ioc, plugin_opts, [&](const HttpRequest& r) { return docker_api.handle(r); },
                         DockerVolumeApi::error, log));
  std::unique_ptr<HttpServer> metrics_server;
  if (!opts.metrics_listen.empty()) {
    HttpServer::Options mopts;
    mopts.name = "metrics";
    mopts.body_limit = 4096;
    mopts.idle_timeout = std::chrono::seconds(30);
    mopts.max_connections = 64;
    STOWAGE_ASSIGN_OR_RETURN(
        metrics_server,
        HttpServer::listen_tcp(
            ioc, mopts, opts.metrics_listen, [&](const HttpRequest& r) { return ops_api.handle_metrics_listener(r); },
            [](int status, std::string_view msg) { return AdminApi::error(status, "BadRequest", msg); }, log));
  }
  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    log.info("shutting down", {{"signal", std::to_string(sig)}});
    plugin_server->stop();
    admin_server->stop();
    if (metrics_server) metrics_server->stop();
    ioc.stop();
  });

  log.info("stowaged ready", {{"version", kStowageVersion}, {"state_root", opts.state_root},
                              {"plugin_socket", opts.plugin_socket}, {"admin_socket", opts.admin_socket},
                              {"config_file", opts.config_file}, {"repository", opts.repository_url},
                              {"host_id", opts.host_id}, {"metrics_listen", opts.metrics_listen}});
  scheduler->start();
  notify_systemd_ready(log);

  unsigned n = std::max(1u, opts.threads);
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < n; ++i) pool.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  scheduler->stop();  // waits for running backups, before the agent goes
  ::close(lock_fd);
  log.info("stopped");
  return Status::ok();
}

}  // namespace stowage
