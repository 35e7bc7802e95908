// FaultInjectingStore: a decorator that makes a healthy store misbehave in
// chosen, reproducible ways (failed calls, short or corrupted reads, delays,
// writes lost after reporting success), so that retry logic, integrity checks
// and the conformance suite can be exercised without a flaky network.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "stowage/object_store.h"
#include "stowage/store_retry.h"

namespace stowage {

enum class StoreOp : unsigned { kPut = 1, kGet = 2, kHead = 4, kList = 8, kRemove = 16 };
constexpr unsigned kAllStoreOps = 31;

struct FaultPlan {
  // Decisions are a pure function of (seed, operation, key, how many times this
  // operation was called on this key), so a run is reproducible even when the
  // calls come from many threads in a different order.
  uint64_t seed = 1;
  unsigned ops = kAllStoreOps;  // StoreOp bits the faults below apply to
  // Share of calls that fail without reaching the inner store, with a code
  // picked uniformly from fail_codes (retryable for kUnavailable and
  // kDeadlineExceeded, permanent otherwise).
  double fail_rate = 0;
  std::vector<Code> fail_codes = {Code::kUnavailable};
  double truncate_read_rate = 0;  // get() returns a strict prefix of the bytes
  double corrupt_read_rate = 0;   // get() returns the bytes with one bit flipped
  double lose_write_rate = 0;     // put() reports OK but stores nothing
  double delay_rate = 0;          // calls sleep up to max_delay first
  std::chrono::milliseconds max_delay{0};
};

struct FaultStats {
  uint64_t calls = 0, failed = 0, truncated = 0, corrupted = 0, lost_writes = 0, delayed = 0;
};

class FaultInjectingStore : public ObjectStore {
 public:
  virtual FaultStats stats() const = 0;
};

// `env` provides the sleeps for delays (its uniform01 is not used: faults are
// seeded by the plan). Caps are the inner store's.
std::unique_ptr<FaultInjectingStore> make_fault_injecting_store(std::unique_ptr<ObjectStore> inner, FaultPlan plan,
                                                               std::shared_ptr<RetryEnv> env = real_retry_env());

}  // namespace stowage
