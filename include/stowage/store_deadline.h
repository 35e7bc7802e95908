// StoreDeadline: a time limit on the object-store calls one thread makes while
// it is in scope. A Docker call must be answered within Docker's plugin
// timeout even when the repository stalls; the calls it makes through the
// store stack (retries, each request's own stall timeout) could otherwise add
// up to minutes. Within a scope:
//   - the S3 store limits each request to the time left (CURLOPT_TIMEOUT_MS),
//     waits for a request slot no longer than that, and fails at once with
//     kDeadlineExceeded when no time is left;
//   - the retry decorator does not start a backoff that would end past it.
// Scopes nest; the earlier deadline wins. Other threads (background backups,
// restores) are unaffected.
#pragma once

#include <chrono>
#include <optional>

namespace stowage {

class StoreDeadline {
 public:
  using Clock = std::chrono::steady_clock;
  explicit StoreDeadline(Clock::duration budget);
  ~StoreDeadline();
  StoreDeadline(const StoreDeadline&) = delete;
  StoreDeadline& operator=(const StoreDeadline&) = delete;

  // The calling thread's deadline, if it is inside a scope.
  static std::optional<Clock::time_point> current();
  // The time from now to that deadline, never negative; empty outside a scope.
  static std::optional<Clock::duration> left();

 private:
  std::optional<Clock::time_point> outer_;
};

}  // namespace stowage
