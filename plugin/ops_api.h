// Operations endpoints of the daemon: GET /v1/metrics (Prometheus text) and
// GET /v1/status (health, repository reachability, per-volume state) on the
// admin socket, and GET /metrics on the optional TCP metrics listener.
// Documented in docs/API.md and docs/OPERATIONS.md.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "daemon.h"
#include "http_server.h"
#include "logger.h"
#include "daemon_metrics.h"
#include "volume_manager.h"

namespace stowage {

// What the backup and lease code reports per volume in GET /v1/status. Each
// returns the JSON for one volume, or null when there is nothing to say
// (never backed up / no lease held). Unset hooks give null. Called on admin
// I/O threads: must be thread-safe and must not block for long.
struct VolumeStatusHooks {
  std::function<nlohmann::json(const std::string& volume)> last_backup;
  std::function<nlohmann::json(const std::string& volume)> lease;
};

class OpsApi {
 public:
  // Everything passed in must outlive the OpsApi.
  OpsApi(VolumeManager& volumes, DaemonMetrics& metrics, const DaemonOptions& opts, Logger& log,
         VolumeStatusHooks hooks = {});

  // Answers GET /v1/metrics and GET /v1/status; nullopt for any other path
  // (the caller passes it on to the admin API).
  std::optional<HttpResponse> handle_admin(const HttpRequest& req);

  // The TCP listener: GET /metrics, 404/405 for anything else.
  HttpResponse handle_metrics_listener(const HttpRequest& req);

  // The status document (see docs/API.md).
  nlohmann::json status();

 private:
  HttpResponse metrics_response();

  VolumeManager& volumes_;
  DaemonMetrics& metrics_;
  const DaemonOptions& opts_;
  Logger& log_;
  VolumeStatusHooks hooks_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  int64_t started_unix_ns_;
};

}  // namespace stowage
