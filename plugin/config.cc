#include "config.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/asio/ip/address.hpp>
#include <nlohmann/json.hpp>

#include "stowage/store_s3.h"

namespace stowage {

namespace {

using json = nlohmann::json;

enum class Kind { kPath, kCount, kBool, kEnum, kListen, kUrl, kEndpoint, kRegion, kHostId, kSecret };

struct Spec {
  Spec(std::string_view k, std::string_view env, std::string_view flag, std::string_view help, Kind kind,
       uint64_t min = 0, uint64_t max = 0, std::vector<std::string_view> choices = {})
      : key{k, env, flag, help, kind == Kind::kSecret}, kind(kind), min(min), max(max), choices(std::move(choices)) {}
  ConfigKey key;
  Kind kind;
  uint64_t min, max;                      // kCount
  std::vector<std::string_view> choices;  // kEnum
};

const std::vector<Spec>& specs() {
  static const std::vector<Spec> kSpecs = {
      {"state_root", "STOWAGE_STATE_ROOT", "--state-root", "Directory holding volumes and their records", Kind::kPath},
      {"plugin_socket", "STOWAGE_PLUGIN_SOCKET", "--plugin-socket", "Unix socket Docker connects to", Kind::kPath},
      {"admin_socket", "STOWAGE_ADMIN_SOCKET", "--admin-socket", "Unix socket for stowctl (mode 0600)", Kind::kPath},
      {"docker_socket", "STOWAGE_DOCKER_SOCKET", "--docker-socket",
       "Docker API socket, used to pause containers (quiesce=pause)", Kind::kPath},
      {"threads", "STOWAGE_THREADS", "--threads", "I/O threads serving the sockets (1..256)", Kind::kCount, 1, 256},
      {"log.format", "STOWAGE_LOG_FORMAT", "--log-format", "Log line format: logfmt or json", Kind::kEnum, 0, 0,
       {"logfmt", "json"}},
      {"log.level", "STOWAGE_LOG_LEVEL", "--log-level", "Least severe level logged: debug, info, warn or error",
       Kind::kEnum, 0, 0, {"debug", "info", "warn", "error"}},
      {"metrics.listen", "STOWAGE_METRICS_LISTEN", "--metrics-listen",
       "Also serve GET /metrics over TCP on this loopback address, e.g. 127.0.0.1:9723 (\"\" = off)", Kind::kListen},
      {"metrics.allow_non_loopback", "STOWAGE_METRICS_ALLOW_NON_LOOPBACK", "--metrics-allow-non-loopback",
       "Allow metrics.listen on a non-loopback address (the endpoint has no authentication)", Kind::kBool},
      {"repository.url", "STOWAGE_REPOSITORY", "--repository",
       "Backup repository: /abs/path, file:///abs/path or s3://bucket[/prefix] (\"\" = none)", Kind::kUrl},
      {"repository.s3.endpoint", "STOWAGE_S3_ENDPOINT", "--s3-endpoint",
       "http(s)://host[:port] of an S3-compatible server (\"\" = AWS)", Kind::kEndpoint},
      {"repository.s3.region", "AWS_REGION", "--s3-region", "S3 signing region (default us-east-1)", Kind::kRegion},
      {"repository.s3.access_key_id", "AWS_ACCESS_KEY_ID", "", "S3 access key ID", Kind::kSecret},
      {"repository.s3.secret_access_key", "AWS_SECRET_ACCESS_KEY", "", "S3 secret access key", Kind::kSecret},
      {"repository.s3.session_token", "AWS_SESSION_TOKEN", "", "S3 session token (temporary credentials)",
       Kind::kSecret},
      {"host_id", "STOWAGE_HOST_ID", "--host-id",
       "This host's name in repository leases (letters, digits, . _ -; default: the hostname)", Kind::kHostId},
      {"lease.ttl_seconds", "STOWAGE_LEASE_TTL_SECONDS", "--lease-ttl-seconds",
       "A volume lease not renewed for this long has expired (2..86400)", Kind::kCount, 2, 86400},
      {"lease.renew_seconds", "STOWAGE_LEASE_RENEW_SECONDS", "--lease-renew-seconds",
       "How often a held lease is renewed; less than lease.ttl_seconds", Kind::kCount, 1, 86400},
      {"backup.max_concurrent", "STOWAGE_BACKUP_MAX_CONCURRENT", "--backup-max-concurrent",
       "Scheduled backups running at once, daemon-wide (1..64)", Kind::kCount, 1, 64},
      {"backup.mount_wait_seconds", "STOWAGE_MOUNT_WAIT_SECONDS", "--mount-wait-seconds",
       "How long a Mount waits for a restore from the repository before it fails with \"retry\" (1..110)",
       Kind::kCount, 1, 110},
  };
  return kSpecs;
}

const Spec* find_spec(std::string_view key) {
  for (const auto& s : specs()) {
    if (s.key.key == key) return &s;
  }
  return nullptr;
}

// The sections of the file: objects whose members are keys.
bool is_section(std::string_view path) {
  std::string prefix = std::string(path) + ".";
  for (const auto& s : specs()) {
    if (s.key.key.starts_with(prefix)) return true;
  }
  return false;
}

std::string valid_keys() {
  std::string out;
  for (const auto& s : specs()) {
    if (!out.empty()) out += ", ";
    out += s.key.key;
  }
  return out;
}

// A value and where it came from ("config file X", "environment variable Y",
// "flag --z"), for messages that point at the right place.
struct Value {
  std::string text;
  uint64_t number = 0;
  bool flag = false;
  std::string source;
};

bool valid_host_id(std::string_view v) {
  if (v.empty() || v.size() > 64) return false;
  return std::all_of(v.begin(), v.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

// host:port → the parsed address; "localhost" means 127.0.0.1.
Result<boost::asio::ip::address> parse_listen(std::string_view v) {
  auto colon = v.rfind(':');
  if (colon == std::string_view::npos) return Status::invalid_argument("must be HOST:PORT, e.g. 127.0.0.1:9723");
  std::string host(v.substr(0, colon));
  std::string port(v.substr(colon + 1));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(host, ec);
  if (ec) return Status::invalid_argument("'" + host + "' is not an IP address (HOST:PORT, e.g. 127.0.0.1:9723)");
  char* end = nullptr;
  errno = 0;
  unsigned long p = std::strtoul(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || errno != 0 || p == 0 || p > 65535) {
    return Status::invalid_argument("port '" + port + "' is not a number in 1..65535");
  }
  return addr;
}

// Checks a string value for `spec`; the message says what is wrong, without
// echoing secrets.
Status check_string(const Spec& spec, const std::string& v) {
  auto bad = [&](std::string why) { return Status::invalid_argument(std::move(why)); };
  switch (spec.kind) {
    case Kind::kPath:
      if (v.empty() || v[0] != '/') return bad("must be an absolute path, got '" + v + "'");
      return Status::ok();
    case Kind::kEnum:
      if (std::find(spec.choices.begin(), spec.choices.end(), v) == spec.choices.end()) {
        std::string list;
        for (auto c : spec.choices) list += (list.empty() ? "" : ", ") + std::string(c);
        return bad("must be one of " + list + ", got '" + v + "'");
      }
      return Status::ok();
    case Kind::kListen:
      if (v.empty()) return Status::ok();
      return parse_listen(v).status();
    case Kind::kUrl: {
      if (v.empty()) return Status::ok();
      if (v.starts_with("file://")) {
        if (v.size() < 8 || v[7] != '/') return bad("file URLs need an absolute path: file:///path, got '" + v + "'");
        return Status::ok();
      }
      if (v.starts_with("s3://")) return check_s3_url(v);
      if (v.starts_with("/")) return Status::ok();
      return bad("must be an absolute path, file:///path or s3://bucket[/prefix], got '" + v + "'");
    }
    case Kind::kEndpoint:
      if (v.empty()) return Status::ok();
      if (!v.starts_with("http://") && !v.starts_with("https://")) {
        return bad("must start with http:// or https://, got '" + v + "'");
      }
      if (v.find('@') != std::string::npos) return bad("must not contain user info (credentials have their own keys)");
      return Status::ok();
    case Kind::kRegion:
      if (v.empty() || !std::all_of(v.begin(), v.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
          })) {
        return bad("must be a region name like us-east-1, got '" + v + "'");
      }
      return Status::ok();
    case Kind::kHostId:
      if (!valid_host_id(v)) return bad("must be 1..64 letters, digits, '.', '_' or '-', got '" + v + "'");
      return Status::ok();
    case Kind::kSecret:
      return Status::ok();
    case Kind::kCount:
    case Kind::kBool:
      break;
  }
  return Status::ok();
}

// A value given as text (environment, flags).
Result<Value> parse_text(const Spec& spec, const std::string& text) {
  Value v;
  v.text = text;
  if (spec.kind == Kind::kCount) {
    char* end = nullptr;
    errno = 0;
    unsigned long long n = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0 || text[0] == '-' || n < spec.min || n > spec.max) {
      return Status::invalid_argument("must be a whole number in " + std::to_string(spec.min) + ".." +
                                      std::to_string(spec.max) + ", got '" + text + "'");
    }
    v.number = n;
    return v;
  }
  if (spec.kind == Kind::kBool) {
    if (text == "true" || text == "1") {
      v.flag = true;
    } else if (text == "false" || text == "0" || text.empty()) {
      v.flag = false;
    } else {
      return Status::invalid_argument("must be true or false, got '" + text + "'");
    }
    return v;
  }
  STOWAGE_RETURN_IF_ERROR(check_string(spec, text));
  return v;
}

// A value as written in the JSON file.
Result<Value> parse_json(const Spec& spec, const json& j) {
  Value v;
  if (spec.kind == Kind::kCount) {
    if (!j.is_number_integer() && !j.is_number_unsigned()) {
      return Status::invalid_argument(std::string("must be a whole number, got ") + j.type_name());
    }
    if (j.is_number_integer() && j.get<int64_t>() < 0) {
      return Status::invalid_argument("must be a whole number in " + std::to_string(spec.min) + ".." +
                                      std::to_string(spec.max) + ", got " + j.dump());
    }
    uint64_t n = j.get<uint64_t>();
    if (n < spec.min || n > spec.max) {
      return Status::invalid_argument("must be a whole number in " + std::to_string(spec.min) + ".." +
                                      std::to_string(spec.max) + ", got " + j.dump());
    }
    v.number = n;
    return v;
  }
  if (spec.kind == Kind::kBool) {
    if (!j.is_boolean()) return Status::invalid_argument(std::string("must be true or false, got ") + j.type_name());
    v.flag = j.get<bool>();
    return v;
  }
  if (!j.is_string()) {
    // Never echo the value: it may be a mistyped secret.
    return Status::invalid_argument(std::string("must be a string, got ") + j.type_name());
  }
  v.text = j.get<std::string>();
  STOWAGE_RETURN_IF_ERROR(check_string(spec, v.text));
  return v;
}

using Values = std::map<std::string, Value, std::less<>>;

Status read_object(const json& obj, const std::string& prefix, const std::string& source, Values& out) {
  for (const auto& [k, val] : obj.items()) {
    std::string key = prefix.empty() ? k : prefix + "." + k;
    if (is_section(key)) {
      if (!val.is_object()) {
        return Status::invalid_argument(source + ": key '" + key + "' must be an object (a section), got " +
                                        val.type_name());
      }
      STOWAGE_RETURN_IF_ERROR(read_object(val, key, source, out));
      continue;
    }
    const Spec* spec = find_spec(key);
    if (!spec) {
      return Status::invalid_argument(source + ": unknown key '" + key + "'; valid keys: " + valid_keys());
    }
    auto v = parse_json(*spec, val);
    if (!v.is_ok()) return Status::invalid_argument(source + ": key '" + key + "': " + v.status().message());
    v->source = source;
    out[key] = std::move(v).value();
  }
  return Status::ok();
}

Status read_file_layer(const ConfigInput& in, Values& out, std::string* used) {
  std::ifstream f(in.path, std::ios::binary);
  if (!f) {
    int err = errno;
    if (err == ENOENT && !in.path_explicit) return Status::ok();
    return errno_status(err, "config file " + in.path);
  }
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return Status::io_error("config file " + in.path + ": read failed");
  const std::string source = "config file " + in.path;
  json doc;
  try {
    doc = json::parse(ss.str());
  } catch (const json::parse_error& e) {
    // e.what() quotes no content beyond the offending token.
    return Status::invalid_argument(source + ": not valid JSON: " + std::string(e.what()));
  }
  if (!doc.is_object()) {
    return Status::invalid_argument(source + ": must hold a JSON object, got " + std::string(doc.type_name()));
  }
  STOWAGE_RETURN_IF_ERROR(read_object(doc, "", source, out));
  *used = in.path;
  return Status::ok();
}

std::string where(const Values& vals, std::string_view key) {
  auto it = vals.find(key);
  return it == vals.end() ? "default" : it->second.source;
}

}  // namespace

const std::vector<ConfigKey>& config_keys() {
  static const std::vector<ConfigKey> kKeys = [] {
    std::vector<ConfigKey> out;
    for (const auto& s : specs()) out.push_back(s.key);
    return out;
  }();
  return kKeys;
}

std::string system_hostname() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

Result<DaemonOptions> load_config(const ConfigInput& in) {
  Values vals;
  DaemonOptions opts;
  STOWAGE_RETURN_IF_ERROR(read_file_layer(in, vals, &opts.config_file));

  EnvLookup env = in.env ? in.env : process_env();
  for (const auto& spec : specs()) {
    auto text = env(spec.key.env);
    if (!text) continue;
    const std::string source = "environment variable " + std::string(spec.key.env);
    // Empty means unset, as for the AWS tools: a managed plugin's settable
    // variables exist with "" until the user sets them.
    if (text->empty()) continue;
    auto v = parse_text(spec, *text);
    if (!v.is_ok()) {
      return Status::invalid_argument(source + " (" + std::string(spec.key.key) + "): " + v.status().message());
    }
    v->source = source;
    vals[std::string(spec.key.key)] = std::move(v).value();
  }

  for (const auto& [key, text] : in.flags) {
    const Spec* spec = find_spec(key);
    if (!spec) return Status::invalid_argument("unknown configuration key '" + key + "'; valid keys: " + valid_keys());
    if (spec->key.flag.empty()) {
      return Status::invalid_argument(key + " cannot be given on the command line (the command line is visible to "
                                            "every user in ps); use the config file or " +
                                      std::string(spec->key.env));
    }
    const std::string source = "flag " + std::string(spec->key.flag);
    auto v = parse_text(*spec, text);
    if (!v.is_ok()) return Status::invalid_argument(source + ": " + v.status().message());
    v->source = source;
    vals[key] = std::move(v).value();
  }

  auto text = [&](std::string_view key, std::string& field) {
    if (auto it = vals.find(key); it != vals.end()) field = it->second.text;
  };
  text("state_root", opts.state_root);
  text("plugin_socket", opts.plugin_socket);
  text("admin_socket", opts.admin_socket);
  text("docker_socket", opts.docker_socket);
  if (std::filesystem::path(opts.plugin_socket).lexically_normal() ==
      std::filesystem::path(opts.admin_socket).lexically_normal()) {
    return Status::invalid_argument("plugin_socket (from " + where(vals, "plugin_socket") + ") and admin_socket (from " +
                                    where(vals, "admin_socket") + ") are the same path, " + opts.plugin_socket +
                                    "; the two APIs need a socket each");
  }
  if (auto it = vals.find("threads"); it != vals.end()) opts.threads = static_cast<unsigned>(it->second.number);
  if (auto it = vals.find("log.format"); it != vals.end()) {
    opts.log_format = it->second.text == "json" ? LogFormat::kJson : LogFormat::kLogfmt;
  }
  if (auto it = vals.find("log.level"); it != vals.end()) {
    const std::string& l = it->second.text;
    opts.log_level = l == "debug" ? LogLevel::kDebug
                     : l == "warn" ? LogLevel::kWarn
                     : l == "error" ? LogLevel::kError
                                    : LogLevel::kInfo;
  }
  text("metrics.listen", opts.metrics_listen);
  if (auto it = vals.find("metrics.allow_non_loopback"); it != vals.end()) {
    opts.metrics_allow_non_loopback = it->second.flag;
  }
  if (!opts.metrics_listen.empty() && !opts.metrics_allow_non_loopback) {
    auto addr = parse_listen(opts.metrics_listen);
    if (addr.is_ok() && !addr->is_loopback()) {
      return Status::invalid_argument(where(vals, "metrics.listen") + ": key 'metrics.listen': " +
                                      opts.metrics_listen +
                                      " is not a loopback address and the metrics endpoint has no authentication; "
                                      "use 127.0.0.1 or ::1, or set metrics.allow_non_loopback to true");
    }
  }

  opts.host_id = in.hostname;
  text("host_id", opts.host_id);
  if (!valid_host_id(opts.host_id)) {
    return Status::invalid_argument("key 'host_id': not set and the hostname '" + in.hostname +
                                    "' is not usable (1..64 letters, digits, '.', '_' or '-'); set host_id");
  }
  if (auto it = vals.find("lease.ttl_seconds"); it != vals.end()) {
    opts.lease_ttl = std::chrono::seconds(it->second.number);
  }
  if (auto it = vals.find("lease.renew_seconds"); it != vals.end()) {
    opts.lease_renew = std::chrono::seconds(it->second.number);
  }
  if (opts.lease_renew >= opts.lease_ttl) {
    return Status::invalid_argument(
       "key 'lease.renew_seconds' (" + std::to_string(opts.lease_renew.count()) + ", from " +
        where(vals, "lease.renew_seconds") + ") must be less than 'lease.ttl_seconds' (" +
        std::to_string(opts.lease_ttl.count()) + ", from " + where(vals, "lease.ttl_seconds") +
       "), or the lease expires between renewals");
  }

  if (auto it = vals.find("backup.max_concurrent"); it != vals.end()) {
    opts.backup_max_concurrent = static_cast<unsigned>(it->second.number);
  }
  if (auto it = vals.find("backup.mount_wait_seconds"); it != vals.end()) {
    opts.mount_wait = std::chrono::seconds(it->second.number);
  }

  text("repository.url", opts.repository_url);
  // An absolute path is a local repository, as for stowctl --repo.
  if (opts.repository_url.starts_with("/")) opts.repository_url = "file://" + opts.repository_url;
  if (opts.repository_url.starts_with("s3://")) {
    // s3_config_from_env() knows the AWS conventions (shared files, profiles,
    // tuning variables); the file's repository.s3 keys answer for the
    // variables they override.
    EnvLookup layered = [&](std::string_view name) -> std::optional<std::string> {
      for (const auto& spec : specs()) {
        if (spec.key.key.starts_with("repository.s3.") && spec.key.env == name) {
          if (auto it = vals.find(spec.key.key); it != vals.end()) return it->second.text;
          break;
        }
      }
      return env(name);
    };
    auto s3 = s3_config_from_env(opts.repository_url, layered);
    if (!s3.is_ok()) {
      return Status::invalid_argument("repository " + opts.repository_url + " (from " +
                                      where(vals, "repository.url") + "): " + s3.status().message() +
                                      " (or repository.s3.access_key_id and repository.s3.secret_access_key in the "
                                      "config file)");
    }
    opts.s3 = std::move(s3).value();
    while (opts.s3.endpoint.ends_with('/')) opts.s3.endpoint.pop_back();
  }
  return opts;
}

std::string effective_config_json(const DaemonOptions& o) {
  auto secret = [](const std::string& v) -> json { return v.empty() ? json(nullptr) : json("<redacted>"); };
  json repo = {{"url", o.repository_url}};
  if (o.repository_url.starts_with("s3://")) {
    // The last four characters tell keys apart, as `aws configure list` does.
    std::string key_id =
        o.s3.access_key.size() > 8 ? "…" + o.s3.access_key.substr(o.s3.access_key.size() - 4) : "<redacted>";
    repo["s3"] = {{"endpoint", o.s3.endpoint},
                  {"region", o.s3.region},
                  {"bucket", o.s3.bucket},
                  {"prefix", o.s3.prefix},
                  {"access_key_id", o.s3.access_key.empty() ? json(nullptr) : json(key_id)},
                  {"secret_access_key", secret(o.s3.secret_key)},
                  {"session_token", secret(o.s3.session_token)}};
  }
  json j = {{"config_file", o.config_file.empty() ? json(nullptr) : json(o.config_file)},
            {"state_root", o.state_root},
            {"plugin_socket", o.plugin_socket},
            {"admin_socket", o.admin_socket},
            {"docker_socket", o.docker_socket},
            {"threads", o.threads},
            {"log",
             {{"format", o.log_format == LogFormat::kJson ? "json" : "logfmt"},
              {"level", o.log_level == LogLevel::kDebug  ? "debug"
                        : o.log_level == LogLevel::kWarn ? "warn"
                        : o.log_level == LogLevel::kError ? "error"
                                                          : "info"}}},
            {"metrics", {{"listen", o.metrics_listen}, {"allow_non_loopback", o.metrics_allow_non_loopback}}},
            {"repository", std::move(repo)},
            {"host_id", o.host_id},
            {"lease", {{"ttl_seconds", o.lease_ttl.count()}, {"renew_seconds", o.lease_renew.count()}}},
            {"backup", {{"max_concurrent", o.backup_max_concurrent}, {"mount_wait_seconds", o.mount_wait.count()}}}};
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

}  // namespace stowage
