// The backup commands of stowctl (docs/BACKUP.md §CLI): repo init, backup
// create/ls, restore, forget, prune, check. They work on a repository URL
// directly (--repo or $STOWAGE_REPOSITORY), without the daemon. stowctl
// registers them with add_backup_commands() and, after parsing, hands control
// to run_backup_command().
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace stowage {

// Option values and subcommand handles, filled by CLI11 while parsing.
struct BackupCliState {
  std::string repo;
  bool json = false;
  unsigned workers = 0;  // backup create / restore: 0 = their defaults
  // backup create
  std::string path, name, host;
  std::vector<std::string> tags;
  bool no_parent = false;
  int compression_level = 0;
  // restore
  std::string snapshot, target;
  bool overwrite = false;
  // forget
  int keep_last = 0, keep_hourly = 0, keep_daily = 0, keep_weekly = 0, keep_monthly = 0, keep_yearly = 0;
  std::vector<std::string> keep_tags;
  std::vector<std::string> forget_ids;
  bool dry_run = false;
  // prune
  std::string grace = "24h";
  // check
  bool read_data = false, repair = false;

  CLI::App* init = nullptr;
  CLI::App* create = nullptr;
  CLI::App* ls = nullptr;
  CLI::App* restore = nullptr;
  CLI::App* forget = nullptr;
  CLI::App* prune = nullptr;
  CLI::App* check = nullptr;
};

// Adds the subcommands to `app`; `state` must outlive parsing and the run.
void add_backup_commands(CLI::App& app, BackupCliState& state);

// Runs the parsed backup command (with $STOWAGE_REPOSITORY as the repository
// when no --repo was given) and returns the process exit code (0 ok,
// 1 failure with a message on stderr), or nullopt when the command line
// chose none of them.
std::optional<int> run_backup_command(const BackupCliState& state);

}  // namespace stowage
