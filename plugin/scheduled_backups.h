// Scheduled backups in stowaged: the Scheduler (scheduler.h) over the volume
// catalog, backing volumes up through the BackupAgent and applying each
// volume's keep= policy to its snapshots in the repository. run_daemon()
// opens one whether or not a repository is configured, so that volumes
// created with backup= under an earlier configuration show why their runs
// fail in `stowctl schedule ls`.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backup_agent.h"
#include "logger.h"
#include "scheduler.h"
#include "stowage/repository.h"
#include "stowage/volume.h"
#include "volume_manager.h"

namespace stowage {

// Backups at once, daemon-wide, unless configured otherwise.
inline constexpr unsigned kDefaultMaxConcurrentBackups = 1;

// For VolumeManager::Options::check_create: a volume created with
// backup=SCHEDULE (anything but off) needs a repository; the error says how
// to configure one.
[[nodiscard]] Status check_backup_repository(const VolumeOptions& opts, bool repository_configured);

// Every volume with its backup= and keep= options, for Scheduler::Options::volumes.
std::vector<ScheduledVolume> scheduled_volumes(VolumeManager& volumes);

struct ScheduledBackupsOptions {
  std::string state_root;  // the schedule state lives in <state_root>/schedules.json
  unsigned max_concurrent = kDefaultMaxConcurrentBackups;
  // The agent backs volumes up and its repository is where keep= is applied
  // with forget; null when no repository is configured (each run then fails,
  // recorded, with how to configure one).
  BackupAgent* agent = nullptr;
};

// Opens (but does not start) the daemon's scheduler. The volume manager,
// agent, repository and logger must outlive it.
[[nodiscard]] Result<std::unique_ptr<Scheduler>> open_scheduled_backups(const ScheduledBackupsOptions& opts,
                                                                        VolumeManager& volumes, Logger& log);

}  // namespace stowage
