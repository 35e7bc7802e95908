// stowctl: the Stowage command line. Talks to stowaged over its admin socket.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "admin_client.h"
#include "daemon.h"
#include "fs_util.h"
#include "stowage/backup_cli.h"
#include "stowage/volume.h"
#include "schedule_cli.h"
#include "stowctl_status.h"

namespace {

using json = nlohmann::json;

std::string human_bytes(const json& v) {
  if (!v.is_number()) return "-";
  double b = v.get<double>();
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (b >= 1024 && u < 5) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

// Calls the daemon; prints the error and returns nullopt on failure.
// `*http_status` (if given) is the reply's status, 0 when there was none.
std::optional<json> call(const std::string& socket, const std::string& method, const std::string& path,
                         const std::string& body = "", int* http_status = nullptr) {
  auto r = stowage::admin_call(socket, method, path, body);
  if (http_status) *http_status = r.is_ok() ? r->status : 0;
  if (!r.is_ok()) {
    std::cerr << "stowctl: " << r.status().message() << "\n";
    return std::nullopt;
  }
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded()) {
    std::cerr << "stowctl: daemon sent an unreadable reply (HTTP " << r->status << ")\n";
    return std::nullopt;
  }
  if (r->status != 200) {
    // The admin API answers {"error": {"message": ...}}; anything else is not
    // the admin API (e.g. --admin-socket naming the plugin socket).
    const json err = j.is_object() ? j.value("error", json()) : json();
    if (err.is_object() && err.contains("message") && err["message"].is_string()) {
      std::cerr << "stowctl: " << err["message"].get<std::string>() << "\n";
    } else {
      std::cerr << "stowctl: unexpected reply from " << socket << " (HTTP " << r->status
                << "); is it stowaged's admin socket?\n";
    }
    return std::nullopt;
  }
  return j;
}

void print_table(const json& vols) {
  std::printf("%-32s %-5s %-6s %10s  %s\n", "NAME", "KIND", "MOUNTS", "USED", "CREATED");
  for (const auto& v : vols) {
    std::string name = v.value("name", "");
    std::printf("%-32s %-5s %-6zu %10s  %s%s\n", name.c_str(), v.value("kind", "").c_str(), v["mount_ids"].size(),
                human_bytes(v["bytes_used"]).c_str(), v.value("created", "").c_str(),
                v.contains("problem") ? "  (record unreadable)" : "");
  }
}

void print_snapshots(const std::string& volume, const json& snaps, bool header) {
  if (header) std::printf("%-24s %-24s %-9s %10s %8s  %s\n", "VOLUME", "SNAPSHOT", "STRATEGY", "SIZE", "FILES", "CREATED");
  for (const auto& s : snaps) {
    std::printf("%-24s %-24s %-9s %10s %8llu  %s\n", volume.c_str(), s.value("name", "").c_str(),
                s.value("strategy", "").c_str(), human_bytes(s["bytes"]).c_str(),
                static_cast<unsigned long long>(s.value("files", uint64_t{0})), s.value("created", "").c_str());
  }
}

// `backup create NAME` and `restore SNAP --to NAME` where NAME is no path
// here (no '/', nothing by that name in the current directory) and a valid
// volume name: done by the daemon on the volume. nullopt for anything else.
std::optional<int> run_volume_backup_command(const stowage::BackupCliState& st, const std::string& socket) {
  auto is_volume = [](const std::string& arg) {
    return arg.find('/') == std::string::npos && ::access(arg.c_str(), F_OK) != 0 &&
           stowage::validate_volume_name(arg).is_ok();
  };
  // When there is no daemon or no such volume, the user may have meant a
  // directory that does not exist (yet).
  int status = 0;
  auto failed = [&status, &socket](const std::string& arg) {
    // The error may be about something else (the snapshot, the repository):
    // ask whether the volume exists.
    auto no_volume = [&] {
      auto r = stowage::admin_call(socket, "GET", "/v1/volumes/" + arg, "");
      return r.is_ok() && r->status == 404;
    };
    if (status == 0 || no_volume()) {
      std::cerr << "stowctl: ('" << arg << "' was taken as a volume name: it has no '/' and nothing here has that "
                << "name; for a directory, write ./" << arg << ")\n";
    }
    return 1;
  };
  if (st.create && st.create->parsed() && is_volume(st.path)) {
    auto j = call(socket, "POST", "/v1/volumes/" + st.path + "/backup", json{{"reason", "manual"}}.dump(), &status);
    if (!j) return failed(st.path);
    if (st.json) {
      std::cout << j->dump(2) << "\n";
    } else {
      std::printf("backed up volume %s: snapshot %s\n", st.path.c_str(),
                  (*j)["backup"].value("snapshot", "").c_str());
    }
    return 0;
  }
  if (st.restore && st.restore->parsed() && is_volume(st.target)) {
    auto j = call(socket, "POST", "/v1/volumes/" + st.target + "/restore", json{{"snapshot", st.snapshot}}.dump(),
                  &status);
    if (!j) return failed(st.target);
    if (st.json) {
      std::cout << j->dump(2) << "\n";
    } else {
      std::printf("restored volume %s from snapshot %s\n", st.target.c_str(), (*j).value("restored", "").c_str());
    }
    return 0;
  }
  return std::nullopt;
}

void print_backup_status(const json& b) {
  if (!b.is_object()) return;
  std::printf("Backups:     %s (host %s)\n", b.value("enabled", true) ? "on" : "off (backup=off)",
              b.value("host", "").c_str());
  if (b["repository"].is_object() && !b["repository"].value("connected", true)) {
    std::printf("Repository:  NOT REACHED YET%s; stowaged keeps trying\n",
                b["repository"]["error"].is_string() ? (" (" + b["repository"]["error"].get<std::string>() + ")").c_str()
                                                     : "");
  }
  const json& l = b["lease"];
  if (l.is_object()) {
    std::printf("Lease:       %s, generation %llu, expires %s\n", l.value("state", "").c_str(),
                static_cast<unsigned long long>(l.value("generation", uint64_t{0})), l.value("expires", "").c_str());
  } else {
    std::printf("Lease:       not held by this host\n");
  }
  if (b["fenced"].is_object()) {
    std::printf("FENCED:      since %s: %s\n             this host no longer backs the volume up; "
                "'stowctl volume takeover' takes it back\n",
                b["fenced"].value("since", "").c_str(), b["fenced"].value("reason", "").c_str());
  }
  const json& lb = b["last_backup"];
  if (lb.is_object()) {
    std::printf("Last backup: %s (%s) %s\n", lb.value("time", "").c_str(), lb.value("reason", "").c_str(),
                lb.value("ok", false) ? lb["snapshot"].get<std::string>().substr(0, 12).c_str()
                                      : ("FAILED: " + lb.value("error", std::string())).c_str());
  }
  if (b["final_backup"].is_string()) {
    const std::string failed = b["final_backup_error"].is_string()
                                   ? "; the last attempt FAILED: " + b["final_backup_error"].get<std::string>()
                                   : "";
    std::printf("Final backup: %s (the lease is released after it%s)\n", b["final_backup"].get<std::string>().c_str(),
                failed.c_str());
  }
  if (b["restore"].is_object()) {
    const json& r = b["restore"];
    std::printf("Restore:     %s, %s of %s bytes%s\n", r.value("running", false) ? "running" : "pending",
                std::to_string(r.value("bytes_written", uint64_t{0})).c_str(),
                std::to_string(r.value("bytes_total", uint64_t{0})).c_str(),
                r["error"].is_string() ? (" (last error: " + r["error"].get<std::string>() + ")").c_str() : "");
  }
}

void print_volume(const json& v) {
  std::printf("Name:        %s\n", v.value("name", "").c_str());
  std::printf("Kind:        %s\n", v.value("kind", "").c_str());
  std::printf("Mountpoint:  %s\n", v.value("mountpoint", "").c_str());
  std::printf("Created:     %s\n", v.value("created", "").c_str());
  std::printf("Used:        %s%s\n", human_bytes(v["bytes_used"]).c_str(),
              v.value("bytes_used_complete", true) ? "" : " (at least; volume too large to count fully)");
  std::printf("Options:    ");
  if (v["options"].empty()) std::printf(" (none)");
  for (const auto& [k, val] : v["options"].items()) std::printf(" %s=%s", k.c_str(), val.get<std::string>().c_str());
  std::printf("\nMounts:      %zu\n", v["mount_ids"].size());
  for (const auto& id : v["mount_ids"]) std::printf("  %s\n", id.get<std::string>().c_str());
  std::printf("Snapshots:   %zu\n", v["snapshots"].size());
  for (const auto& sn : v["snapshots"]) {
    std::printf("  %s  %s  %s\n", sn.value("name", "").c_str(), human_bytes(sn["bytes"]).c_str(),
                sn.value("created", "").c_str());
  }
  if (v.contains("problem")) std::printf("Problem:     %s\n", v["problem"].get<std::string>().c_str());
  if (v.contains("backup")) print_backup_status(v["backup"]);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"stowctl — manage Stowage volumes through the stowaged daemon.", "stowctl"};
  app.set_version_flag("--version", stowage::kStowageVersion);
  app.require_subcommand(1);
  std::string socket = "/run/stowage/admin.sock";
  app.add_option("--admin-socket", socket, "stowaged's admin socket")
      ->envname("STOWAGE_ADMIN_SOCKET")
      ->capture_default_str();
  bool as_json = false;

  auto* status = app.add_subcommand(
      "status", "Daemon health, repository reachability and per-volume mounts, last backup and lease (exit 0 ok, "
                "1 daemon unreachable, 3 repository unreachable)");
  status->add_flag("--json", as_json, "Print JSON for scripts");

  auto* volume = app.add_subcommand("volume", "Inspect and manage volumes");
  volume->require_subcommand(1);
  auto* ls = volume->add_subcommand("ls", "List volumes with their mounts and space used");
  ls->add_flag("--json", as_json, "Print JSON for scripts");
  std::string name;
  auto* inspect = volume->add_subcommand("inspect", "Show one volume in detail");
  inspect->add_option("name", name, "Volume name")->required();
  inspect->add_flag("--json", as_json, "Print JSON for scripts");
  auto* release = volume->add_subcommand(
      "release", "Forget every mount ID holding a volume (for IDs of containers deleted while stowaged was down)");
  release->add_option("name", name, "Volume name")->required();
  release->add_flag("--json", as_json, "Print JSON for scripts");
  auto* takeover = volume->add_subcommand(
      "takeover", "Take a volume's lease from the host holding it (that host is fenced: it stops backing the "
                  "volume up); a volume unknown here is created and restored from the repository");
  takeover->add_option("name", name, "Volume name")->required();
  takeover->add_flag("--json", as_json, "Print JSON for scripts");
  auto* forget_unsynced = volume->add_subcommand(
      "forget-unsynced", "Discard the writes of a volume that its final backup could not save to the repository "
                         "(docker volume rm refuses to lose them): for a repository gone for good. The final "
                         "backup is not retried and the lease is released (or, unreachable, left to run out); "
                         "then 'docker volume rm' works");
  forget_unsynced->add_option("name", name, "Volume name")->required();
  forget_unsynced->add_flag("--json", as_json, "Print JSON for scripts");

  auto* snapshot = app.add_subcommand("snapshot", "Point-in-time copies of volumes");
  snapshot->require_subcommand(1);
  std::string snap_name;
  bool force = false;
  auto* snap_create = snapshot->add_subcommand("create", "Snapshot a volume (name defaults to a UTC timestamp)");
  snap_create->add_option("volume", name, "Volume name")->required();
  snap_create->add_option("name", snap_name, "Snapshot name");
  snap_create->add_flag("--json", as_json, "Print JSON for scripts");
  auto* snap_ls = snapshot->add_subcommand("ls", "List the snapshots of one volume, or of all");
  snap_ls->add_option("volume", name, "Volume name");
  snap_ls->add_flag("--json", as_json, "Print JSON for scripts");
  auto* snap_rm = snapshot->add_subcommand("rm", "Delete a snapshot");
  snap_rm->add_option("volume", name, "Volume name")->required();
  snap_rm->add_option("name", snap_name, "Snapshot name")->required();
  auto* snap_rollback = snapshot->add_subcommand(
      "rollback", "Replace a volume's data with a snapshot's (refused while mounted unless --force)");
  snap_rollback->add_option("volume", name, "Volume name")->required();
  snap_rollback->add_option("name", snap_name, "Snapshot name")->required();
  snap_rollback->add_flag("--force", force,
                          "Roll back even while containers use the volume (they keep the old data until restarted)");

  stowage::BackupCliState backup_cli;
  stowage::add_backup_commands(app, backup_cli);
  stowage::ScheduleCliState schedule_cli;
  stowage::add_schedule_commands(app, schedule_cli);
  CLI11_PARSE(app, argc, argv);
  stowage::raise_open_file_limit();  // deep trees hold a descriptor per level
  if (auto rc = stowage::run_schedule_command(schedule_cli, socket)) return *rc;
  if (auto rc = run_volume_backup_command(backup_cli, socket)) return *rc;
  if (auto rc = stowage::run_backup_command(backup_cli)) return *rc;

  if (!snap_name.empty()) {
    if (stowage::Status st = stowage::validate_volume_name(snap_name); !st.is_ok()) {
      std::cerr << "stowctl: snapshot " << st.message().substr(7) << "\n";
      return 2;
    }
  }

  if (!name.empty()) {
    if (stowage::Status st = stowage::validate_volume_name(name); !st.is_ok()) {
      std::cerr << "stowctl: " << st.message() << "\n";
      return 2;
    }
  }

  if (status->parsed()) return stowage::run_status_command(socket, as_json);
  if (ls->parsed()) {
    auto j = call(socket, "GET", "/v1/volumes");
    if (!j) return 1;
    if (as_json) {
      std::cout << (*j)["volumes"].dump(2) << "\n";
    } else {
      print_table((*j)["volumes"]);
    }
    return 0;
  }
  if (inspect->parsed()) {
    auto j = call(socket, "GET", "/v1/volumes/" + name);
    if (!j) return 1;
    if (as_json) {
      std::cout << j->dump(2) << "\n";
    } else {
      print_volume(*j);
    }
    return 0;
  }
  if (snap_create->parsed()) {
    auto j = call(socket, "POST", "/v1/volumes/" + name + "/snapshots", json{{"name", snap_name}}.dump());
    if (!j) return 1;
    if (as_json) {
      std::cout << (*j)["snapshot"].dump(2) << "\n";
    } else {
      const json& sn = (*j)["snapshot"];
      std::printf("created snapshot %s@%s (%s, %s)\n", name.c_str(), sn.value("name", "").c_str(),
                  human_bytes(sn["bytes"]).c_str(), sn.value("strategy", "").c_str());
    }
    return 0;
  }
  if (snap_ls->parsed()) {
    json all = json::array();
    if (!name.empty()) {
      auto j = call(socket, "GET", "/v1/volumes/" + name + "/snapshots");
      if (!j) return 1;
      all.push_back(*j);
    } else {
      auto j = call(socket, "GET", "/v1/volumes");
      if (!j) return 1;
      for (const auto& v : (*j)["volumes"]) all.push_back(json{{"volume", v["name"]}, {"snapshots", v["snapshots"]}});
    }
    if (as_json) {
      std::cout << all.dump(2) << "\n";
    } else {
      bool header = true;
      for (const auto& v : all) {
        print_snapshots(v["volume"].get<std::string>(), v["snapshots"], header);
        header = false;
      }
    }
    return 0;
  }
  if (snap_rm->parsed()) {
    if (!call(socket, "DELETE", "/v1/volumes/" + name + "/snapshots/" + snap_name)) return 1;
    std::printf("removed snapshot %s@%s\n", name.c_str(), snap_name.c_str());
    return 0;
  }
  if (snap_rollback->parsed()) {
    if (!call(socket, "POST", "/v1/volumes/" + name + "/rollback",
              json{{"snapshot", snap_name}, {"force", force}}.dump())) {
      return 1;
    }
    std::printf("rolled %s back to snapshot %s\n", name.c_str(), snap_name.c_str());
    return 0;
  }
  if (takeover->parsed()) {
    auto j = call(socket, "POST", "/v1/volumes/" + name + "/takeover");
    if (!j) return 1;
    if (as_json) {
      std::cout << j->dump(2) << "\n";
    } else {
      std::printf("took over volume %s (lease generation %llu)\n", name.c_str(),
                  static_cast<unsigned long long>((*j)["lease"].value("generation", uint64_t{0})));
    }
    return 0;
  }
  if (forget_unsynced->parsed()) {
    auto j = call(socket, "POST", "/v1/volumes/" + name + "/forget-unsynced");
    if (!j) return 1;
    if (as_json) {
      std::cout << j->dump(2) << "\n";
    } else if ((*j).value("discarded", false)) {
      std::printf("discarded the unsynced writes of %s; 'docker volume rm %s' removes it\n", name.c_str(),
                  name.c_str());
    } else {
      std::printf("volume %s has no unsynced writes\n", name.c_str());
    }
    return 0;
  }
  if (release->parsed()) {
    auto j = call(socket, "POST", "/v1/volumes/" + name + "/release");
    if (!j) return 1;
    if (as_json) {
      std::cout << j->dump(2) << "\n";
    } else {
      std::printf("released %zu mount ID(s) of %s\n", (*j)["released"].size(), name.c_str());
    }
    return 0;
  }
  return 1;
}
