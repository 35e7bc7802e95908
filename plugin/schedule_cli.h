// `stowctl schedule …`: the backup schedules of the daemon's volumes (GET
// /v1/schedules on the admin socket), for people or as JSON. stowctl
// registers the commands with add_schedule_commands() and, after parsing,
// hands control to run_schedule_command().
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace stowage {

struct ScheduleCliState {
  bool json = false;
  CLI::App* schedule = nullptr;
  CLI::App* ls = nullptr;
};

void add_schedule_commands(CLI::App& app, ScheduleCliState& st);

// The exit code when a schedule command was parsed, else nullopt.
std::optional<int> run_schedule_command(const ScheduleCliState& st, const std::string& admin_socket);

// The table `stowctl schedule ls` prints for a GET /v1/schedules reply
// (exposed for tests).
std::string format_schedule_table(const nlohmann::json& reply);

}  // namespace stowage
