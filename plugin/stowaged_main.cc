// stowaged: the Stowage daemon. See `stowaged --help`, docs/CONFIG.md and
// docs/OPERATIONS.md.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>

#include <CLI/CLI.hpp>

#include "config.h"
#include "daemon.h"
#include "fs_util.h"

int main(int argc, char** argv) {
  CLI::App app{
      "stowaged — Docker volume plugin daemon for persistent, snapshot-able, backed-up volumes.\n"
      "Serves Docker's VolumeDriver protocol on the plugin socket and stowctl's admin API on the\n"
      "admin socket. Volumes live under the state root and survive restarts of stowaged, dockerd\n"
      "and the host.\n\n"
      "Settings come from the config file (JSON, default /etc/stowage/stowage.json; every key in\n"
      "docs/CONFIG.md), overridden by environment variables, overridden by these flags. S3\n"
      "credentials are read only from the config file or AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY\n"
      "and AWS_SESSION_TOKEN (or the shared AWS credentials file), never from flags.",
      "stowaged"};
  app.set_version_flag("--version", stowage::kStowageVersion);
  std::string config_path = stowage::kDefaultConfigPath;
  auto* config_opt = app.add_option("--config", config_path,
                                    "Config file (JSON); a missing default file is fine, a missing given one is an "
                                    "error [$STOWAGE_CONFIG]")
                         ->capture_default_str();
  bool check_only = false;
  app.add_flag("--check-config", check_only,
               "Validate the configuration, print the effective settings (secrets redacted) and exit: 0 valid, "
               "1 invalid");

  const stowage::DaemonOptions defaults;
  const std::map<std::string, std::string> shown_defaults = {
      {"state_root", defaults.state_root},       {"plugin_socket", defaults.plugin_socket},
      {"admin_socket", defaults.admin_socket},   {"docker_socket", defaults.docker_socket},
      {"threads", std::to_string(defaults.threads)}, {"log.format", "logfmt"},
      {"log.level", "info"},                      {"lease.ttl_seconds", std::to_string(defaults.lease_ttl.count())},
      {"lease.renew_seconds", std::to_string(defaults.lease_renew.count())}, {"host_id", "the hostname"},
      {"backup.max_concurrent", std::to_string(defaults.backup_max_concurrent)},
      {"backup.mount_wait_seconds", std::to_string(defaults.mount_wait.count())}};
  std::map<std::string, std::string> flag_values;
  std::map<std::string, CLI::Option*> flag_opts;
  for (const auto& k : stowage::config_keys()) {
    if (k.flag.empty()) continue;  // secrets: config file or environment only
    std::string key(k.key);
    std::string desc = std::string(k.help) + " [" + key + ", $" + std::string(k.env) + "]";
    if (auto it = shown_defaults.find(key); it != shown_defaults.end()) desc += " (default: " + it->second + ")";
    flag_opts[key] = app.add_option(std::string(k.flag), flag_values[key], desc);
  }
  CLI11_PARSE(app, argc, argv);
  stowage::raise_open_file_limit();  // deep trees hold a descriptor per level

  stowage::ConfigInput in;
  in.env = stowage::process_env();
  if (config_opt->count() > 0) {
    in.path = config_path;
    in.path_explicit = true;
  } else if (const char* p = std::getenv("STOWAGE_CONFIG"); p && *p) {
    in.path = p;
    in.path_explicit = true;
  }
  for (const auto& [key, opt] : flag_opts) {
    if (opt->count() > 0) in.flags[key] = flag_values[key];
  }
  in.hostname = stowage::system_hostname();

  auto opts = stowage::load_config(in);
  if (!opts.is_ok()) {
    std::fprintf(stderr, "stowaged: configuration error: %s\n", opts.status().message().c_str());
    return 1;
  }
  if (check_only) {
    std::cout << stowage::effective_config_json(*opts) << "\n";
    std::fprintf(stderr, "stowaged: configuration is valid%s\n",
                 opts->config_file.empty() ? " (no config file read)" : (" (read " + opts->config_file + ")").c_str());
    return 0;
  }
  stowage::Status st = stowage::run_daemon(*opts);
  if (!st.is_ok()) {
    std::fprintf(stderr, "stowaged: %s\n", st.message().c_str());
    return 1;
  }
  return 0;
}
