// The daemon's metrics: one place that names every metric stowaged exports
// (docs/OPERATIONS.md lists them), with small recording calls for the code
// that observes the events. Thread-safe; create one per daemon over its
// MetricsRegistry.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "metrics.h"
#include "stowage/status.h"

namespace stowage {

class VolumeManager;

class DaemonMetrics {
 public:
  explicit DaemonMetrics(MetricsRegistry& registry, std::string_view version);

  // Volumes, mounted volumes, mount IDs and snapshots, computed from `volumes`
  // at every scrape. `volumes` must outlive the registry's use.
  void collect_volumes(VolumeManager& volumes);

  // One Docker VolumeDriver call: `endpoint` is the path ("/VolumeDriver.Mount"),
  // `outcome` "ok" or the error code name ("NotFound").
  void docker_call(std::string_view endpoint, std::string_view outcome, std::chrono::nanoseconds took);

  // A finished backup of `volume` (for the backup code; see docs/OPERATIONS.md).
  void backup_succeeded(const std::string& volume, std::chrono::nanoseconds took, uint64_t bytes_read,
                        uint64_t bytes_added, int64_t finished_unix_seconds);
  void backup_failed(const std::string& volume, std::chrono::nanoseconds took);
  // Forgets a removed volume's per-volume backup series.
  void forget_volume(const std::string& volume);

  // One object-store request (an attempt: retries count again) and a retry.
  void store_request(std::string_view operation, const Status& outcome, std::chrono::nanoseconds took);
  void store_retry();

  MetricsRegistry& registry() { return registry_; }

 private:
  MetricsRegistry& registry_;
  Family<Gauge>& volumes_;
  Family<Gauge>& volumes_mounted_;
  Family<Gauge>& mount_ids_;
  Family<Gauge>& snapshots_;
  Family<Counter>& journal_flushes_;
  Family<Counter>& docker_calls_;
  Family<Histogram>& docker_seconds_;
  Family<Histogram>& backup_seconds_;
  Family<Counter>& backup_read_;
  Family<Counter>& backup_added_;
  Family<Counter>& backup_failures_;
  Family<Gauge>& backup_last_success_;
  Family<Counter>& store_requests_;
  Family<Histogram>& store_seconds_;
  Family<Counter>& store_retries_;
};

// "ok" for a success, the code's name ("NotFound") otherwise: the `outcome`
// label of every metric.
std::string outcome_label(const Status& st);

}  // namespace stowage
