#include "stowctl_status.h"

#include <cstdio>
#include <iostream>

#include "admin_client.h"

namespace stowage {

namespace {

using json = nlohmann::json;

std::string duration(int64_t s) {
  char buf[64];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  } else if (s < 86400) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lldd%02lldh", static_cast<long long>(s / 86400),
                  static_cast<long long>(s / 3600 % 24));
  }
  return buf;
}

// The last backup in one table cell: its time, marked when it failed.
std::string backup_cell(const json& v) {
  if (v.is_null()) return "-";
  if (!v.is_object()) return v.dump();
  std::string out = v.value("time", "?");
  if (!v.value("ok", true)) out += " (failed)";
  return out;
}

// The lease in one table cell: holder, state and generation.
std::string lease_cell(const json& v) {
  if (v.is_null()) return "-";
  if (!v.is_object()) return v.dump();
  std::string out = v.value("holder", "?");
  out += " (" + v.value("state", "?");
  if (v.contains("generation") && v["generation"].is_number()) out += ", gen " + v["generation"].dump();
  return out + ")";
}

}  // namespace

std::string format_status(const json& s) {
  const json& d = s["daemon"];
  const json& r = s["repository"];
  std::string out;
  char line[1024];
  std::snprintf(line, sizeof line, "Daemon:      stowaged %s, up %s (pid %lld, host %s)\n",
                d.value("version", "?").c_str(), duration(d.value("uptime_seconds", int64_t{0})).c_str(),
                static_cast<long long>(d.value("pid", int64_t{0})), d.value("host_id", "?").c_str());
  out += line;
  std::snprintf(line, sizeof line, "State root:  %s\n", d.value("state_root", "?").c_str());
  out += line;
  std::snprintf(line, sizeof line, "Volumes:     %llu (%llu mounted, %llu mount IDs)\n",
                static_cast<unsigned long long>(d.value("volumes", uint64_t{0})),
                static_cast<unsigned long long>(d.value("mounted_volumes", uint64_t{0})),
                static_cast<unsigned long long>(d.value("mount_ids", uint64_t{0})));
  out += line;
  if (!r.value("configured", false)) {
    out += "Repository:  not configured (repository.url)\n";
  } else if (r.value("ok", false)) {
    std::snprintf(line, sizeof line, "Repository:  %s  reachable (%lld ms)\n", r.value("url", "?").c_str(),
                  static_cast<long long>(r.value("checked_ms", int64_t{0})));
    out += line;
  } else {
    std::snprintf(line, sizeof line, "Repository:  %s  UNREACHABLE: %s\n", r.value("url", "?").c_str(),
                  r["error"].is_string() ? r["error"].get<std::string>().c_str() : "unknown error");
    out += line;
  }
  const json& vols = s["volumes"];
  if (!vols.empty()) {
    std::snprintf(line, sizeof line, "\n%-32s %-6s %-42s %s\n", "VOLUME", "MOUNTS", "LAST BACKUP", "LEASE");
    out += line;
    for (const auto& v : vols) {
      std::snprintf(line, sizeof line, "%-32s %-6llu %-42s %s\n", v.value("name", "?").c_str(),
                    static_cast<unsigned long long>(v.value("mounts", uint64_t{0})),
                    backup_cell(v["last_backup"]).c_str(), lease_cell(v["lease"]).c_str());
      out += line;
    }
  }
  return out;
}

int run_status_command(const std::string& admin_socket, bool as_json) {
  auto r = admin_call(admin_socket, "GET", "/v1/status");
  if (!r.is_ok()) {
    std::cerr << "stowctl: " << r.status().message() << "\n";
    return kStatusDaemonDown;
  }
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || r->status != 200 || !j.is_object() || !j.contains("daemon")) {
    std::cerr << "stowctl: daemon sent an unexpected status reply (HTTP " << r->status << ")\n";
    return kStatusDaemonDown;
  }
  if (as_json) {
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << format_status(j);
  }
  const json& repo = j["repository"];
  if (repo.value("configured", false) && !repo.value("ok", false)) return kStatusRepositoryDown;
  return kStatusOk;
}

}  // namespace stowage
