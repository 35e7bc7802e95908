// The admin API that `stowctl` speaks on the admin socket (mode 0600): JSON
// over HTTP. Documented in docs/API.md. Errors are
// `{"error":{"code":"NotFound","message":"…"}}` with a matching HTTP status.
#pragma once

#include <string>

#include "backup_agent.h"
#include "http_server.h"
#include "logger.h"
#include "scheduler.h"
#include "volume_manager.h"

namespace stowage {

class AdminApi {
 public:
  AdminApi(VolumeManager& volumes, Logger& log, std::string version)
      : volumes_(volumes), log_(log), version_(std::move(version)) {}

  HttpResponse handle(const HttpRequest& req);

  // With a repository: the backup, restore and takeover endpoints and the
  // "backup" object of a volume. Null: those endpoints answer 501.
  void set_agent(BackupAgent* agent) { agent_ = agent; }
  // GET /v1/schedules (stowctl schedule ls); null: it answers 501.
  void set_scheduler(Scheduler* scheduler) { scheduler_ = scheduler; }
  static HttpResponse error(int status, std::string_view code, std::string_view message);

  // The JSON form of a volume, shared with stowctl's --json output.
  static std::string volume_to_json(const VolumeInfo& v);

 private:
  VolumeManager& volumes_;
  Logger& log_;
  std::string version_;
  BackupAgent* agent_ = nullptr;
  Scheduler* scheduler_ = nullptr;
};

}  // namespace stowage
