// stowaged's configuration: a JSON file (/etc/stowage/stowage.json by
// default), overridden by environment variables, overridden by command-line
// flags, each value checked where it is read so that an error names its
// source, the key and the problem. Every key is listed in config_keys() and
// documented in docs/CONFIG.md. Secrets (S3 credentials) come only from the
// file or the environment, never from flags, and are never printed.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon.h"
#include "stowage/status.h"
#include "stowage/store_s3.h"

namespace stowage {

inline constexpr const char* kDefaultConfigPath = "/etc/stowage/stowage.json";

// One configuration key.
struct ConfigKey {
  std::string_view key;   // dotted path in the JSON file: "repository.s3.region"
  std::string_view env;   // environment variable that overrides it
  std::string_view flag;  // command-line flag ("" for secrets: never on the command line)
  std::string_view help;  // one line for --help and the docs
  bool secret = false;    // redacted in every output
};

// Every key, in documentation order.
const std::vector<ConfigKey>& config_keys();

struct ConfigInput {
  // The file to read. A missing file is fine unless `path_explicit` (given
  // with --config or STOWAGE_CONFIG), then it is an error.
  std::string path = kDefaultConfigPath;
  bool path_explicit = false;
  EnvLookup env;  // process_env() in the daemon
  // Flag values by key ("threads" → "8"), only for flags given on the command
  // line. Keys without a flag (secrets) are refused.
  std::map<std::string, std::string> flags;
  std::string hostname;  // default host_id
};

// Builds the effective options: defaults < file < environment < flags.
// kInvalidArgument (or the file's read error) with a message naming the
// source ("config file /etc/stowage/stowage.json", "environment variable
// STOWAGE_THREADS", "flag --threads"), the key and the problem; unknown keys
// are listed against the valid ones. For an s3:// repository the S3 settings
// are resolved the way s3_config_from_env() does (shared AWS files, the
// STOWAGE_S3_* tuning variables), with the file's repository.s3 keys standing
// in for the variables they are named after.
[[nodiscard]] Result<DaemonOptions> load_config(const ConfigInput& in);

// The effective configuration as a JSON document in the file's shape, with
// secrets replaced by "<redacted>" (or null when unset) and the access key ID
// shortened to its last four characters.
std::string effective_config_json(const DaemonOptions& opts);

// The machine's hostname (for ConfigInput::hostname), "" if unknown.
std::string system_hostname();

}  // namespace stowage
