#include "ops_api.h"

#include <unistd.h>

#include "repository_store.h"

namespace stowage {

namespace {

using json = nlohmann::json;

// How long the status call waits for the repository before reporting it
// unreachable.
constexpr std::chrono::seconds kProbeTimeout{5};

HttpResponse json_reply(int status, const json& j) {
  HttpResponse r;
  r.status = status;
  r.body = j.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

HttpResponse error_reply(int status, std::string_view code, const std::string& message) {
  return json_reply(status, json{{"error", {{"code", code}, {"message", message}}}});
}

}  // namespace

OpsApi::OpsApi(VolumeManager& volumes, DaemonMetrics& metrics, const DaemonOptions& opts, Logger& log,
               VolumeStatusHooks hooks)
    : volumes_(volumes),
      metrics_(metrics),
      opts_(opts),
      log_(log),
      hooks_(std::move(hooks)),
      started_unix_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count()) {}

HttpResponse OpsApi::metrics_response() {
  HttpResponse r;
  r.content_type = std::string(MetricsRegistry::kContentType);
  r.body = metrics_.registry().render();
  return r;
}

std::optional<HttpResponse> OpsApi::handle_admin(const HttpRequest& req) {
  std::string path = req.target.substr(0, req.target.find('?'));
  if (path != "/v1/metrics" && path != "/v1/status") return std::nullopt;
  if (req.method != "GET") return error_reply(405, "MethodNotAllowed", "use GET " + path);
  if (path == "/v1/metrics") return metrics_response();
  return json_reply(200, status());
}

HttpResponse OpsApi::handle_metrics_listener(const HttpRequest& req) {
  std::string path = req.target.substr(0, req.target.find('?'));
  if (path != "/metrics") return error_reply(404, "NotFound", "only GET /metrics is served here");
  if (req.method != "GET") return error_reply(405, "MethodNotAllowed", "use GET /metrics");
  return metrics_response();
}

json OpsApi::status() {
  auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_);
  json vols = json::array();
  size_t mounted = 0, ids = 0;
  for (const auto& v : volumes_.list(false)) {
    const std::string& name = v.record.name;
    if (!v.record.mount_ids.empty()) ++mounted;
    ids += v.record.mount_ids.size();
    json entry = {{"name", name},
                  {"mounts", v.record.mount_ids.size()},
                  {"last_backup", hooks_.last_backup ? hooks_.last_backup(name) : json(nullptr)},
                  {"lease", hooks_.lease ? hooks_.lease(name) : json(nullptr)}};
    if (!v.problem.empty()) entry["problem"] = v.problem;
    vols.push_back(std::move(entry));
  }
  json daemon = {{"version", kStowageVersion},
                 {"pid", ::getpid()},
                 {"started", format_rfc3339(started_unix_ns_)},
                 {"uptime_seconds", uptime.count()},
                 {"state_root", opts_.state_root},
                 {"host_id", opts_.host_id},
                 {"volumes", vols.size()},
                 {"mounted_volumes", mounted},
                 {"mount_ids", ids}};
  json repo = {{"configured", !opts_.repository_url.empty()}};
  if (!opts_.repository_url.empty()) {
    repo["url"] = opts_.repository_url;
    auto t0 = std::chrono::steady_clock::now();
    Status st = probe_repository(opts_, kProbeTimeout, &metrics_);
    repo["checked_ms"] =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    repo["ok"] = st.is_ok();
    repo["error"] = st.is_ok() ? json(nullptr) : json(st.to_string());
    if (!st.is_ok()) {
      log_.warn("repository probe failed", {{"repository", opts_.repository_url}, {"error", st.message()}});
    }
  }
  return json{{"daemon", std::move(daemon)}, {"repository", std::move(repo)}, {"volumes", std::move(vols)}};
}

}  // namespace stowage
