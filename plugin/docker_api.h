// The Docker volume plugin protocol (VolumeDriver, v1.2): turns Docker's POST
// requests into VolumeManager calls and answers in the exact JSON shapes Docker
// reads. Every failure is `{"Err":"<message>"}` with a non-2xx status, as
// Docker's own plugin helpers answer.
#pragma once

#include "backup_agent.h"
#include "daemon_metrics.h"
#include "http_server.h"
#include "logger.h"
#include "volume_manager.h"

namespace stowage {

class DockerVolumeApi {
 public:
  // `metrics`, when given, counts every call by endpoint and outcome.
  DockerVolumeApi(VolumeManager& volumes, Logger& log, DaemonMetrics* metrics = nullptr)
      : volumes_(volumes), log_(log), metrics_(metrics) {}

  // A failure's Err ends with " [request <id>]" so that what Docker shows the
  // user points at the daemon's log lines for the call.
  HttpResponse handle(const HttpRequest& req);

  // With a repository: Create/Mount/Unmount/Remove also go through the
  // backup agent (leases, restore on a new host, final backup). May be null.
  void set_agent(BackupAgent* agent) { agent_ = agent; }

  // {"Err": message} with the plugin content type.
  static HttpResponse error(int status, std::string_view message);

 private:
  VolumeManager& volumes_;
  Logger& log_;
  DaemonMetrics* metrics_;
  BackupAgent* agent_ = nullptr;
};

}  // namespace stowage
