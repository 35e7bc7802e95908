// The daemon's view of its backup repository's object store: opening it from
// the effective configuration with the standard decorators plus metrics, and a
// cheap reachability probe for `stowctl status`.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "daemon.h"
#include "daemon_metrics.h"
#include "stowage/object_store.h"
#include "stowage/status.h"

namespace stowage {

// Wraps `inner` so that every call is counted in `metrics` by operation
// ("put", "get", "head", "list", "remove") and outcome, with its latency.
// Placed under the retry decorator it sees each attempt. `metrics` must
// outlive the store.
std::unique_ptr<ObjectStore> make_metered_store(std::unique_ptr<ObjectStore> inner, DaemonMetrics& metrics);

// Opens opts.repository_url (file:///… or s3://…, S3 settings from opts.s3):
// base store → metered (when `metrics` is given) → retry (retries counted).
// kFailedPrecondition when no repository is configured. Does no I/O for S3.
[[nodiscard]] Result<std::unique_ptr<ObjectStore>> open_repository_store(const DaemonOptions& opts,
                                                                        DaemonMetrics* metrics);

// Checks that the repository answers: one HEAD of its `config` object, no
// retries, connect and stall timeouts of `timeout`, counted in `metrics` when
// given. OK when it exists;
// kNotFound (with a hint) when the store answers but holds no repository;
// otherwise the store's error. Never includes credentials in messages.
[[nodiscard]] Status probe_repository(const DaemonOptions& opts, std::chrono::seconds timeout,
                                      DaemonMetrics* metrics);

}  // namespace stowage
