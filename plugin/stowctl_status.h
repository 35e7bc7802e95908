// `stowctl status`: the daemon's GET /v1/status, printed for people or as
// JSON. Kept apart from stowctl_main.cc so that command files stay small.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace stowage {

// Exit codes of `stowctl status`.
inline constexpr int kStatusOk = 0;
inline constexpr int kStatusDaemonDown = 1;       // no answer from stowaged
inline constexpr int kStatusRepositoryDown = 3;   // stowaged answers, its repository does not

// Fetches the status from the daemon on `admin_socket` and prints it to
// stdout (errors to stderr). Returns one of the exit codes above.
int run_status_command(const std::string& admin_socket, bool as_json);

// The human-readable rendering of a status document (exposed for tests).
std::string format_status(const nlohmann::json& status);

}  // namespace stowage
