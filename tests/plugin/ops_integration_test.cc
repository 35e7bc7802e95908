// Operations features of a real stowaged: the config file and --check-config,
// metrics on the admin socket and the loopback TCP listener, request IDs in
// structured logs, `stowctl status`, and credentials (given by config file and
// by environment, used against a real radosgw) never showing up in logs, the
// process's command line, stowctl output or metrics.
#include <curl/curl.h>
#include <sys/wait.h>

#include <cmath>
#include <regex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "daemon_harness.h"
#include "support/radosgw.h"

namespace stowage::test {
namespace {

using json = nlohmann::json;

RadosgwEnvironment* g_rgw = nullptr;  // owned by gtest

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// One GET (or `method`) to `url`, over `unix_socket` when given.
HttpResult http(const std::string& url, const std::string& unix_socket = "", const std::string& method = "GET") {
  HttpResult r;
  CURL* c = curl_easy_init();
  if (!unix_socket.empty()) curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_socket.c_str());
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    r.error = curl_easy_strerror(rc);
  } else {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    char* ct = nullptr;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    if (ct) r.content_type = ct;
  }
  curl_easy_cleanup(c);
  return r;
}

// The value of the sample `series` (exactly as written: name{labels}) in a
// scrape, NaN when absent.
double sample(const std::string& scrape, const std::string& series) {
  std::istringstream in(scrape);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.starts_with(series) && line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return NAN;
}

// Every (non-comment) line is `series value`, every family has HELP then TYPE.
void expect_well_formed(const std::string& scrape) {
  std::istringstream in(scrape);
  std::string line, helped;
  int families = 0;
  while (std::getline(in, line)) {
    if (line.starts_with("# HELP ")) {
      helped = line.substr(7, line.find(' ', 7) - 7);
      ++families;
    } else if (line.starts_with("# TYPE ")) {
      EXPECT_EQ(line.substr(7, line.find(' ', 7) - 7), helped) << line;
    } else {
      EXPECT_TRUE(line.starts_with(helped)) << line;
      auto sp = line.rfind(' ');
      ASSERT_NE(sp, std::string::npos) << line;
      EXPECT_NO_THROW((void)std::stod(line.substr(sp + 1))) << line;
    }
  }
  EXPECT_GE(families, 10);
}

std::string proc_cmdline(pid_t pid) {
  std::string raw = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  for (char& c : raw) {
    if (c == '\0') c = ' ';
  }
  return raw;
}

// A stowaged started directly (own argv and environment), for tests that
// control both.
struct RawDaemon {
  RawDaemon(const TempDir& dir, std::vector<std::string> args, std::map<std::string, std::string> env) {
    Subprocess::Options o;
    o.argv = {bin_dir() + "/stowaged",  "--state-root", dir / "state", "--plugin-socket", dir / "plugin.sock",
              "--admin-socket", dir / "admin.sock"};
    for (auto& a : args) o.argv.push_back(std::move(a));
    o.env = std::move(env);
    o.log_path = dir / "stowaged.log";
    plugin_socket = dir / "plugin.sock";
    admin_socket = dir / "admin.sock";
    log_path = o.log_path;
    proc = std::make_unique<Subprocess>(o);
    up = wait_until([&] { return socket_accepts(plugin_socket) || !proc->running(); }, std::chrono::seconds(30)) &&
         proc->running();
  }
  int stowctl(const std::string& args, std::string* out) const {
    return run_shell(bin_dir() + "/stowctl --admin-socket " + admin_socket + " " + args, out);
  }
  std::unique_ptr<Subprocess> proc;
  std::string plugin_socket, admin_socket, log_path;
  bool up = false;
};

TEST(OpsConfig, CheckConfigValidatesAndPrintsTheEffectiveSettings) {
  TempDir dir("stowage-ops");
  write_file(dir / "good.json", R"({"threads": 3, "log": {"format": "json"}, "host_id": "node-a",
                                    "lease": {"ttl_seconds": 45, "renew_seconds": 15}})");
  std::string out;
  int rc = run_shell("STOWAGE_THREADS=5 " + bin_dir() + "/stowaged --check-config --config " + (dir / "good.json") +
                         " --log-format logfmt",
                     &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("stowaged: configuration is valid (read " + (dir / "good.json") + ")"), std::string::npos);
  json j = json::parse(out.substr(out.find('{'), out.rfind('}') + 1 - out.find('{')), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["config_file"], dir / "good.json");
  EXPECT_EQ(j["threads"], 5) << "the environment overrides the file";
  EXPECT_EQ(j["log"]["format"], "logfmt") << "flags override the file";
  EXPECT_EQ(j["host_id"], "node-a");
  EXPECT_EQ(j["lease"]["ttl_seconds"], 45);

  write_file(dir / "bad.json", R"({"threads": 4, "log": {"lvl": "debug"}})");
  rc = run_shell(bin_dir() + "/stowaged --check-config --config " + (dir / "bad.json"), &out);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("configuration error: config file " + (dir / "bad.json") + ": unknown key 'log.lvl'; valid keys:"),
            std::string::npos)
      << out;

  rc = run_shell(bin_dir() + "/stowaged --check-config --config " + (dir / "absent.json"), &out);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("config file " + (dir / "absent.json")), std::string::npos) << out;
  rc = run_shell("STOWAGE_CONFIG=" + (dir / "absent.json") + " " + bin_dir() + "/stowaged --check-config", &out);
  EXPECT_EQ(rc, 1) << "STOWAGE_CONFIG names a file explicitly too";

  // The daemon itself refuses to start on a bad config, with the same message.
  rc = run_shell(bin_dir() + "/stowaged --config " + (dir / "bad.json"), &out);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("unknown key 'log.lvl'"), std::string::npos) << out;

  // Secrets have no flags.
  rc = run_shell(bin_dir() + "/stowaged --check-config --s3-secret-access-key abc", &out);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("--s3-secret-access-key"), std::string::npos) << out;
  rc = run_shell(bin_dir() + "/stowaged --help", &out);
  EXPECT_EQ(rc, 0);
  for (const char* s : {"--config", "--check-config", "--metrics-listen", "--repository", "--host-id",
                        "--lease-ttl-seconds", "STOWAGE_REPOSITORY", "docs/CONFIG.md"}) {
    EXPECT_NE(out.find(s), std::string::npos) << s << " missing from --help:\n" << out;
  }
}

class OpsDaemonTest : public ::testing::Test {
 protected:
  OpsDaemonTest() : dir_("stowage-ops"), daemon_(dir_.path()), client_(daemon_.plugin_socket()) {}
  json call(const std::string& endpoint, const json& body) {
    auto r = client_.call(endpoint, body);
    return r.json();
  }
  TempDir dir_;
  Daemon daemon_;
  PluginClient client_;
};

TEST_F(OpsDaemonTest, MetricsOnAdminSocketAndLoopbackTcp) {
  int port = free_tcp_port();
  std::string listen = "127.0.0.1:" + std::to_string(port);
  ASSERT_TRUE(daemon_.start({"--metrics-listen", listen}));

  EXPECT_EQ(call("Create", {{"Name", "m1"}})["Err"], "");
  EXPECT_EQ(call("Create", {{"Name", "m2"}})["Err"], "");
  EXPECT_EQ(call("Mount", {{"Name", "m1"}, {"ID", "c1"}})["Err"], "");
  EXPECT_EQ(call("Mount", {{"Name", "m1"}, {"ID", "c2"}})["Err"], "");
  EXPECT_EQ(call("Mount", {{"Name", "m2"}, {"ID", "c3"}})["Err"], "");
  EXPECT_EQ(call("Unmount", {{"Name", "m2"}, {"ID", "c3"}})["Err"], "");
  EXPECT_NE(call("Get", {{"Name", "absent"}})["Err"], "");
  EXPECT_NE(call("Mount", {{"Name", "absent"}, {"ID", "c9"}})["Err"], "");
  std::string out;
  ASSERT_EQ(daemon_.stowctl("snapshot create m1 s1", &out), 0) << out;

  HttpResult admin = http("http://localhost/v1/metrics", daemon_.admin_socket());
  ASSERT_EQ(admin.status, 200) << admin.error << admin.body;
  EXPECT_EQ(admin.content_type, "text/plain; version=0.0.4; charset=utf-8");
  const std::string& s = admin.body;
  expect_well_formed(s);
  EXPECT_EQ(sample(s, "stowage_volumes"), 2) << s;
  EXPECT_EQ(sample(s, "stowage_volumes_mounted"), 1);
  EXPECT_EQ(sample(s, "stowage_mount_ids"), 2);
  EXPECT_EQ(sample(s, "stowage_snapshots"), 1);
  EXPECT_EQ(sample(s, "stowage_docker_calls_total{endpoint=\"Create\",outcome=\"ok\"}"), 2);
  EXPECT_EQ(sample(s, "stowage_docker_calls_total{endpoint=\"Mount\",outcome=\"ok\"}"), 3);
  EXPECT_EQ(sample(s, "stowage_docker_calls_total{endpoint=\"Mount\",outcome=\"NotFound\"}"), 1);
  EXPECT_EQ(sample(s, "stowage_docker_calls_total{endpoint=\"Unmount\",outcome=\"ok\"}"), 1);
  EXPECT_EQ(sample(s, "stowage_docker_calls_total{endpoint=\"Get\",outcome=\"NotFound\"}"), 1);
  EXPECT_EQ(sample(s, "stowage_docker_call_duration_seconds_count{endpoint=\"Mount\"}"), 4);
  EXPECT_EQ(sample(s, "stowage_docker_call_duration_seconds_bucket{endpoint=\"Mount\",le=\"+Inf\"}"), 4);
  EXPECT_EQ(sample(s, "stowage_build_info{version=\"0.1.0\"}"), 1);
  // One flush per Create (the calls came one at a time); Mounts and Unmounts make none.
  EXPECT_EQ(sample(s, "stowage_state_journal_flushes_total"), 2);

  HttpResult tcp = http("http://" + listen + "/metrics");
  ASSERT_EQ(tcp.status, 200) << tcp.error;
  for (const char* series : {"stowage_volumes", "stowage_mount_ids", "stowage_snapshots",
                             "stowage_docker_calls_total{endpoint=\"Mount\",outcome=\"ok\"}"}) {
    EXPECT_EQ(sample(tcp.body, series), sample(s, series)) << series;
  }
  EXPECT_EQ(http("http://" + listen + "/v1/status").status, 404) << "only /metrics over TCP";
  EXPECT_EQ(http("http://" + listen + "/metrics", "", "POST").status, 405);

  // Later calls show up in the next scrape; removing a volume lowers the gauge.
  EXPECT_EQ(call("Unmount", {{"Name", "m1"}, {"ID", "c1"}})["Err"], "");
  EXPECT_EQ(call("Remove", {{"Name", "m2"}})["Err"], "");
  std::string s2 = http("http://" + listen + "/metrics").body;
  EXPECT_EQ(sample(s2, "stowage_volumes"), 1);
  EXPECT_EQ(sample(s2, "stowage_mount_ids"), 1);
  EXPECT_EQ(sample(s2, "stowage_docker_calls_total{endpoint=\"Unmount\",outcome=\"ok\"}"), 2);
  EXPECT_EQ(sample(s2, "stowage_docker_calls_total{endpoint=\"Remove\",outcome=\"ok\"}"), 1);
  EXPECT_EQ(sample(s2, "stowage_state_journal_flushes_total"), 3);
}

TEST_F(OpsDaemonTest, EveryLogLineAboutACallCarriesItsRequestId) {
  ASSERT_TRUE(daemon_.start({"--log-format", "json"}));
  auto created = client_.call("Create", {{"Name", "logged"}});
  ASSERT_EQ(created.json()["Err"], "");
  json failed = call("Mount", {{"Name", "nosuchvolume"}, {"ID", "c1"}});
  std::string err = failed["Err"];
  std::smatch m;
  ASSERT_TRUE(std::regex_search(err, m, std::regex(R"(\[request (docker-[0-9a-f]{6}-[0-9]+)\])"))) << err;
  const std::string failed_id = m[1];
  ASSERT_EQ(daemon_.stop(), 0);

  std::istringstream log(read_file(daemon_.log_path()));
  std::string line;
  int lines = 0, failed_lines = 0;
  std::set<std::string> create_msgs;
  std::string create_id;
  while (std::getline(log, line)) {
    json j = json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << line;
    ++lines;
    ASSERT_TRUE(j.contains("ts") && j.contains("level") && j.contains("msg")) << line;
    if (j.value("req", "") == failed_id) {
      ++failed_lines;
      EXPECT_EQ(j["level"], "warn");
      EXPECT_EQ(j["call"], "/VolumeDriver.Mount");
    }
    if (j.value("volume", "") == "logged") {
      // Both the volume manager's line and the protocol's line name the call.
      ASSERT_TRUE(j.contains("req")) << line;
      if (create_id.empty()) create_id = j["req"];
      EXPECT_EQ(j["req"], create_id) << line;
      create_msgs.insert(j["msg"]);
    }
  }
  EXPECT_GT(lines, 3);
  EXPECT_EQ(failed_lines, 1);
  EXPECT_TRUE(create_msgs.contains("volume created")) << testing::PrintToString(create_msgs);
  EXPECT_TRUE(create_msgs.contains("docker call")) << testing::PrintToString(create_msgs);
  EXPECT_NE(create_id, failed_id);
}

TEST_F(OpsDaemonTest, StatusReportsDaemonVolumesAndRepository) {
  const std::string repo = "file://" + (dir_ / "repo");
  ASSERT_EQ(run_shell(bin_dir() + "/stowctl repo init --repo " + repo, nullptr), 0);
  ASSERT_TRUE(daemon_.start({"--repository", repo, "--host-id", "it-host"}));
  EXPECT_EQ(call("Create", {{"Name", "a"}})["Err"], "");
  EXPECT_EQ(call("Create", {{"Name", "b"}})["Err"], "");
  EXPECT_EQ(call("Mount", {{"Name", "b"}, {"ID", "x1"}})["Err"], "");
  EXPECT_EQ(call("Mount", {{"Name", "b"}, {"ID", "x2"}})["Err"], "");

  std::string out;
  ASSERT_EQ(daemon_.stowctl("status --json", &out), 0) << out;
  json j = json::parse(out.substr(0, out.rfind('}') + 1), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["daemon"]["version"], "0.1.0");
  EXPECT_EQ(j["daemon"]["state_root"], daemon_.state_root());
  EXPECT_EQ(j["daemon"]["host_id"], "it-host");
  EXPECT_EQ(j["daemon"]["pid"], daemon_.pid());
  EXPECT_GE(j["daemon"]["uptime_seconds"].get<int64_t>(), 0);
  EXPECT_EQ(j["daemon"]["volumes"], 2);
  EXPECT_EQ(j["daemon"]["mounted_volumes"], 1);
  EXPECT_EQ(j["daemon"]["mount_ids"], 2);
  EXPECT_EQ(j["repository"]["configured"], true);
  EXPECT_EQ(j["repository"]["url"], repo);
  EXPECT_EQ(j["repository"]["ok"], true) << out;
  EXPECT_TRUE(j["repository"]["error"].is_null()) << out;
  ASSERT_EQ(j["volumes"].size(), 2u);
  EXPECT_EQ(j["volumes"][0]["name"], "a");
  EXPECT_EQ(j["volumes"][0]["mounts"], 0);
  EXPECT_EQ(j["volumes"][1]["name"], "b");
  EXPECT_EQ(j["volumes"][1]["mounts"], 2);
  for (const auto& v : j["volumes"]) {
    EXPECT_TRUE(v.contains("last_backup") && v.contains("lease")) << v.dump();
  }
  EXPECT_TRUE(j["volumes"][0]["lease"].is_null()) << "an unmounted volume holds no lease: " << out;
  // The backup agent's hooks fill the mounted volume's lease (docs/MIGRATION.md).
  ASSERT_TRUE(j["volumes"][1]["lease"].is_object()) << out;
  EXPECT_EQ(j["volumes"][1]["lease"]["holder"], "it-host") << out;

  EXPECT_EQ(daemon_.stowctl("status", &out), 0) << out;
  EXPECT_NE(out.find("Daemon:      stowaged 0.1.0, up "), std::string::npos) << out;
  EXPECT_NE(out.find("State root:  " + daemon_.state_root()), std::string::npos) << out;
  EXPECT_NE(out.find("Volumes:     2 (1 mounted, 2 mount IDs)"), std::string::npos) << out;
  EXPECT_NE(out.find("Repository:  " + repo + "  reachable"), std::string::npos) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(\na +0 +- +-\n)"))) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(\nb +2 +\S+ +it-host \(\w+, gen \d+\)\n)"))) << out;

  // A repository that stops answering: its config object gone.
  auto metric = [&](const std::string& series) {
    return sample(http("http://localhost/v1/metrics", daemon_.admin_socket()).body, series);
  };
  const std::string head_missing = "stowage_store_requests_total{operation=\"head\",outcome=\"NotFound\"}";
  double before = metric(head_missing);
  if (std::isnan(before)) before = 0;
  ASSERT_EQ(::rename((dir_ / "repo/config").c_str(), (dir_ / "repo/config.moved").c_str()), 0);
  EXPECT_EQ(daemon_.stowctl("status", &out), 3) << out;
  EXPECT_NE(out.find("Repository:  " + repo + "  UNREACHABLE: NotFound: the store answers but holds no repository"),
            std::string::npos)
      << out;
  EXPECT_EQ(metric(head_missing), before + 1) << "the probe's request is counted";
  ASSERT_EQ(::rename((dir_ / "repo/config.moved").c_str(), (dir_ / "repo/config").c_str()), 0);
  EXPECT_EQ(daemon_.stowctl("status", &out), 0) << out;

  // Without a repository, and without a daemon.
  ASSERT_EQ(daemon_.stop(), 0);
  ASSERT_TRUE(daemon_.start({"--host-id", "it-host"}));
  EXPECT_EQ(daemon_.stowctl("status", &out), 0) << out;
  EXPECT_NE(out.find("Repository:  not configured"), std::string::npos) << out;
  ASSERT_EQ(daemon_.stop(), 0);
  EXPECT_EQ(daemon_.stowctl("status", &out), 1);
  EXPECT_NE(out.find("cannot reach stowaged"), std::string::npos) << out;
}

// Credentials given by config file and by environment reach the store (the
// status probe talks to radosgw with them) and appear nowhere else.
// Backup schedules set through Docker's Create options, read back through
// the real stowctl; refused without a repository, and kept across a restart.
TEST_F(OpsDaemonTest, ScheduleLsShowsVolumesCreatedWithBackupOptions) {
  ASSERT_TRUE(daemon_.start({"--host-id", "it-host"}));
  std::string err = call("Create", {{"Name", "early"}, {"Opts", {{"backup", "@hourly"}}}})["Err"];
  EXPECT_NE(err.find("repository"), std::string::npos) << err;

  const std::string repo = "file://" + (dir_ / "repo");
  ASSERT_EQ(daemon_.stop(), 0);
  ASSERT_TRUE(daemon_.start({"--repository", repo, "--host-id", "it-host"}));
  EXPECT_EQ(call("Create", {{"Name", "db"}, {"Opts", {{"backup", "every:10m"}, {"keep", "last:3,daily:7"}}}})["Err"], "");
  EXPECT_EQ(call("Create", {{"Name", "plain"}})["Err"], "");
  err = call("Create", {{"Name", "bad"}, {"Opts", {{"backup", "*/61 * * * *"}}}})["Err"];
  EXPECT_NE(err.find("minute"), std::string::npos) << err;
  err = call("Create", {{"Name", "bad2"}, {"Opts", {{"keep", "last:3"}}}})["Err"];
  EXPECT_NE(err.find("backup="), std::string::npos) << err;

  auto schedules = [&] {
    std::string out;
    EXPECT_EQ(daemon_.stowctl("schedule ls --json", &out), 0) << out;
    json j = json::parse(out, nullptr, false);  // the array of schedules
    EXPECT_TRUE(j.is_array()) << out;
    return j.is_array() ? j : json::array();
  };
  json rows = schedules();
  ASSERT_EQ(rows.size(), 1u) << rows.dump();
  EXPECT_EQ(rows[0]["volume"], "db");
  EXPECT_NE(rows[0]["schedule"].get<std::string>().find("10m"), std::string::npos) << rows.dump();
  EXPECT_NE(rows[0]["keep"].get<std::string>().find("last:3"), std::string::npos) << rows.dump();
  EXPECT_TRUE(rows[0]["next_run"].is_string()) << rows.dump();
  EXPECT_TRUE(rows[0]["last_result"].is_null()) << rows.dump();
  const std::string next = rows[0]["next_run"];

  std::string human;
  ASSERT_EQ(daemon_.stowctl("schedule ls", &human), 0) << human;
  EXPECT_NE(human.find("db"), std::string::npos) << human;
  EXPECT_EQ(human.find("plain"), std::string::npos) << human;

  // The planned slot survives a crash of the daemon.
  daemon_.kill9();
  ASSERT_TRUE(daemon_.start());
  rows = schedules();
  ASSERT_EQ(rows.size(), 1u) << rows.dump();
  EXPECT_EQ(rows[0]["next_run"], next) << rows.dump();
}

TEST(OpsSecrets, CredentialsNeverLeak) {
  ASSERT_TRUE(g_rgw->ok()) << g_rgw->error();
  Radosgw& rgw = g_rgw->rgw();
  ASSERT_EQ(rgw.create_bucket("ops-secrets"), "");
  const std::string url = "s3://ops-secrets/repo";
  const std::string access = rgw.user().access_key, secret = rgw.user().secret_key;
  const std::string wrong_secret = "wrong-secret-Zq81xV03kd";
  const std::string token = "session-token-Pw93kdLx";

  // A repository to find: created with the CLI (credentials in its environment).
  std::string out;
  ASSERT_EQ(run_shell("STOWAGE_S3_ENDPOINT=" + rgw.endpoint() + " AWS_ACCESS_KEY_ID=" + access +
                          " AWS_SECRET_ACCESS_KEY=" + secret + " " + bin_dir() + "/stowctl repo init --repo " + url,
                      &out),
            0)
      << out;

  struct Case {
    std::string name;
    std::string config;                        // file contents
    std::map<std::string, std::string> env;    // daemon environment
    bool reachable;  // false: the daemon runs, keeps trying, and says why in its log, status and errors
    std::vector<std::string> secrets;          // must appear nowhere
  };
  json file_creds = {{"repository",
                      {{"url", url},
                       {"s3",
                        {{"endpoint", rgw.endpoint()},
                         {"region", rgw.region()},
                         {"access_key_id", access},
                         {"secret_access_key", secret}}}}}};
  json env_only = {{"repository", {{"url", url}, {"s3", {{"endpoint", rgw.endpoint()}}}}}};
  std::vector<Case> cases = {
      {"config-file", file_creds.dump(), {}, true, {secret}},
      {"environment", env_only.dump(), {{"AWS_ACCESS_KEY_ID", access}, {"AWS_SECRET_ACCESS_KEY", secret}}, true,
       {secret}},
      // The environment's wrong secret beats the file's right one: the store refuses (signature mismatch).
      // The daemon serves Docker anyway and reports the store's error where it is asked for.
      {"wrong-secret-from-env",
       file_creds.dump(),
       {{"AWS_SECRET_ACCESS_KEY", wrong_secret}, {"AWS_SESSION_TOKEN", token}},
       false,
       {secret, wrong_secret, token}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    TempDir dir("stowage-ops-secret");
    write_file(dir / "stowage.json", c.config);
    int port = free_tcp_port();
    RawDaemon d(dir, {"--config", dir / "stowage.json", "--log-level", "debug", "--metrics-listen",
                      "127.0.0.1:" + std::to_string(port)},
                c.env);
    std::string env_prefix;
    for (const auto& [k, v] : c.env) env_prefix += k + "=" + v + " ";
    std::string check_out;
    int check_rc =
        run_shell(env_prefix + bin_dir() + "/stowaged --check-config --config " + (dir / "stowage.json"), &check_out);
    EXPECT_EQ(check_rc, 0) << check_out;
    EXPECT_NE(check_out.find("<redacted>"), std::string::npos) << check_out;
    ASSERT_TRUE(d.up) << read_file(d.log_path);
    PluginClient client(d.plugin_socket);
    EXPECT_EQ(client.call("Create", {{"Name", "v1"}}).json()["Err"], "");
    if (c.reachable) {
      EXPECT_EQ(client.call("Mount", {{"Name", "v1"}, {"ID", "m1"}}).json()["Err"], "");
    } else {
      // The Mount needs the lease, hence the repository: refused with the store's answer.
      ASSERT_TRUE(wait_until([&] { return read_file(d.log_path).find("backup repository not reachable") !=
                                          std::string::npos; },
                             std::chrono::seconds(60)))
          << read_file(d.log_path);
      const std::string err = client.call("Mount", {{"Name", "v1"}, {"ID", "m1"}}).json()["Err"];
      EXPECT_NE(err.find("not been reached yet"), std::string::npos) << err;
      EXPECT_NE(err.find("403"), std::string::npos) << err;
    }
    EXPECT_NE(client.call("Create", {{"Name", "bad name!"}}).json()["Err"], "");
    EXPECT_NE(client.call("Create", {{"Name", "v2"}, {"Opts", {{"nonsense", secret}}}}).json()["Err"], "");
    EXPECT_NE(client.call("Mount", {{"Name", "absent"}, {"ID", "m2"}}).json()["Err"], "");
    EXPECT_NE(client.post("/VolumeDriver.Create", "{not json").json()["Err"], "");

    std::string all;  // everything a user or another process could see
    std::string status_out;
    int rc = d.stowctl("status --json", &status_out);
    EXPECT_EQ(rc, c.reachable ? 0 : 3) << status_out;
    json st = json::parse(status_out.substr(0, status_out.rfind('}') + 1), nullptr, false);
    ASSERT_FALSE(st.is_discarded()) << status_out;
    EXPECT_EQ(st["repository"]["ok"], c.reachable) << status_out;
    all += status_out;
    EXPECT_EQ(d.stowctl("status", &out), c.reachable ? 0 : 3);
    all += out;
    EXPECT_EQ(d.stowctl("volume inspect v1", &out), 0) << out;
    all += out;
    EXPECT_EQ(d.stowctl("volume inspect v1 --json", &out), 0) << out;
    all += out;
    EXPECT_EQ(d.stowctl("volume ls --json", &out), 0) << out;
    all += out;
    all += client.call("Get", {{"Name", "v1"}}).body;
    all += client.call("List", json::object()).body;
    all += proc_cmdline(d.proc->pid());
    HttpResult metrics = http("http://localhost/v1/metrics", d.admin_socket);
    EXPECT_EQ(metrics.status, 200);
    // The probe's HEAD was counted, as a success or not.
    EXPECT_EQ(sample(metrics.body, "stowage_store_requests_total{operation=\"head\",outcome=\"ok\"}") >= 1,
              c.reachable)
        << metrics.body;
    EXPECT_NE(metrics.body.find("stowage_store_requests_total{operation=\"head\",outcome=\""), std::string::npos);
    all += metrics.body;
    all += http("http://127.0.0.1:" + std::to_string(port) + "/metrics").body;
    all += check_out;
    EXPECT_EQ(d.proc->stop(SIGTERM, std::chrono::seconds(20)), 0);
    all += read_file(d.log_path);
    EXPECT_NE(all.find("docker call failed"), std::string::npos) << "the failing calls were logged";
    for (const auto& s : c.secrets) {
      EXPECT_EQ(all.find(s), std::string::npos) << "secret '" << s << "' leaked:\n" << all;
    }
  }
}

}  // namespace
}  // namespace stowage::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  stowage::test::g_rgw = new stowage::test::RadosgwEnvironment();
  ::testing::AddGlobalTestEnvironment(stowage::test::g_rgw);
  return RUN_ALL_TESTS();
}
