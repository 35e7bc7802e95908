// stowctl: the Stowage command line. Talks to stowaged over its admin socket.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "admin_client.h"
#include "daemon.h"
#include "stowage/backup_cli.h"
#include "stowage/volume.h"

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
std::optional<json> call(const std::string& socket, const std::string& method, const std::string& path) {
  auto r = stowage::admin_call(socket, method, path);
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
    std::cerr << "stowctl: " << j["error"].value("message", "request failed") << "\n";
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
  if (v.contains("problem")) std::printf("Problem:     %s\n", v["problem"].get<std::string>().c_str());
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

  stowage::BackupCliState backup_cli;
  stowage::add_backup_commands(app, backup_cli);
  CLI11_PARSE(app, argc, argv);
  if (auto rc = stowage::run_backup_command(backup_cli)) return *rc;

  if (!name.empty()) {
    if (stowage::Status st = stowage::validate_volume_name(name); !st.is_ok()) {
      std::cerr << "stowctl: " << st.message() << "\n";
      return 2;
    }
  }

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
