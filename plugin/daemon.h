// The stowaged process: takes the state root's lock, loads the volume catalog,
// and only then serves the Docker plugin socket and the admin socket, so that
// Docker's first Get after a restart already sees every volume.
#pragma once

#include <string>

#include "logger.h"
#include "stowage/status.h"

namespace stowage {

struct DaemonOptions {
  std::string state_root = "/var/lib/stowage";
  std::string plugin_socket = "/run/docker/plugins/stowage.sock";
  std::string admin_socket = "/run/stowage/admin.sock";
  std::string docker_socket = "/var/run/docker.sock";  // Docker API, for quiesce=pause
  unsigned threads = 4;  // I/O threads serving both sockets
  LogFormat log_format = LogFormat::kLogfmt;
  LogLevel log_level = LogLevel::kInfo;
};

inline constexpr const char* kStowageVersion = "0.1.0";

// Runs until SIGTERM or SIGINT. Returns the reason it could not start or run.
[[nodiscard]] Status run_daemon(const DaemonOptions& opts);

}  // namespace stowage
