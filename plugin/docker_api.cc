#include "docker_api.h"

#include <chrono>
#include <set>

#include <nlohmann/json.hpp>

namespace stowage {

namespace {

using json = nlohmann::json;

constexpr std::string_view kContentType = "application/vnd.docker.plugins.v1.2+json";

HttpResponse reply(const json& body) {
  HttpResponse r;
  r.content_type = std::string(kContentType);
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

int http_status(const Status& st) {
  switch (st.code()) {
    case Code::kInvalidArgument: return 400;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists:
    case Code::kFailedPrecondition: return 409;
    default: return 500;
  }
}

// The request body as a JSON object; Docker sends none for some calls.
Result<json> parse_body(const HttpRequest& req, bool required) {
  if (req.body.find_first_not_of(" \t\r\n") == std::string::npos) {
    if (required) return Status::invalid_argument("request body is empty; expected a JSON object");
    return json::object();
  }
  json j = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::invalid_argument("request body is not valid JSON");
  if (!j.is_object()) return Status::invalid_argument("request body must be a JSON object, got " + std::string(j.type_name()));
  return j;
}

Result<std::string> string_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::invalid_argument(std::string("missing field \"") + key + "\"");
  if (!it->is_string()) {
    return Status::invalid_argument(std::string("field \"") + key + "\" must be a string, got " + it->type_name());
  }
  return it->get<std::string>();
}

Result<std::map<std::string, std::string>> opts_field(const json& j) {
  std::map<std::string, std::string> out;
  auto it = j.find("Opts");
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_object()) return Status::invalid_argument(std::string("field \"Opts\" must be an object, got ") + it->type_name());
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string()) {
      return Status::invalid_argument("option '" + k + "' must be a string, got " + std::string(v.type_name()));
    }
    out[k] = v.get<std::string>();
  }
  return out;
}

json volume_json(const VolumeInfo& v, bool with_status) {
  json out = {{"Name", v.record.name}, {"Mountpoint", v.mountpoint},
              {"CreatedAt", format_rfc3339(v.record.created_unix_ns)}};
  if (with_status) {
    json st = {{"kind", v.record.driver_kind},
               {"created", format_rfc3339(v.record.created_unix_ns)},
               {"mounts", v.record.mount_ids.size()},
               {"mount_ids", v.record.mount_ids},
               {"options", v.record.options.raw}};
    if (v.usage) {
      st["bytes_used"] = v.usage->bytes;
      st["bytes_used_complete"] = v.usage->complete;
      st["bytes_used_measured"] = format_rfc3339(v.usage_measured_unix_ns);
    }
    uint64_t snap_bytes = 0;
    json names = json::array();
    for (const auto& sn : v.snapshots) {
      snap_bytes += sn.bytes;
      names.push_back(sn.name);
    }
    st["snapshots"] = std::move(names);
    st["snapshots_bytes"] = snap_bytes;
    if (!v.problem.empty()) st["problem"] = v.problem;
    out["Status"] = std::move(st);
  }
  return out;
}

}  // namespace

HttpResponse DockerVolumeApi::error(int status, std::string_view message) {
  HttpResponse r = reply(json{{"Err", message}});
  r.status = status;
  return r;
}

HttpResponse DockerVolumeApi::handle(const HttpRequest& req) {
  auto started = std::chrono::steady_clock::now();
  std::string endpoint = req.target;
  std::string volume;
  Status st;
  HttpResponse out;

  auto run = [&]() -> Result<json> {
    if (req.method != "POST") return Status::invalid_argument("method " + req.method + " not allowed; use POST");
    if (endpoint == "/Plugin.Activate") return json{{"Implements", json::array({"VolumeDriver"})}};
    if (endpoint == "/VolumeDriver.Capabilities") return json{{"Capabilities", {{"Scope", "local"}}}};
    if (endpoint == "/VolumeDriver.List") {
      STOWAGE_ASSIGN_OR_RETURN(json body, parse_body(req, false));
      json vols = json::array();
      for (const auto& v : volumes_.list(false)) vols.push_back(volume_json(v, false));
      return json{{"Volumes", std::move(vols)}, {"Err", ""}};
    }
    static const std::set<std::string> kNamed = {"/VolumeDriver.Create", "/VolumeDriver.Remove",
                                                 "/VolumeDriver.Mount",  "/VolumeDriver.Unmount",
                                                 "/VolumeDriver.Path",   "/VolumeDriver.Get"};
    if (!kNamed.contains(endpoint)) return Status::not_found("unknown endpoint " + endpoint);
    STOWAGE_ASSIGN_OR_RETURN(json body, parse_body(req, true));
    STOWAGE_ASSIGN_OR_RETURN(volume, string_field(body, "Name"));
    if (endpoint == "/VolumeDriver.Create") {
      STOWAGE_ASSIGN_OR_RETURN(auto opts, opts_field(body));
      const bool existed = volumes_.get(volume, false).is_ok();
      STOWAGE_ASSIGN_OR_RETURN(auto info, volumes_.create(volume, opts));
      if (agent_) STOWAGE_RETURN_IF_ERROR(agent_->after_create(volume, !existed));
      return json{{"Err", ""}};
    }
    if (endpoint == "/VolumeDriver.Remove") {
      // Checked first, holding no volume manager lock: it may wait for the final backup.
      if (agent_) STOWAGE_RETURN_IF_ERROR(agent_->before_remove(volume));
      STOWAGE_RETURN_IF_ERROR(volumes_.remove(volume));
      if (agent_) agent_->after_remove(volume);
      return json{{"Err", ""}};
    }
    if (endpoint == "/VolumeDriver.Mount") {
      STOWAGE_ASSIGN_OR_RETURN(std::string id, string_field(body, "ID"));
      if (agent_) STOWAGE_RETURN_IF_ERROR(agent_->before_mount(volume).with_context("mount volume '" + volume + "'"));
      auto mp = volumes_.mount(volume, id);
      if (agent_) agent_->mount_done(volume, mp.is_ok());
      if (!mp.is_ok()) return mp.status();
      return json{{"Mountpoint", *mp}, {"Err", ""}};
    }
    if (endpoint == "/VolumeDriver.Unmount") {
      STOWAGE_ASSIGN_OR_RETURN(std::string id, string_field(body, "ID"));
      if (agent_) agent_->before_unmount(volume);
      STOWAGE_RETURN_IF_ERROR(volumes_.unmount(volume, id));
      if (agent_) agent_->after_unmount(volume);
      return json{{"Err", ""}};
    }
    if (endpoint == "/VolumeDriver.Path") {
      STOWAGE_ASSIGN_OR_RETURN(std::string mp, volumes_.path(volume));
      return json{{"Mountpoint", mp}, {"Err", ""}};
    }
    // Get
    // Never waits for a usage walk: dockerd calls Get at every container start.
    STOWAGE_ASSIGN_OR_RETURN(auto info, volumes_.get(volume, VolumeManager::Usage::kCached));
    return json{{"Volume", volume_json(info, true)}, {"Err", ""}};
  };

  Result<json> result = run();
  if (result.is_ok()) {
    out = reply(*result);
  } else {
    st = result.status();
    std::string msg = st.message();
    if (!req.request_id.empty()) msg += " [request " + req.request_id + "]";
    out = error(req.method != "POST" ? 405 : http_status(st), msg);
  }
  auto took = std::chrono::steady_clock::now() - started;
  if (metrics_) metrics_->docker_call(endpoint, outcome_label(st), took);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(took).count();
  LogLevel level = st.is_ok() ? LogLevel::kDebug : LogLevel::kWarn;
  if (st.is_ok() && endpoint != "/VolumeDriver.Get" && endpoint != "/VolumeDriver.List" &&
      endpoint != "/VolumeDriver.Path" && endpoint != "/VolumeDriver.Capabilities") {
    level = LogLevel::kInfo;
  }
  if (st.is_ok()) {
    log_.log(level, "docker call", {{"req", req.request_id}, {"call", endpoint}, {"volume", volume},
                                    {"status", std::to_string(out.status)}, {"us", std::to_string(micros)}});
  } else {
    log_.log(level, "docker call failed", {{"req", req.request_id}, {"call", endpoint}, {"volume", volume},
                                           {"status", std::to_string(out.status)}, {"us", std::to_string(micros)},
                                           {"error", st.message()}});
  }
  return out;
}

}  // namespace stowage
