#include "schedule_cli.h"

#include <cstdio>
#include <iostream>

#include "admin_client.h"

namespace stowage {

namespace {

using json = nlohmann::json;

// "2026-11-26T13:00:00.000000000Z" → "2026-11-26 13:00:00Z"; null → "-".
std::string short_time(const json& t) {
  if (!t.is_string()) return "-";
  std::string s = t.get<std::string>();
  if (s.size() >= 19) s = s.substr(0, 10) + " " + s.substr(11, 8) + "Z";
  return s;
}

std::string last_run(const json& r) {
  if (r.value("running", false)) return short_time(r["last_start"]) + " running";
  if (!r["last_result"].is_string()) return "never";
  std::string s = short_time(r["last_start"]) + " " + r["last_result"].get<std::string>();
  std::string err = r.value("last_error", "");
  if (!err.empty()) s += ": " + err;
  return s;
}

}  // namespace

void add_schedule_commands(CLI::App& app, ScheduleCliState& st) {
  st.schedule = app.add_subcommand(
      "schedule",
      "Scheduled backups of volumes (set with docker volume create -o backup=SCHEDULE -o keep=POLICY)");
  st.schedule->require_subcommand(1);
  st.schedule->footer(
      "Schedules (UTC): @hourly @daily @weekly @monthly @yearly (or daily, …), cron \"MIN HOUR DOM MON DOW\"\n"
      "(e.g. \"*/15 * * * *\", \"30 2 * * mon-fri\"), every:DURATION (every:10m, every:1h30m; at least 1m), off.\n"
      "Each run starts at its slot plus a random delay of at most a tenth of the interval (5 minutes at most);\n"
      "a slot missed while stowaged was down runs once at start; a slot that comes while the volume's\n"
      "previous backup still runs is skipped. keep=last:N,hourly:N,daily:N,weekly:N,monthly:N,yearly:N\n"
      "forgets older backups of the volume after each successful run (prune stays manual). docs/BACKUP.md");
  st.ls = st.schedule->add_subcommand(
      "ls", "List volumes with a backup schedule: schedule, keep policy, last run and its result, next run");
  st.ls->add_flag("--json", st.json, "Print JSON for scripts");
}

std::string format_schedule_table(const json& reply) {
  std::string out;
  char line[1024];
  std::snprintf(line, sizeof line, "%-24s %-16s %-24s %-21s %s\n", "VOLUME", "SCHEDULE", "KEEP", "NEXT RUN",
                "LAST RUN");
  out += line;
  for (const auto& r : reply.value("schedules", json::array())) {
    std::string keep = r.value("keep", "");
    std::string next = r["next_run"].is_string() ? short_time(r["next_run"]) : "-";
    if (r.value("due", false)) next += " (waiting)";
    std::snprintf(line, sizeof line, "%-24s %-16s %-24s %-21s %s\n", r.value("volume", "").c_str(),
                  r.value("schedule", "").c_str(), keep.empty() ? "-" : keep.c_str(), next.c_str(),
                  last_run(r).c_str());
    out += line;
  }
  return out;
}

std::optional<int> run_schedule_command(const ScheduleCliState& st, const std::string& admin_socket) {
  if (!st.ls || !st.ls->parsed()) return std::nullopt;
  auto r = admin_call(admin_socket, "GET", "/v1/schedules");
  if (!r.is_ok()) {
    std::cerr << "stowctl: " << r.status().message() << "\n";
    return 1;
  }
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    std::cerr << "stowctl: daemon sent an unreadable reply (HTTP " << r->status << ")\n";
    return 1;
  }
  if (r->status != 200) {
    std::cerr << "stowctl: " << j.value("error", json::object()).value("message", "request failed") << "\n";
    return 1;
  }
  if (st.json) {
    std::cout << j["schedules"].dump(2) << "\n";
  } else {
    std::cout << format_schedule_table(j);
  }
  return 0;
}

}  // namespace stowage
