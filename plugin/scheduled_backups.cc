#include "scheduled_backups.h"

#include "stowage/upkeep.h"

namespace stowage {

namespace {
constexpr const char* kHowToConfigure =
    "configure one with \"repository\": {\"url\": \"file:///var/lib/stowage/repo\"} in /etc/stowage/stowage.json, "
    "STOWAGE_REPOSITORY=URL or stowaged --repository URL (/abs/path, file:///path or s3://bucket/prefix; docs/CONFIG.md)";
}  // namespace

Status check_backup_repository(const VolumeOptions& opts, bool repository_configured) {
  if (opts.backup.empty() || opts.backup == "off" || repository_configured) return Status::ok();
  return Status::failed_precondition("option 'backup': stowaged has no backup repository; " +
                                     std::string(kHowToConfigure));
}

std::vector<ScheduledVolume> scheduled_volumes(VolumeManager& volumes) {
  std::vector<ScheduledVolume> out;
  for (const auto& v : volumes.list(false)) {
    const auto& o = v.record.options;
    if (!o.backup.empty()) out.push_back({v.record.name, o.backup, o.keep});
  }
  return out;
}

Result<std::unique_ptr<Scheduler>> open_scheduled_backups(const ScheduledBackupsOptions& opts, VolumeManager& volumes,
                                                          Logger& log) {
  Scheduler::Options s;
  s.state_path = opts.state_root + "/schedules.json";
  s.max_concurrent = opts.max_concurrent;
  s.volumes = [&volumes] { return scheduled_volumes(volumes); };
  // The one place scheduled backups reach the repository.
  s.backup = [agent = opts.agent](const std::string& volume, std::string_view reason) -> Status {
    if (!agent) {
      return Status::failed_precondition("stowaged has no backup repository; " + std::string(kHowToConfigure));
    }
    return agent->backup_volume(volume, reason);
  };
  s.forget = [agent = opts.agent](const std::string& volume, const ForgetPolicy& policy) -> Status {
    if (!agent) return Status::failed_precondition("stowaged has no backup repository");
    STOWAGE_ASSIGN_OR_RETURN(Repository* repo, agent->repository());
    ForgetOptions f;
    f.policy = policy;
    f.name = volume;
    return run_forget(*repo, f).status();
  };
  return Scheduler::open(std::move(s), log);
}

}  // namespace stowage
