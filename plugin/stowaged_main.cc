// stowaged: the Stowage daemon. See `stowaged --help` and docs/OPERATIONS.md.
#include <cstdio>

#include <CLI/CLI.hpp>

#include "daemon.h"

int main(int argc, char** argv) {
  stowage::DaemonOptions opts;
  CLI::App app{
      "stowaged — Docker volume plugin daemon for persistent, snapshot-able, backed-up volumes.\n"
      "Serves Docker's VolumeDriver protocol on the plugin socket and stowctl's admin API on the\n"
      "admin socket. Volumes live under the state root and survive restarts of stowaged, dockerd\n"
      "and the host.",
      "stowaged"};
  app.set_version_flag("--version", stowage::kStowageVersion);
  app.add_option("--state-root", opts.state_root, "Directory holding volumes and their records")
      ->envname("STOWAGE_STATE_ROOT")
      ->capture_default_str();
  app.add_option("--plugin-socket", opts.plugin_socket, "Unix socket Docker connects to")
      ->envname("STOWAGE_PLUGIN_SOCKET")
      ->capture_default_str();
  app.add_option("--admin-socket", opts.admin_socket, "Unix socket for stowctl (mode 0600)")
      ->envname("STOWAGE_ADMIN_SOCKET")
      ->capture_default_str();
  app.add_option("--docker-socket", opts.docker_socket, "Docker API socket, used to pause containers (quiesce=pause)")
      ->envname("STOWAGE_DOCKER_SOCKET")
      ->capture_default_str();
  app.add_option("--threads", opts.threads, "I/O threads")->check(CLI::Range(1u, 256u))->capture_default_str();
  std::string log_format = "logfmt", log_level = "info";
  app.add_option("--log-format", log_format, "logfmt or json")
      ->check(CLI::IsMember({"logfmt", "json"}))
      ->envname("STOWAGE_LOG_FORMAT")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->envname("STOWAGE_LOG_LEVEL")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  opts.log_format = log_format == "json" ? stowage::LogFormat::kJson : stowage::LogFormat::kLogfmt;
  opts.log_level = log_level == "debug"  ? stowage::LogLevel::kDebug
                   : log_level == "warn" ? stowage::LogLevel::kWarn
                   : log_level == "error" ? stowage::LogLevel::kError
                                          : stowage::LogLevel::kInfo;
  stowage::Status st = stowage::run_daemon(opts);
  if (!st.is_ok()) {
    std::fprintf(stderr, "stowaged: %s\n", st.message().c_str());
    return 1;
  }
  return 0;
}
