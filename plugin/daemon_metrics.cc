#include "daemon_metrics.h"

#include <set>

#include "volume_manager.h"

namespace stowage {

namespace {

double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

// Endpoints outside Docker's protocol share one label value, so a client
// sending junk paths cannot grow the series without bound.
std::string endpoint_label(std::string_view endpoint) {
  static const std::set<std::string, std::less<>> kKnown = {
      "/Plugin.Activate",     "/VolumeDriver.Capabilities", "/VolumeDriver.Create", "/VolumeDriver.Remove",
      "/VolumeDriver.Mount",  "/VolumeDriver.Unmount",      "/VolumeDriver.Path",   "/VolumeDriver.Get",
      "/VolumeDriver.List"};
  auto it = kKnown.find(endpoint);
  if (it == kKnown.end()) return "other";
  return it->substr(it->find('.') + 1);
}

}  // namespace

std::string outcome_label(const Status& st) { return st.is_ok() ? "ok" : std::string(code_name(st.code())); }

DaemonMetrics::DaemonMetrics(MetricsRegistry& r, std::string_view version)
    : registry_(r),
      volumes_(r.gauge("stowage_volumes", "Volumes in the catalog")),
      volumes_mounted_(r.gauge("stowage_volumes_mounted", "Volumes held by at least one mount ID")),
      mount_ids_(r.gauge("stowage_mount_ids", "Mount IDs (containers) holding volumes, over all volumes")),
      snapshots_(r.gauge("stowage_snapshots", "Local snapshots, over all volumes")),
      journal_flushes_(r.counter("stowage_state_journal_flushes_total",
                                 "Disk flushes of the state journal (concurrent Creates and Removes share one)")),
      docker_calls_(r.counter("stowage_docker_calls_total", "Docker VolumeDriver calls by endpoint and outcome",
                              {"endpoint", "outcome"})),
      docker_seconds_(r.histogram("stowage_docker_call_duration_seconds",
                                  "Time to answer Docker VolumeDriver calls", {"endpoint"}, latency_buckets())),
      backup_seconds_(r.histogram("stowage_backup_duration_seconds",
                                  "Duration of volume backups by outcome (ok, failed)", {"outcome"},
                                  {1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600})),
      backup_read_(r.counter("stowage_backup_read_bytes_total", "Bytes read from volumes by backups", {"volume"})),
      backup_added_(r.counter("stowage_backup_added_bytes_total",
                              "Bytes added to the repository by backups (after dedup and compression)", {"volume"})),
      backup_failures_(r.counter("stowage_backup_failures_total", "Backups that failed", {"volume"})),
      backup_last_success_(r.gauge("stowage_backup_last_success_timestamp_seconds",
                                   "Unix time the last successful backup of a volume finished", {"volume"})),
      store_requests_(r.counter("stowage_store_requests_total",
                                "Object store requests (each attempt) by operation and outcome",
                                {"operation", "outcome"})),
      store_seconds_(r.histogram("stowage_store_request_duration_seconds", "Object store request latency",
                                 {"operation"}, latency_buckets())),
      store_retries_(
          r.counter("stowage_store_retries_total", "Object store requests retried after a transient error")) {
  r.gauge("stowage_build_info", "Always 1; the version label names the running stowaged", {"version"})
      .with({std::string(version)})
      .set(1);
  r.gauge("stowage_start_time_seconds", "Unix time stowaged started")
      .with()
      .set(static_cast<double>(std::chrono::duration_cast<std::chrono::seconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count()));
}

void DaemonMetrics::collect_volumes(VolumeManager& volumes) {
  registry_.add_collector([this, &volumes] {
    double vols = 0, mounted = 0, ids = 0, snaps = 0;
    for (const auto& v : volumes.list(false)) {
      ++vols;
      if (!v.record.mount_ids.empty()) ++mounted;
      ids += static_cast<double>(v.record.mount_ids.size());
      auto s = volumes.snapshot_list(v.record.name);
      if (s.is_ok()) snaps += static_cast<double>(s->size());
    }
    volumes_.with().set(vols);
    volumes_mounted_.with().set(mounted);
    mount_ids_.with().set(ids);
    snapshots_.with().set(snaps);
    Counter& flushes = journal_flushes_.with();
    flushes.inc(static_cast<double>(volumes.journal_flushes()) - flushes.value());
  });
}

void DaemonMetrics::docker_call(std::string_view endpoint, std::string_view outcome, std::chrono::nanoseconds took) {
  std::string ep = endpoint_label(endpoint);
  docker_calls_.with({ep, std::string(outcome)}).inc();
  docker_seconds_.with({ep}).observe(seconds(took));
}

void DaemonMetrics::backup_succeeded(const std::string& volume, std::chrono::nanoseconds took, uint64_t bytes_read,
                                     uint64_t bytes_added, int64_t finished_unix_seconds) {
  backup_seconds_.with({"ok"}).observe(seconds(took));
  backup_read_.with({volume}).inc(static_cast<double>(bytes_read));
  backup_added_.with({volume}).inc(static_cast<double>(bytes_added));
  backup_last_success_.with({volume}).set(static_cast<double>(finished_unix_seconds));
}

void DaemonMetrics::backup_failed(const std::string& volume, std::chrono::nanoseconds took) {
  backup_seconds_.with({"failed"}).observe(seconds(took));
  backup_failures_.with({volume}).inc();
}

void DaemonMetrics::forget_volume(const std::string& volume) {
  backup_read_.remove({volume});
  backup_added_.remove({volume});
  backup_failures_.remove({volume});
  backup_last_success_.remove({volume});
}

void DaemonMetrics::store_request(std::string_view operation, const Status& outcome, std::chrono::nanoseconds took) {
  store_requests_.with({std::string(operation), outcome_label(outcome)}).inc();
  store_seconds_.with({std::string(operation)}).observe(seconds(took));
}

void DaemonMetrics::store_retry() { store_retries_.with().inc(); }

}  // namespace stowage
