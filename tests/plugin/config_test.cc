// load_config(): defaults < file < environment < flags, and one test per
// error so that every message names its source, the key and the problem.
#include "config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <regex>

#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace stowage {
namespace {

using test::TempDir;
using test::write_file;

class ConfigTest : public ::testing::Test {
 protected:
  ConfigTest() : dir_("stowage-config") {
    env_["HOME"] = dir_ / "home";  // no ~/.aws files
  }

  // Loads with `file_text` as the config file ("" = no file), the fake
  // environment and `flags`.
  Result<DaemonOptions> load(const std::string& file_text, std::map<std::string, std::string> flags = {}) {
    ConfigInput in;
    in.path = dir_ / "stowage.json";
    if (!file_text.empty()) write_file(in.path, file_text);
    in.env = [this](std::string_view name) -> std::optional<std::string> {
      auto it = env_.find(std::string(name));
      if (it == env_.end()) return std::nullopt;
      return it->second;
    };
    in.flags = std::move(flags);
    in.hostname = hostname_;
    return load_config(in);
  }

  // The error message of a load that must fail.
  std::string error(const std::string& file_text, std::map<std::string, std::string> flags = {}) {
    auto r = load(file_text, std::move(flags));
    EXPECT_FALSE(r.is_ok()) << "expected an error";
    if (r.is_ok()) return "";
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().to_string();
    return r.status().message();
  }

  std::string file() { return dir_ / "stowage.json"; }

  TempDir dir_;
  std::map<std::string, std::string> env_;
  std::string hostname_ = "node-1";
};

#define EXPECT_HAS(haystack, needle) EXPECT_NE((haystack).find(needle), std::string::npos) << (haystack)

TEST_F(ConfigTest, NoFileGivesTheDefaults) {
  auto o = load("");
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  DaemonOptions d;
  EXPECT_EQ(o->state_root, d.state_root);
  EXPECT_EQ(o->plugin_socket, d.plugin_socket);
  EXPECT_EQ(o->threads, d.threads);
  EXPECT_EQ(o->config_file, "");
  EXPECT_EQ(o->host_id, "node-1") << "host_id defaults to the hostname";
  EXPECT_EQ(o->lease_ttl, std::chrono::seconds(60));
  EXPECT_EQ(o->lease_renew, std::chrono::seconds(20));
  EXPECT_EQ(o->repository_url, "");
  EXPECT_EQ(o->metrics_listen, "");
}

TEST_F(ConfigTest, EveryKeyFromTheFile) {
  env_["AWS_REGION"] = "";  // empty variables count as unset
  env_["STOWAGE_HOST_ID"] = "";
  auto o = load(R"({
    "state_root": "/srv/stowage", "plugin_socket": "/run/p.sock", "admin_socket": "/run/a.sock",
    "docker_socket": "/run/d.sock", "threads": 8,
    "log": {"format": "json", "level": "debug"},
    "metrics": {"listen": "127.0.0.1:9723", "allow_non_loopback": false},
    "repository": {"url": "s3://bucket/some/prefix",
                   "s3": {"endpoint": "http://127.0.0.1:7480/", "region": "eu-west-1",
                          "access_key_id": "AKIAFILEKEY0001", "secret_access_key": "file-secret",
                          "session_token": "file-token"}},
    "host_id": "rack2.node7", "lease": {"ttl_seconds": 90, "renew_seconds": 30},
    "backup": {"max_concurrent": 3, "mount_wait_seconds": 25}
  })");
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->config_file, file());
  EXPECT_EQ(o->state_root, "/srv/stowage");
  EXPECT_EQ(o->plugin_socket, "/run/p.sock");
  EXPECT_EQ(o->admin_socket, "/run/a.sock");
  EXPECT_EQ(o->docker_socket, "/run/d.sock");
  EXPECT_EQ(o->threads, 8u);
  EXPECT_EQ(o->log_format, LogFormat::kJson);
  EXPECT_EQ(o->log_level, LogLevel::kDebug);
  EXPECT_EQ(o->metrics_listen, "127.0.0.1:9723");
  EXPECT_EQ(o->repository_url, "s3://bucket/some/prefix");
  EXPECT_EQ(o->s3.bucket, "bucket");
  EXPECT_EQ(o->s3.prefix, "some/prefix/");
  EXPECT_EQ(o->s3.endpoint, "http://127.0.0.1:7480");
  EXPECT_EQ(o->s3.region, "eu-west-1");
  EXPECT_EQ(o->s3.access_key, "AKIAFILEKEY0001");
  EXPECT_EQ(o->s3.secret_key, "file-secret");
  EXPECT_EQ(o->s3.session_token, "file-token");
  EXPECT_EQ(o->host_id, "rack2.node7");
  EXPECT_EQ(o->lease_ttl, std::chrono::seconds(90));
  EXPECT_EQ(o->lease_renew, std::chrono::seconds(30));
  EXPECT_EQ(o->backup_max_concurrent, 3u);
  EXPECT_EQ(o->mount_wait, std::chrono::seconds(25));
}

TEST_F(ConfigTest, MountWaitStaysUnderDockersPluginTimeout) {
  auto o = load(R"({})");
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->mount_wait, std::chrono::seconds(90));
  env_["STOWAGE_MOUNT_WAIT_SECONDS"] = "111";
  auto e = load(R"({})");
  ASSERT_FALSE(e.is_ok());
  EXPECT_NE(e.status().message().find("backup.mount_wait_seconds"), std::string::npos) << e.status().message();
  EXPECT_NE(e.status().message().find("110"), std::string::npos) << e.status().message();
}

TEST_F(ConfigTest, EnvironmentOverridesFileAndFlagsOverrideBoth) {
  const std::string text = R"({"threads": 8, "state_root": "/from/file", "log": {"level": "warn"},
                               "repository": {"url": "file:///from/file"}})";
  env_["STOWAGE_THREADS"] = "12";
  env_["STOWAGE_STATE_ROOT"] = "/from/env";
  env_["STOWAGE_REPOSITORY"] = "file:///from/env";
  auto o = load(text, {{"threads", "16"}});
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->threads, 16u) << "flag beats environment";
  EXPECT_EQ(o->state_root, "/from/env") << "environment beats file";
  EXPECT_EQ(o->repository_url, "file:///from/env");
  EXPECT_EQ(o->log_level, LogLevel::kWarn) << "file beats default";
}

// An absolute path names a local repository, as it does for stowctl --repo.
TEST_F(ConfigTest, AnAbsolutePathRepositoryIsAFileUrl) {
  auto o = load(R"({"repository": {"url": "/srv/stowage-repo"}})");
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->repository_url, "file:///srv/stowage-repo");
}

TEST_F(ConfigTest, S3CredentialsFromFileAreOverriddenByTheEnvironment) {
  env_["AWS_SECRET_ACCESS_KEY"] = "env-secret";
  auto o = load(R"({"repository": {"url": "s3://bkt", "s3": {"access_key_id": "FILEKEYID",
                    "secret_access_key": "file-secret"}}})");
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->s3.access_key, "FILEKEYID");
  EXPECT_EQ(o->s3.secret_key, "env-secret");
  EXPECT_EQ(o->s3.region, "us-east-1");
}

TEST_F(ConfigTest, S3CredentialsFromTheSharedAwsFile) {
  std::filesystem::create_directories(dir_ / "home/.aws");
  write_file(dir_ / "home/.aws/credentials", "[default]\naws_access_key_id = SHAREDKEY\n"
                                             "aws_secret_access_key = shared-secret\n");
  auto o = load(R"({"repository": {"url": "s3://bkt/p"}})");
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->s3.access_key, "SHAREDKEY");
  EXPECT_EQ(o->s3.secret_key, "shared-secret");
}

TEST_F(ConfigTest, MissingFiles) {
  ConfigInput in;
  in.path = dir_ / "absent.json";
  in.env = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
  in.hostname = "h";
  EXPECT_TRUE(load_config(in).is_ok()) << "a missing default file is fine";
  in.path_explicit = true;
  auto r = load_config(in);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_HAS(r.status().message(), "config file " + in.path);
}

TEST_F(ConfigTest, ErrorNotJson) {
  std::string e = error("{\"threads\": 4,,}");
  EXPECT_HAS(e, "config file " + file() + ": not valid JSON");
  EXPECT_HAS(e, "parse error");
}

TEST_F(ConfigTest, ErrorNotAnObject) {
  EXPECT_HAS(error("[1, 2]"), "must hold a JSON object, got array");
}

TEST_F(ConfigTest, ErrorUnknownKeyListsTheValidOnes) {
  std::string e = error(R"({"thread": 4})");
  EXPECT_HAS(e, "config file " + file() + ": unknown key 'thread'; valid keys: state_root, plugin_socket");
  EXPECT_HAS(e, "lease.renew_seconds");
  EXPECT_HAS(error(R"({"log": {"colour": "red"}})"), "unknown key 'log.colour'");
  EXPECT_HAS(error(R"({"repository": {"s3": {"secret": "x"}}})"), "unknown key 'repository.s3.secret'");
}

TEST_F(ConfigTest, ErrorSectionNotAnObject) {
  EXPECT_HAS(error(R"({"log": "json"})"), "key 'log' must be an object (a section), got string");
}

TEST_F(ConfigTest, ErrorWrongTypes) {
  EXPECT_HAS(error(R"({"threads": "four"})"), "key 'threads': must be a whole number, got string");
  EXPECT_HAS(error(R"({"threads": 2.5})"), "key 'threads': must be a whole number, got number");
  EXPECT_HAS(error(R"({"state_root": 7})"), "key 'state_root': must be a string, got number");
  EXPECT_HAS(error(R"({"metrics": {"allow_non_loopback": "yes"}})"),
             "key 'metrics.allow_non_loopback': must be true or false, got string");
  std::string e = error(R"({"repository": {"s3": {"secret_access_key": 123456789}}})");
  EXPECT_HAS(e, "key 'repository.s3.secret_access_key': must be a string, got number");
  EXPECT_EQ(e.find("123456789"), std::string::npos) << "a mistyped secret is not echoed";
}

TEST_F(ConfigTest, ErrorBadValues) {
  EXPECT_HAS(error(R"({"state_root": "relative/dir"})"),
             "key 'state_root': must be an absolute path, got 'relative/dir'");
  EXPECT_HAS(error(R"({"admin_socket": ""})"), "key 'admin_socket': must be an absolute path");
  EXPECT_HAS(error(R"({"threads": 0})"), "key 'threads': must be a whole number in 1..256, got 0");
  EXPECT_HAS(error(R"({"threads": 257})"), "1..256, got 257");
  EXPECT_HAS(error(R"({"threads": -3})"), "1..256, got -3");
  EXPECT_HAS(error(R"({"log": {"level": "verbose"}})"),
             "key 'log.level': must be one of debug, info, warn, error, got 'verbose'");
  EXPECT_HAS(error(R"({"log": {"format": "xml"}})"), "key 'log.format': must be one of logfmt, json, got 'xml'");
  EXPECT_HAS(error(R"({"metrics": {"listen": "9723"}})"), "key 'metrics.listen': must be HOST:PORT");
  EXPECT_HAS(error(R"({"metrics": {"listen": "example.com:9723"}})"), "'example.com' is not an IP address");
  EXPECT_HAS(error(R"({"metrics": {"listen": "127.0.0.1:99999"}})"), "port '99999' is not a number in 1..65535");
  EXPECT_HAS(error(R"({"repository": {"url": "ftp://x"}})"),
             "key 'repository.url': must be an absolute path, file:///path or s3://bucket[/prefix], got 'ftp://x'");
  EXPECT_HAS(error(R"({"repository": {"url": "relative/repo"}})"), "must be an absolute path, file:///path");
  EXPECT_HAS(error(R"({"repository": {"url": "file://relative"}})"), "file URLs need an absolute path");
  EXPECT_HAS(error(R"({"repository": {"url": "s3://Bad_Bucket"}})"), "'Bad_Bucket' is not a valid S3 bucket name");
  std::string e = error(R"({"repository": {"url": "s3://KEYID:topsecret@bucket/p"}})");
  EXPECT_HAS(e, "credentials do not belong in the URL");
  EXPECT_EQ(e.find("topsecret"), std::string::npos) << e;
  EXPECT_HAS(error(R"({"repository": {"s3": {"endpoint": "127.0.0.1:7480"}}})"),
             "key 'repository.s3.endpoint': must start with http:// or https://");
  EXPECT_HAS(error(R"({"repository": {"s3": {"endpoint": "http://k:s@host"}}})"), "must not contain user info");
  EXPECT_HAS(error(R"({"repository": {"s3": {"region": "EU West"}}})"),
             "key 'repository.s3.region': must be a region name like us-east-1");
  EXPECT_HAS(error(R"({"host_id": "my host"})"), "key 'host_id': must be 1..64 letters, digits");
  EXPECT_HAS(error(R"({"lease": {"ttl_seconds": 1}})"), "key 'lease.ttl_seconds': must be a whole number in 2..86400");
}

TEST_F(ConfigTest, ErrorNonLoopbackMetricsUnlessAllowed) {
  std::string e = error(R"({"metrics": {"listen": "0.0.0.0:9723"}})");
  EXPECT_HAS(e, "config file " + file() + ": key 'metrics.listen': 0.0.0.0:9723 is not a loopback address");
  EXPECT_HAS(e, "metrics.allow_non_loopback");
  auto o = load(R"({"metrics": {"listen": "0.0.0.0:9723", "allow_non_loopback": true}})");
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_TRUE(load(R"({"metrics": {"listen": "[::1]:9723"}})").is_ok());
  EXPECT_TRUE(load(R"({"metrics": {"listen": "localhost:9723"}})").is_ok());
}

TEST_F(ConfigTest, ErrorLeaseRenewNotBelowTtlNamesBothSources) {
  env_["STOWAGE_LEASE_RENEW_SECONDS"] = "30";
  std::string e = error(R"({"lease": {"ttl_seconds": 30}})");
  EXPECT_HAS(e, "key 'lease.renew_seconds' (30, from environment variable STOWAGE_LEASE_RENEW_SECONDS) must be less "
                "than 'lease.ttl_seconds' (30, from config file " + file() + ")");
}

TEST_F(ConfigTest, ErrorOneSocketForBothApis) {
  env_["STOWAGE_ADMIN_SOCKET"] = "/run/x/../s.sock";
  std::string e = error(R"({"plugin_socket": "/run/s.sock"})");
  EXPECT_HAS(e, "plugin_socket (from config file " + file() + ") and admin_socket (from environment variable "
                "STOWAGE_ADMIN_SOCKET) are the same path");
}

TEST_F(ConfigTest, ErrorS3WithoutCredentials) {
  std::string e = error(R"({"repository": {"url": "s3://bkt"}})");
  EXPECT_HAS(e, "repository s3://bkt (from config file " + file() + "): s3: no credentials");
  EXPECT_HAS(e, "repository.s3.access_key_id");
}

TEST_F(ConfigTest, ErrorUnusableHostnameWithoutHostId) {
  hostname_ = "";
  EXPECT_HAS(error(""), "key 'host_id': not set and the hostname '' is not usable");
  EXPECT_TRUE(load(R"({"host_id": "h1"})").is_ok());
}

TEST_F(ConfigTest, ErrorsFromTheEnvironmentNameTheVariable) {
  env_["STOWAGE_THREADS"] = "many";
  EXPECT_HAS(error(""), "environment variable STOWAGE_THREADS (threads): must be a whole number in 1..256, got 'many'");
  env_.erase("STOWAGE_THREADS");
  env_["STOWAGE_METRICS_ALLOW_NON_LOOPBACK"] = "perhaps";
  EXPECT_HAS(error(""), "environment variable STOWAGE_METRICS_ALLOW_NON_LOOPBACK (metrics.allow_non_loopback): must "
                        "be true or false, got 'perhaps'");
  env_.erase("STOWAGE_METRICS_ALLOW_NON_LOOPBACK");
  env_["STOWAGE_LOG_FORMAT"] = "yaml";
  EXPECT_HAS(error(""), "environment variable STOWAGE_LOG_FORMAT (log.format): must be one of logfmt, json");
}

TEST_F(ConfigTest, ErrorsFromFlagsNameTheFlag) {
  EXPECT_HAS(error("", {{"state_root", "rel"}}), "flag --state-root: must be an absolute path, got 'rel'");
  EXPECT_HAS(error("", {{"lease.ttl_seconds", "x"}}), "flag --lease-ttl-seconds: must be a whole number");
  EXPECT_HAS(error("", {{"no.such", "1"}}), "unknown configuration key 'no.such'");
}

TEST_F(ConfigTest, SecretsAreRefusedAsFlags) {
  for (const char* key : {"repository.s3.access_key_id", "repository.s3.secret_access_key",
                          "repository.s3.session_token"}) {
    std::string e = error("", {{key, "SHOULD-NOT-BE-HERE"}});
    EXPECT_HAS(e, std::string(key) + " cannot be given on the command line");
    EXPECT_EQ(e.find("SHOULD-NOT-BE-HERE"), std::string::npos);
  }
  for (const auto& k : config_keys()) {
    EXPECT_EQ(k.secret, k.flag.empty()) << k.key << ": secrets, and only they, have no flag";
    EXPECT_FALSE(k.env.empty()) << k.key << " has an environment variable";
  }
}

TEST_F(ConfigTest, TheShippedExampleIsValidAndSetsEveryKey) {
  ConfigInput in;
  in.path = std::string(STOWAGE_SOURCE_DIR) + "/deploy/stowage.json.example";
  in.path_explicit = true;
  in.env = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
  in.hostname = "h";
  auto o = load_config(in);
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  EXPECT_EQ(o->repository_url, "s3://my-backups/stowage");
  EXPECT_EQ(o->host_id, "docker-host-1");
  auto doc = nlohmann::json::parse(test::read_file(in.path));
  for (const auto& k : config_keys()) {
    if (k.key == "repository.s3.session_token") continue;  // only for temporary credentials
    auto ptr = nlohmann::json::json_pointer("/" + std::regex_replace(std::string(k.key), std::regex("\\."), "/"));
    EXPECT_TRUE(doc.contains(ptr)) << k.key << " is missing from the example";
  }
}

TEST_F(ConfigTest, EffectiveConfigRedactsSecrets) {
  auto o = load(R"({"repository": {"url": "s3://bucket/p", "s3": {"access_key_id": "AKIAABCDEFGH1234",
                    "secret_access_key": "very-secret-value", "session_token": "token-value-xyz"}}})");
  ASSERT_TRUE(o.is_ok()) << o.status().to_string();
  std::string out = effective_config_json(*o);
  EXPECT_EQ(out.find("very-secret-value"), std::string::npos) << out;
  EXPECT_EQ(out.find("token-value-xyz"), std::string::npos) << out;
  EXPECT_EQ(out.find("AKIAABCDEFGH1234"), std::string::npos) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["repository"]["s3"]["secret_access_key"], "<redacted>");
  EXPECT_EQ(j["repository"]["s3"]["session_token"], "<redacted>");
  EXPECT_EQ(j["repository"]["s3"]["access_key_id"], "…1234");
  EXPECT_EQ(j["repository"]["url"], "s3://bucket/p");
  EXPECT_EQ(j["config_file"], file());
  EXPECT_EQ(j["lease"]["ttl_seconds"], 60);
  // The output is itself a valid config file once the report-only fields go.
  j.erase("config_file");
  j["repository"].erase("s3");
  write_file(dir_ / "again.json", j.dump());
  ConfigInput in;
  in.path = dir_ / "again.json";
  in.path_explicit = true;
  in.env = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
  in.hostname = "h";
  auto again = load_config(in);
  EXPECT_FALSE(again.is_ok()) << "an s3 URL without credentials";
  j["repository"]["url"] = "file:///var/lib/stowage/repo";
  write_file(dir_ / "again.json", j.dump());
  EXPECT_TRUE(load_config(in).is_ok()) << load_config(in).status().to_string();
}

}  // namespace
}  // namespace stowage
