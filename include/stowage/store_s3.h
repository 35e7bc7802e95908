// S3Store: an ObjectStore on an S3-compatible bucket (AWS S3, Ceph radosgw,
// MinIO) through libcurl's built-in SigV4 signing, path-style addressing.
// Configuration comes from an explicit S3Config or from the environment
// (s3_config_from_env; the variable names are listed in docs/STORES.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "stowage/object_store.h"

namespace stowage {

struct S3Config {
  // scheme://host[:port] without a trailing '/', e.g. "http://127.0.0.1:7480".
  // Empty means AWS: https://s3.<region>.amazonaws.com.
  std::string endpoint;
  std::string region = "us-east-1";
  std::string bucket;
  // Prepended to every key ("backups/host1/"); empty or ending in '/'.
  std::string prefix;
  std::string access_key;
  std::string secret_key;
  std::string session_token;  // sent as x-amz-security-token when non-empty

  // put() of objects larger than this uses multipart upload (never for
  // create_only puts: radosgw ignores If-None-Match on Complete).
  uint64_t multipart_threshold = 16u << 20;
  uint64_t part_size = 8u << 20;  // clamped to >= 5 MiB (the S3 minimum)
  int multipart_parallelism = 4;  // parts of one upload in flight at once
  // Requests in flight at once across all callers; more callers wait.
  int max_in_flight = 16;
  int list_page_size = 1000;  // max-keys per ListObjectsV2 page (1..1000)
  std::chrono::milliseconds connect_timeout{10'000};
  // A transfer slower than low_speed_bytes/s for low_speed_time is aborted
  // (kDeadlineExceeded, retryable) instead of hanging forever.
  long low_speed_bytes = 1024;
  std::chrono::seconds low_speed_time{30};
  bool verify_tls = true;
};

// Opens a store on `config`. Does no network I/O (errors surface on first
// use). kInvalidArgument if bucket, access_key or secret_key is empty, the
// endpoint is not http(s), or the prefix is not a valid key prefix.
[[nodiscard]] Result<std::unique_ptr<ObjectStore>> open_s3_store(S3Config config);

// Looks up an environment variable; nullopt when unset. Injected so that
// configuration parsing is testable without touching the process environment.
using EnvLookup = std::function<std::optional<std::string>(std::string_view)>;

// The real process environment.
EnvLookup process_env();

// The form of an "s3://bucket[/prefix]" URL: no credentials in it (refused
// without repeating them: they belong in the environment or config keys) and
// a bucket name by S3's rules (3..63 of a-z 0-9 . -). kInvalidArgument with a
// message saying which, else OK. stowctl and stowaged accept the same URLs.
[[nodiscard]] Status check_s3_url(std::string_view url);

// Builds a config for "s3://bucket[/prefix]" from the environment:
//   STOWAGE_S3_ENDPOINT (else AWS), AWS_REGION / AWS_DEFAULT_REGION,
//   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, falling back
//   to the shared credentials and config files (AWS_SHARED_CREDENTIALS_FILE,
//   AWS_CONFIG_FILE, default ~/.aws/credentials and ~/.aws/config, profile
//   AWS_PROFILE or "default"), plus STOWAGE_S3_* tuning knobs.
// kInvalidArgument for a malformed URL (check_s3_url) or when no credentials
// are found.
[[nodiscard]] Result<S3Config> s3_config_from_env(std::string_view url, const EnvLookup& env);

}  // namespace stowage
