#include "daemon_harness.h"

#include <curl/curl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <gtest/gtest.h>

namespace stowage::test {

namespace {
size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}
}  // namespace

PluginClient::PluginClient(std::string socket_path) : socket_(std::move(socket_path)), curl_(curl_easy_init()) {}

PluginClient::~PluginClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpResult PluginClient::post(const std::string& path, const std::string& body, const std::string& method) {
  CURL* c = static_cast<CURL*>(curl_);
  HttpResult r;
  std::string url = "http://plugin" + path;
  curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Accept: application/vnd.docker.plugins.v1.2+json");
  headers = curl_slist_append(headers, "Content-Type:");  // Docker sends none
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    r.error = curl_easy_strerror(rc);
    return r;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  char* ct = nullptr;
  curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
  if (ct) r.content_type = ct;
  return r;
}

bool socket_accepts(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

Daemon::Daemon(std::string dir, std::string plugin_socket)
    : dir_(std::move(dir)),
      state_root_(dir_ + "/state"),
      plugin_socket_(plugin_socket.empty() ? dir_ + "/plugin.sock" : std::move(plugin_socket)),
      admin_socket_(dir_ + "/admin.sock"),
      log_path_(dir_ + "/stowaged.log") {}

Daemon::~Daemon() {
  if (proc_) proc_->stop(SIGTERM, std::chrono::seconds(10));
}

bool Daemon::start(std::vector<std::string> extra_args) {
  Subprocess::Options o;
  o.argv = launcher_;
  for (std::string a : {bin_dir() + "/stowaged", std::string("--state-root"), state_root_,
                        std::string("--plugin-socket"), plugin_socket_, std::string("--admin-socket"), admin_socket_,
                        std::string("--log-level"), std::string("debug")}) {
    o.argv.push_back(std::move(a));
  }
  o.env = env_;
  if (!extra_args.empty()) extra_args_ = std::move(extra_args);
  for (const auto& a : extra_args_) o.argv.push_back(a);
  o.log_path = log_path_;
  proc_ = std::make_unique<Subprocess>(o);
  bool up = wait_until([&] { return socket_accepts(plugin_socket_) || !proc_->running(); }, std::chrono::seconds(30));
  if (!up || !proc_->running()) {
    ADD_FAILURE() << "stowaged did not start; log:\n" << read_file(log_path_);
    return false;
  }
  return true;
}

void Daemon::kill9() {
  if (proc_) proc_->kill_hard();
}

int Daemon::stop() { return proc_ ? proc_->stop(SIGTERM, std::chrono::seconds(20)) : -1; }

int Daemon::stowctl(const std::string& args, std::string* out) {
  return run_shell(bin_dir() + "/stowctl --admin-socket " + admin_socket_ + " " + args, out);
}

}  // namespace stowage::test
