#include "quiescer.h"

#include <curl/curl.h>

#include <memory>

#include <nlohmann/json.hpp>

namespace stowage {

namespace {
size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}
}  // namespace

Result<std::string> DockerQuiescer::call(const std::string& method, const std::string& path, long* status) {
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return Status::internal("curl_easy_init failed");
  std::string body;
  std::string url = "http://docker" + path;
  curl_easy_setopt(curl.get(), CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "POST") {
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE, 0L);
  }
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  CURLcode rc = curl_easy_perform(curl.get());
  if (rc != CURLE_OK) {
    return Status::unavailable("Docker API at " + socket_ + ": " + curl_easy_strerror(rc));
  }
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, status);
  return body;
}

Result<std::vector<std::string>> DockerQuiescer::pause(const std::string& volume) {
  // filters={"volume":["<name>"],"status":["running"]}, URL-encoded.
  nlohmann::json filters = {{"volume", {volume}}, {"status", {"running"}}};
  std::string f = filters.dump();
  std::unique_ptr<char, decltype(&curl_free)> esc(curl_easy_escape(nullptr, f.c_str(), static_cast<int>(f.size())),
                                                  curl_free);
  long status = 0;
  STOWAGE_ASSIGN_OR_RETURN(std::string body, call("GET", std::string("/containers/json?filters=") + esc.get(), &status));
  if (status != 200) return Status::unavailable("Docker API listed containers with HTTP " + std::to_string(status));
  auto list = nlohmann::json::parse(body, nullptr, false);
  if (!list.is_array()) return Status::unavailable("Docker API sent an unreadable container list");
  std::vector<std::string> paused;
  for (const auto& c : list) {
    std::string id = c.value("Id", "");
    if (id.empty()) continue;
    auto r = call("POST", "/containers/" + id + "/pause", &status);
    if (!r.is_ok() || (status != 204 && status != 200)) {
      Status err = r.is_ok() ? Status::unavailable("pause " + id.substr(0, 12) + ": HTTP " + std::to_string(status) +
                                                   " " + *r)
                             : r.status();
      (void)unpause(paused);
      return err.with_context("quiesce volume '" + volume + "'");
    }
    log_.info("container paused for snapshot", {{"volume", volume}, {"container", id.substr(0, 12)}});
    paused.push_back(id);
  }
  return paused;
}

Status DockerQuiescer::unpause(const std::vector<std::string>& ids) {
  Status first;
  for (const auto& id : ids) {
    long status = 0;
    auto r = call("POST", "/containers/" + id + "/unpause", &status);
    Status st = !r.is_ok() ? r.status()
                : (status == 204 || status == 200)
                    ? Status::ok()
                    : Status::unavailable("unpause " + id.substr(0, 12) + ": HTTP " + std::to_string(status));
    if (!st.is_ok()) {
      log_.error("could not unpause container", {{"container", id.substr(0, 12)}, {"error", st.message()}});
      if (first.is_ok()) first = st;
    } else {
      log_.info("container unpaused", {{"container", id.substr(0, 12)}});
    }
  }
  return first;
}

}  // namespace stowage
