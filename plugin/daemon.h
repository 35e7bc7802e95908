// The stowaged process: takes the state root's lock, loads the volume catalog,
// and only then serves the Docker plugin socket and the admin socket, so that
// Docker's first Get after a restart already sees every volume.
#pragma once

#include <chrono>
#include <string>

#include "logger.h"
#include "stowage/status.h"
#include "stowage/store_s3.h"

namespace stowage {

struct DaemonOptions {
  std::string state_root = "/var/lib/stowage";
  std::string plugin_socket = "/run/docker/plugins/stowage.sock";
  std::string admin_socket = "/run/stowage/admin.sock";
  std::string docker_socket = "/var/run/docker.sock";  // Docker API, for quiesce=pause
  unsigned threads = 4;  // I/O threads serving both sockets
  LogFormat log_format = LogFormat::kLogfmt;
  LogLevel log_level = LogLevel::kInfo;

  // Set from /etc/stowage/stowage.json, STOWAGE_* variables and flags by
  // load_config() (plugin/config.h; every key in docs/CONFIG.md).
  std::string config_file;     // the file read, "" if none
  std::string metrics_listen;  // "127.0.0.1:9723": also serve GET /metrics over TCP; "" = admin socket only
  bool metrics_allow_non_loopback = false;  // checked by load_config()
  std::string repository_url;  // file:///path or s3://bucket[/prefix]; "" = no repository
  S3Config s3;                 // when repository_url is s3://: endpoint, region, credentials (secret: never log)
  std::string host_id;         // this host's name in leases; defaults to the hostname
  std::chrono::seconds lease_ttl{60};    // a lease not renewed for this long has expired
  std::chrono::seconds lease_renew{20};  // how often a held lease is renewed (< lease_ttl)
  unsigned backup_max_concurrent = 1;    // scheduled backups at once, daemon-wide (plugin/scheduler.h)
  // How long a Mount waits for a restore before failing with "retry"; under
  // Docker's 2-minute plugin timeout.
  std::chrono::seconds mount_wait{90};
};

inline constexpr const char* kStowageVersion = "0.1.0";

// Runs until SIGTERM or SIGINT. Returns the reason it could not start or run.
[[nodiscard]] Status run_daemon(const DaemonOptions& opts);

}  // namespace stowage
