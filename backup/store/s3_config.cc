// s3_config_from_env(): S3 settings from the standard AWS environment
// variables and shared config files, plus Stowage's STOWAGE_S3_* knobs.
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>

#include "stowage/store_s3.h"

namespace stowage {
namespace {

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

// The key=value pairs of section `section` of an INI file; empty if missing.
std::map<std::string, std::string> ini_section(const std::string& path, const std::string& section) {
  std::map<std::string, std::string> out;
  std::ifstream in(path);
  std::string line;
  bool in_section = false;
  while (std::getline(in, line)) {
    std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[' && t.back() == ']') {
      in_section = trim(std::string_view(t).substr(1, t.size() - 2)) == section;
      continue;
    }
    auto eq = t.find('=');
    if (in_section && eq != std::string::npos) out[trim(t.substr(0, eq))] = trim(t.substr(eq + 1));
  }
  return out;
}

Status parse_positive(const EnvLookup& env, std::string_view name, auto& field) {
  auto v = env(name);
  if (!v) return Status::ok();
  char* end = nullptr;
  long long n = std::strtoll(v->c_str(), &end, 10);
  if (end == v->c_str() || *end != '\0' || n <= 0) {
    return Status::invalid_argument(std::string(name) + " must be a positive integer, got '" + *v + "'");
  }
  using T = std::remove_reference_t<decltype(field)>;
  if constexpr (std::is_arithmetic_v<T>) {
    field = static_cast<T>(n);
  } else {
    field = T(n);
  }
  return Status::ok();
}

}  // namespace

EnvLookup process_env() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

Status check_s3_url(std::string_view url) {
  if (!url.starts_with("s3://")) return Status::invalid_argument("not an s3:// URL: " + std::string(url));
  const std::string_view bucket = url.substr(5, url.find('/', 5) == std::string_view::npos ? std::string_view::npos
                                                                                         : url.find('/', 5) - 5);
  if (bucket.find('@') != std::string_view::npos || bucket.find(':') != std::string_view::npos) {
    // Not echoed: the part before '@' is likely a secret.
    return Status::invalid_argument(
        "credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (stowaged: "
        "repository.s3.access_key_id and repository.s3.secret_access_key)");
  }
  const bool ok = bucket.size() >= 3 && bucket.size() <= 63 && std::all_of(bucket.begin(), bucket.end(), [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
                  });
  if (!ok) return Status::invalid_argument("'" + std::string(bucket) + "' is not a valid S3 bucket name (3..63 of a-z 0-9 . -)");
  return Status::ok();
}

Result<S3Config> s3_config_from_env(std::string_view url, const EnvLookup& env) {
  if (!url.starts_with("s3://")) return Status::invalid_argument("not an s3:// URL: " + std::string(url));
  std::string_view rest = url.substr(5);
  S3Config c;
  auto slash = rest.find('/');
  c.bucket = std::string(rest.substr(0, slash));
  if (slash != std::string_view::npos) {
    std::string_view p = rest.substr(slash + 1);
    while (p.ends_with('/')) p.remove_suffix(1);
    if (!p.empty()) c.prefix = std::string(p) + "/";
  }
  if (c.bucket.empty()) return Status::invalid_argument("s3 URL without bucket: " + std::string(url));
  STOWAGE_RETURN_IF_ERROR(check_s3_url(url));

  auto get = [&](std::string_view n) { return env(n).value_or(""); };
  const std::string home = get("HOME");
  const std::string profile = env("AWS_PROFILE").value_or("default");
  std::string cred_file = get("AWS_SHARED_CREDENTIALS_FILE");
  if (cred_file.empty() && !home.empty()) cred_file = home + "/.aws/credentials";
  std::string conf_file = get("AWS_CONFIG_FILE");
  if (conf_file.empty() && !home.empty()) conf_file = home + "/.aws/config";
  auto conf = ini_section(conf_file, profile == "default" ? "default" : "profile " + profile);

  c.endpoint = get("STOWAGE_S3_ENDPOINT");
  c.region = get("AWS_REGION");
  if (c.region.empty()) c.region = get("AWS_DEFAULT_REGION");
  if (c.region.empty()) c.region = conf["region"];
  if (c.region.empty()) c.region = "us-east-1";

  c.access_key = get("AWS_ACCESS_KEY_ID");
  c.secret_key = get("AWS_SECRET_ACCESS_KEY");
  c.session_token = get("AWS_SESSION_TOKEN");
  if (c.access_key.empty() || c.secret_key.empty()) {
    auto creds = ini_section(cred_file, profile);
    c.access_key = creds["aws_access_key_id"];
    c.secret_key = creds["aws_secret_access_key"];
    c.session_token = creds["aws_session_token"];
  }
  if (c.access_key.empty() || c.secret_key.empty()) {
    return Status::invalid_argument("s3: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or profile '" +
                                    profile + "' in " + cred_file);
  }

  STOWAGE_RETURN_IF_ERROR(parse_positive(env, "STOWAGE_S3_MAX_IN_FLIGHT", c.max_in_flight));
  STOWAGE_RETURN_IF_ERROR(parse_positive(env, "STOWAGE_S3_MULTIPART_THRESHOLD", c.multipart_threshold));
  STOWAGE_RETURN_IF_ERROR(parse_positive(env, "STOWAGE_S3_PART_SIZE", c.part_size));
  STOWAGE_RETURN_IF_ERROR(parse_positive(env, "STOWAGE_S3_CONNECT_TIMEOUT_MS", c.connect_timeout));
  STOWAGE_RETURN_IF_ERROR(parse_positive(env, "STOWAGE_S3_LOW_SPEED_TIME_S", c.low_speed_time));
  if (get("STOWAGE_S3_TLS_VERIFY") == "0") c.verify_tls = false;
  return c;
}

}  // namespace stowage
