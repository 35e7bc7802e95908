// Volume leases (docs/FORMAT.md §7): which host may write backups of a volume,
// kept as generation objects `leases/<volume>/<gen>` in the repository's
// object store. Taking a lease is a create-only put of the next generation, so
// of any number of contenders exactly one wins, on every store (S3
// `If-None-Match: *` single-part PUT, local O_EXCL/link). The generation is the
// fencing token: a holder re-reads the lease before every renewal and before
// every backup commit and stops when a higher generation exists.
//
// Expiry does not trust clocks across hosts: a lease is free when released,
// when the observer has seen it unchanged (same generation and renewal count)
// for a whole ttl of its own monotonic time, or when the observer's wall clock
// is past its expiry by more than the configured clock-skew allowance.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "stowage/object_store.h"
#include "stowage/snapshot_manifest.h"
#include "stowage/status.h"

namespace stowage {

struct LeaseConfig {
  std::string host;       // this host's id, written as holder.host; required, unique per host
  std::string daemon_id;  // this daemon incarnation (informational)
  int64_t pid = 0;
  int64_t ttl_ns = 60'000'000'000;  // how long a silent holder keeps the lease
  // Wall-clock expiry counts only once the observer's clock is this far past
  // the holder's expires_ns (hosts' clocks may disagree by minutes).
  int64_t max_clock_skew_ns = 600'000'000'000;
  std::function<int64_t()> wall_ns;       // default: CLOCK_REALTIME
  std::function<int64_t()> monotonic_ns;  // default: CLOCK_MONOTONIC
  std::function<std::string()> nonce;     // default: 128 random bits, hex
};

// What happened when checking a held lease.
struct LeaseCheck {
  bool ours = false;  // still the current generation and our object
  Lease current;      // the current lease when !ours and one exists (the taker)
  std::string why;    // when !ours: one line saying what was found
};

// Thread-safe. The store must outlive the client.
class LeaseClient {
 public:
  LeaseClient(ObjectStore& store, LeaseConfig config);

  const LeaseConfig& config() const { return cfg_; }

  // The current lease of `volume`: its highest generation. kNotFound when the
  // volume never had one; kCorruption when the object does not parse or names
  // another volume or generation than its key.
  [[nodiscard]] Result<Lease> current(std::string_view volume);

  // OK if `lease` (a current lease) does not keep this host out; otherwise
  // kFailedPrecondition naming the holder, its expiry, and how to take over.
  // Records the observation used for clock-free expiry, so calling this again
  // after a ttl on an unchanged lease says it is free.
  [[nodiscard]] Status excludes_us(const Lease& lease);

  // Takes the lease of `volume`: creates the next generation with a
  // create-only put. Without `force`, fails (kFailedPrecondition) while
  // another host holds it (see excludes_us()). A lease this host held before
  // (a previous daemon of the same host id) is taken again. Of concurrent
  // contenders exactly one wins; the others get kFailedPrecondition naming the
  // winner. Retryable store errors are returned as they are (nothing held).
  // A damaged newest lease object (kCorruption) is reported, and left as it
  // is, without `force`; with `force` it is superseded like a live holder.
  // Deletes older generations afterwards (best effort).
  [[nodiscard]] Result<Lease> acquire(std::string_view volume, bool force);

  // Whether `held` is still ours: no higher generation exists and our object
  // still carries our nonce. Store errors are returned (nothing concluded).
  [[nodiscard]] Result<LeaseCheck> check(const Lease& held);

  // check(), then replaces our object with renewal+1 and a new expiry and
  // updates `held`. Lost (fenced): kFailedPrecondition starting "lease lost".
  [[nodiscard]] Status renew(Lease& held);

  // check(), then marks our object released, so others may take it at once.
  // Lost: kFailedPrecondition starting "lease lost" (nothing written).
  [[nodiscard]] Status release(Lease& held);

 private:
  struct Seen {
    uint64_t generation = 0, renewal = 0;
    std::string nonce;
    int64_t since_mono_ns = 0;
  };
  [[nodiscard]] Result<uint64_t> highest_generation(std::string_view volume);
  [[nodiscard]] Result<Lease> read_generation(std::string_view volume, uint64_t generation);
  [[nodiscard]] Status lost(const Lease& held, const LeaseCheck& c) const;
  void clean_older(std::string_view volume, uint64_t below);

  ObjectStore& store_;
  LeaseConfig cfg_;
  std::mutex mu_;
  std::map<std::string, Seen, std::less<>> seen_;  // volume → last observation
};

// True for the status renew()/release()/a fenced backup return when the lease
// was taken over.
bool is_lease_lost(const Status& st);

}  // namespace stowage
