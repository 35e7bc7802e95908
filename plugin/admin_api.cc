#include "admin_api.h"

#include <nlohmann/json.hpp>

namespace stowage {

namespace {

using json = nlohmann::json;

json volume_json(const VolumeInfo& v) {
  json j = {{"name", v.record.name},
            {"kind", v.record.driver_kind},
            {"mountpoint", v.mountpoint},
            {"created", format_rfc3339(v.record.created_unix_ns)},
            {"options", v.record.options.raw},
            {"mount_ids", v.record.mount_ids}};
  if (v.usage) {
    j["bytes_used"] = v.usage->bytes;
    j["bytes_used_complete"] = v.usage->complete;
  } else {
    j["bytes_used"] = nullptr;
  }
  if (!v.problem.empty()) j["problem"] = v.problem;
  return j;
}

HttpResponse ok(const json& j) {
  HttpResponse r;
  r.body = j.dump(-1, ' ', false, json::error_handler_t::replace);
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

}  // namespace

std::string AdminApi::volume_to_json(const VolumeInfo& v) { return volume_json(v).dump(); }

HttpResponse AdminApi::error(int status, std::string_view code, std::string_view message) {
  HttpResponse r = ok(json{{"error", {{"code", code}, {"message", message}}}});
  r.status = status;
  return r;
}

HttpResponse AdminApi::handle(const HttpRequest& req) {
  std::string path = req.target.substr(0, req.target.find('?'));
  auto fail = [&](const Status& st) {
    log_.warn("admin call failed", {{"req", req.request_id}, {"path", path}, {"error", st.message()}});
    return error(http_status(st), code_name(st.code()), st.message());
  };
  const std::string kVolumes = "/v1/volumes";
  if (path == "/v1/health" && req.method == "GET") {
    return ok(json{{"status", "ok"}, {"version", version_}, {"volumes", volumes_.list(false).size()},
                   {"state_root", volumes_.state_root()}});
  }
  if (path == kVolumes && req.method == "GET") {
    json arr = json::array();
    for (const auto& v : volumes_.list(true)) arr.push_back(volume_json(v));
    return ok(json{{"volumes", std::move(arr)}});
  }
  if (path.starts_with(kVolumes + "/")) {
    std::string rest = path.substr(kVolumes.size() + 1);
    std::string name = rest.substr(0, rest.find('/'));
    std::string action = rest.size() > name.size() ? rest.substr(name.size() + 1) : "";
    if (Status st = validate_volume_name(name); !st.is_ok()) return fail(st);
    if (action.empty() && req.method == "GET") {
      auto v = volumes_.get(name, true);
      if (!v.is_ok()) return fail(v.status());
      return ok(volume_json(*v));
    }
    if (action == "release" && req.method == "POST") {
      auto ids = volumes_.release_all(name);
      if (!ids.is_ok()) return fail(ids.status());
      return ok(json{{"released", *ids}});
    }
  }
  return error(404, "NotFound", "no admin endpoint " + req.method + " " + path);
}

}  // namespace stowage
