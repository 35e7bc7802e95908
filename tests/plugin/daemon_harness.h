// Runs a real stowaged binary in a scratch directory and talks to it the way
// Docker does: HTTP/1.1 POSTs with JSON over the plugin unix socket (libcurl
// with CURLOPT_UNIX_SOCKET_PATH). Used by the integration, crash and e2e tests.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace stowage::test {

struct HttpResult {
  long status = 0;        // 0 when no HTTP response arrived
  std::string error;      // curl's error when status == 0
  std::string body;
  std::string content_type;
  nlohmann::json json() const { return nlohmann::json::parse(body, nullptr, false); }
};

// One client connection (reused across calls, like Docker's plugin client).
class PluginClient {
 public:
  explicit PluginClient(std::string socket_path);
  ~PluginClient();
  PluginClient(const PluginClient&) = delete;
  PluginClient& operator=(const PluginClient&) = delete;

  // POSTs `body` to `path` ("/VolumeDriver.Create"), as Docker does: no
  // Content-Type, Accept: application/vnd.docker.plugins.v1.2+json.
  HttpResult post(const std::string& path, const std::string& body, const std::string& method = "POST");
  HttpResult call(const std::string& endpoint, const nlohmann::json& body) {
    return post("/VolumeDriver." + endpoint, body.dump());
  }

 private:
  std::string socket_;
  void* curl_;
};

// A stowaged process with its own state root and sockets under `dir`.
class Daemon {
 public:
  // The daemon lives in `dir` (state/, plugin.sock, admin.sock, log). Not started.
  explicit Daemon(std::string dir, std::string plugin_socket = "");
  ~Daemon();

  // From the next start() on, runs `prefix... stowaged ...` (e.g. nsenter into
  // another mount namespace; the prefix must exec stowaged in place) with
  // `env` added to the environment (repository credentials).
  void set_launcher(std::vector<std::string> prefix) { launcher_ = std::move(prefix); }
  void set_env(std::map<std::string, std::string> env) { env_ = std::move(env); }

  // Starts stowaged and waits until the plugin socket accepts connections.
  // Fails the current test (and returns false) if it does not come up.
  // `extra_args`, when given, are remembered for later restarts.
  bool start(std::vector<std::string> extra_args = {});
  // SIGKILL: a crash.
  void kill9();
  // SIGTERM and wait.
  int stop();
  bool running() { return proc_ && proc_->running(); }

  const std::string& state_root() const { return state_root_; }
  const std::string& plugin_socket() const { return plugin_socket_; }
  const std::string& admin_socket() const { return admin_socket_; }
  const std::string& log_path() const { return log_path_; }
  pid_t pid() const { return proc_ ? proc_->pid() : -1; }

  // Runs stowctl against this daemon; returns exit status, output in *out.
  int stowctl(const std::string& args, std::string* out);

 private:
  std::string dir_, state_root_, plugin_socket_, admin_socket_, log_path_;
  std::unique_ptr<Subprocess> proc_;
  std::vector<std::string> extra_args_;
  std::vector<std::string> launcher_;
  std::map<std::string, std::string> env_;
};

// True if a unix-socket connect to `path` succeeds.
bool socket_accepts(const std::string& path);

}  // namespace stowage::test
