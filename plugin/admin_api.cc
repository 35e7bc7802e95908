#include "admin_api.h"

#include <nlohmann/json.hpp>

namespace stowage {

namespace {

using json = nlohmann::json;

json snapshot_json(const SnapshotInfo& s) {
  return {{"name", s.name}, {"created", format_rfc3339(s.created_unix_ns)}, {"bytes", s.bytes},
          {"files", s.files}, {"strategy", s.strategy}};
}

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
  json snaps = json::array();
  for (const auto& sn : v.snapshots) snaps.push_back(snapshot_json(sn));
  j["snapshots"] = std::move(snaps);
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
    case Code::kUnimplemented: return 501;
    case Code::kUnavailable: return 503;
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
  if (path == "/v1/schedules" && req.method == "GET") {
    if (!scheduler_) return fail(Status::unimplemented("backup schedules are not available in this daemon"));
    HttpResponse r;
    r.body = schedules_to_json(scheduler_->list());
    return r;
  }
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
      json j = volume_json(*v);
      j["backup"] = agent_ ? agent_->volume_status(name) : json(nullptr);
      return ok(j);
    }
    if ((action == "backup" || action == "restore" || action == "takeover") && req.method == "POST") {
      if (!agent_) {
        return fail(Status::unimplemented("no repository is configured (set repository_url / --repository)"));
      }
      json body = req.body.empty() ? json::object() : json::parse(req.body, nullptr, false);
      if (!body.is_object() || (body.contains("snapshot") && !body["snapshot"].is_string()) ||
          (body.contains("reason") && !body["reason"].is_string())) {
        return fail(Status::invalid_argument("body must be empty or {\"snapshot\": \"<id>\"} / {\"reason\": \"…\"}"));
      }
      if (action == "backup") {
        if (Status st = agent_->backup_volume(name, body.value("reason", "manual")); !st.is_ok()) return fail(st);
        return ok(json{{"volume", name}, {"backup", agent_->last_backup_json(name)}});
      }
      if (action == "restore") {
        auto id = agent_->restore_volume(name, body.value("snapshot", "latest"));
        if (!id.is_ok()) return fail(id.status());
        return ok(json{{"volume", name}, {"restored", *id}});
      }
      auto lease = agent_->takeover(name);
      if (!lease.is_ok()) return fail(lease.status());
      return ok(json{{"volume", name}, {"lease", agent_->lease_json(name)}});
    }
    if (action == "forget-unsynced" && req.method == "POST") {
      if (!agent_) {
        return fail(Status::unimplemented("no repository is configured (set repository_url / --repository)"));
      }
      auto discarded = agent_->forget_unsynced(name);
      if (!discarded.is_ok()) return fail(discarded.status());
      return ok(json{{"volume", name}, {"discarded", *discarded}});
    }
    if (action == "snapshots" && req.method == "GET") {
      auto snaps = volumes_.snapshot_list(name);
      if (!snaps.is_ok()) return fail(snaps.status());
      json arr = json::array();
      for (const auto& sn : *snaps) arr.push_back(snapshot_json(sn));
      return ok(json{{"volume", name}, {"snapshots", std::move(arr)}});
    }
    if (action == "snapshots" && req.method == "POST") {
      json body = req.body.empty() ? json::object() : json::parse(req.body, nullptr, false);
      if (!body.is_object() || (body.contains("name") && !body["name"].is_string())) {
        return fail(Status::invalid_argument("body must be {\"name\": \"<snapshot>\"} or empty"));
      }
      auto snap = volumes_.snapshot_create(name, body.value("name", ""));
      if (!snap.is_ok()) return fail(snap.status());
      return ok(json{{"volume", name}, {"snapshot", snapshot_json(*snap)}});
    }
    if (action.starts_with("snapshots/") && req.method == "DELETE") {
      std::string snap = action.substr(std::string("snapshots/").size());
      if (Status st = volumes_.snapshot_remove(name, snap); !st.is_ok()) return fail(st);
      return ok(json{{"volume", name}, {"removed", snap}});
    }
    if (action == "rollback" && req.method == "POST") {
      json body = json::parse(req.body, nullptr, false);
      if (!body.is_object() || !body.contains("snapshot") || !body["snapshot"].is_string() ||
          (body.contains("force") && !body["force"].is_boolean())) {
        return fail(Status::invalid_argument("body must be {\"snapshot\": \"<name>\", \"force\": false}"));
      }
      std::string snap = body["snapshot"];
      if (Status st = volumes_.snapshot_rollback(name, snap, body.value("force", false)); !st.is_ok()) {
        return fail(st);
      }
      return ok(json{{"volume", name}, {"rolled_back_to", snap}});
    }
    if (action == "release" && req.method == "POST") {
      // As Docker's Unmount of each: counted first, then the final backup
      // and the lease release as after the last Unmount.
      if (agent_) agent_->before_unmount(name);
      auto ids = volumes_.release_all(name);
      if (!ids.is_ok()) return fail(ids.status());
      if (agent_ && !ids->empty()) agent_->after_unmount(name);
      return ok(json{{"released", *ids}});
    }
  }
  return error(404, "NotFound", "no admin endpoint " + req.method + " " + path);
}

}  // namespace stowage
