#include "stowage/lease.h"

#include <sys/random.h>

#include <algorithm>
#include <chrono>
#include <ctime>

namespace stowage {
namespace {

constexpr std::string_view kLost = "lease lost: ";

int64_t clock_ns(clockid_t id) {
  timespec ts{};
  ::clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string random_nonce() {
  unsigned char b[16] = {};
  size_t got = 0;
  while (got < sizeof b) {
    const ssize_t n = ::getrandom(b + got, sizeof b - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (unsigned char c : b) {
    s += kHex[c >> 4];
    s += kHex[c & 15];
  }
  return s;
}

std::string seconds(int64_t ns) { return std::to_string((ns + 500'000'000) / 1'000'000'000) + "s"; }

}  // namespace

bool is_lease_lost(const Status& st) {
  return st.code() == Code::kFailedPrecondition && st.message().find(kLost) != std::string::npos;
}

LeaseClient::LeaseClient(ObjectStore& store, LeaseConfig config) : store_(store), cfg_(std::move(config)) {
  if (!cfg_.wall_ns) cfg_.wall_ns = [] { return clock_ns(CLOCK_REALTIME); };
  if (!cfg_.monotonic_ns) cfg_.monotonic_ns = [] { return clock_ns(CLOCK_MONOTONIC); };
  if (!cfg_.nonce) cfg_.nonce = random_nonce;
  if (cfg_.ttl_ns <= 0) cfg_.ttl_ns = 60'000'000'000;
}

Result<uint64_t> LeaseClient::highest_generation(std::string_view volume) {
  STOWAGE_ASSIGN_OR_RETURN(const auto objects, store_.list(lease_prefix(volume)));
  uint64_t best = 0;
  for (const auto& o : objects) {
    auto g = lease_generation_from_key(volume, o.key);
    if (g.is_ok()) best = std::max(best, *g);  // other keys are not ours to judge
  }
  if (best == 0) return Status::not_found("volume '" + std::string(volume) + "' has no lease");
  return best;
}

Result<Lease> LeaseClient::read_generation(std::string_view volume, uint64_t generation) {
  const std::string key = lease_key(volume, generation);
  STOWAGE_ASSIGN_OR_RETURN(const Bytes bytes, store_.get(key));
  auto lease = parse_lease(bytes);
  if (!lease.is_ok()) return lease.status().with_context(key);
  if (lease->volume != volume || lease->generation != generation) {
    return Status::corruption(key + ": names volume '" + lease->volume + "' generation " +
                              std::to_string(lease->generation));
  }
  return lease;
}

Result<Lease> LeaseClient::current(std::string_view volume) {
  if (!valid_volume_name(volume)) return Status::invalid_argument("invalid volume name '" + std::string(volume) + "'");
  // A generation deleted between list and get was superseded: list again.
  for (int attempt = 0;; ++attempt) {
    STOWAGE_ASSIGN_OR_RETURN(const uint64_t g, highest_generation(volume));
    auto lease = read_generation(volume, g);
    if (lease.is_ok() || lease.status().code() != Code::kNotFound || attempt == 3) return lease;
  }
}

Status LeaseClient::excludes_us(const Lease& l) {
  if (l.released) return Status::ok();
  if (l.holder.host == cfg_.host) return Status::ok();  // a previous daemon of this host
  const int64_t wall = cfg_.wall_ns();
  if (wall > l.expires_ns && wall - l.expires_ns > cfg_.max_clock_skew_ns) return Status::ok();
  const int64_t ttl = l.ttl_ns > 0 ? l.ttl_ns : cfg_.ttl_ns;
  const int64_t mono = cfg_.monotonic_ns();
  int64_t silent = 0;
  {
    std::lock_guard lk(mu_);
    auto [it, inserted] = seen_.try_emplace(std::string(l.volume));
    Seen& s = it->second;
    if (inserted || s.generation != l.generation || s.renewal != l.renewal || s.nonce != l.nonce) {
      s = Seen{l.generation, l.renewal, l.nonce, mono};
    }
    silent = mono - s.since_mono_ns;
  }
  if (silent >= ttl) return Status::ok();
  return Status::failed_precondition(
      "volume '" + l.volume + "' is in use on host '" + l.holder.host + "' (lease generation " +
      std::to_string(l.generation) + ", expires " + format_rfc3339_ns(l.expires_ns) + " by that host's clock; " +
      "seen unchanged here for " + seconds(silent) + " of the " + seconds(ttl) +
      " after which a silent holder loses it). Stop it there, or take it over with -o takeover=force or "
      "'stowctl volume takeover " + l.volume + "'");
}

Result<Lease> LeaseClient::acquire(std::string_view volume, bool force) {
  if (!valid_volume_name(volume)) return Status::invalid_argument("invalid volume name '" + std::string(volume) + "'");
  if (cfg_.host.empty()) return Status::invalid_argument("leases need a host id");
  for (int attempt = 0;; ++attempt) {
    uint64_t next = 1;
    auto cur = current(volume);
    if (cur.is_ok()) {
      if (!force) STOWAGE_RETURN_IF_ERROR(excludes_us(*cur));
      next = cur->generation + 1;
    } else if (cur.status().code() == Code::kCorruption && force) {
      // A damaged newest lease object must not lock the volume for good: the
      // operator's forced takeover supersedes it like any other holder's.
      STOWAGE_ASSIGN_OR_RETURN(const uint64_t top, highest_generation(volume));
      next = top + 1;
    } else if (cur.status().code() == Code::kCorruption) {
      return cur.status().with_context("read lease of volume '" + std::string(volume) +
                                       "' (a forced takeover replaces a damaged lease: 'stowctl volume takeover " +
                                       std::string(volume) + "')");
    } else if (cur.status().code() != Code::kNotFound) {
      return cur.status().with_context("read lease of volume '" + std::string(volume) + "'");
    }
    Lease mine;
    mine.volume = std::string(volume);
    mine.generation = next;
    mine.holder = {cfg_.host, cfg_.daemon_id, cfg_.pid};
    mine.acquired_ns = cfg_.wall_ns();
    mine.expires_ns = mine.acquired_ns + cfg_.ttl_ns;
    mine.nonce = cfg_.nonce();
    mine.ttl_ns = cfg_.ttl_ns;
    STOWAGE_ASSIGN_OR_RETURN(const std::string json, serialize_lease(mine));
    const std::string key = lease_key(volume, next);
    Status put = store_.put(key, json, {.create_only = true});
    if (!put.is_ok() && put.code() != Code::kAlreadyExists) {
      return put.with_context("take lease of volume '" + std::string(volume) + "'");
    }
    // Read back: a create-only put retried after a timeout reports
    // kAlreadyExists for our own object, and a lost write must not count.
    auto back = read_generation(volume, next);
    if (back.is_ok() && back->nonce == mine.nonce) {
      // A generation cleaned away by a later forced takeover can be created
      // again by a slow contender: it only counts if nothing newer exists.
      auto now = current(volume);
      if (now.is_ok() && now->generation > next) {
        (void)store_.remove(key);
        return Status::failed_precondition("volume '" + std::string(volume) + "' was taken at the same moment by host '" +
                                           now->holder.host + "' (lease generation " +
                                           std::to_string(now->generation) + ")");
      }
      clean_older(volume, next);
      return mine;
    }
    if (back.is_ok()) {
      // Another contender created this generation first.
      if (force || attempt >= 2) {
        return Status::failed_precondition("volume '" + std::string(volume) + "' was taken at the same moment by host '" +
                                           back->holder.host + "' (lease generation " + std::to_string(next) + ")");
      }
      continue;  // judge the winner's lease like any other
    }
    if (back.status().code() == Code::kNotFound) {
      // Gone already: a forced takeover of a later generation cleans older
      // ones, so ours may have been won and taken over before we read it back.
      auto now = current(volume);
      if (now.is_ok() && now->generation > next) {
        return Status::failed_precondition("volume '" + std::string(volume) + "' was taken at the same moment by host '" +
                                           now->holder.host + "' (lease generation " +
                                           std::to_string(now->generation) + ")");
      }
      return Status::unavailable("lease of volume '" + std::string(volume) + "': the write of " + key +
                                 " was acknowledged but is not there");
    }
    return back.status().with_context("read back lease of volume '" + std::string(volume) + "'");
  }
}

void LeaseClient::clean_older(std::string_view volume, uint64_t below) {
  auto objects = store_.list(lease_prefix(volume));
  if (!objects.is_ok()) return;
  for (const auto& o : *objects) {
    auto g = lease_generation_from_key(volume, o.key);
    if (g.is_ok() && *g < below) (void)store_.remove(o.key);
  }
}

Result<LeaseCheck> LeaseClient::check(const Lease& held) {
  LeaseCheck c;
  auto top = highest_generation(held.volume);
  if (!top.is_ok() && top.status().code() != Code::kNotFound) return top.status();
  if (!top.is_ok()) {
    c.why = "the lease objects of the volume are gone";
    return c;
  }
  if (*top > held.generation) {
    auto taker = read_generation(held.volume, *top);
    if (taker.is_ok()) {
      c.current = *taker;
      c.why = "taken over by host '" + taker->holder.host + "' (generation " + std::to_string(*top) + ")";
      if (taker->holder.host == held.holder.host && taker->holder.daemon_id != held.holder.daemon_id) {
        // A daemon takes back at once what its host id held (after a
        // restart). This daemon is alive, so another one runs with its id.
        c.why += " while this daemon ran: two daemons share the host id (the other is " +
                 taker->holder.daemon_id + "); give each host its own host_id";
      }
    } else {
      c.why = "a newer generation " + std::to_string(*top) + " exists";
    }
    return c;
  }
  auto own = read_generation(held.volume, held.generation);
  if (!own.is_ok() && own.status().code() != Code::kNotFound) return own.status();
  if (!own.is_ok()) {
    c.why = "our lease object was deleted";
  } else if (own->nonce != held.nonce) {
    c.current = *own;
    c.why = "our generation now belongs to host '" + own->holder.host + "'";
  } else {
    c.ours = true;
  }
  return c;
}

Status LeaseClient::lost(const Lease& held, const LeaseCheck& c) const {
  return Status::failed_precondition(std::string(kLost) + "volume '" + held.volume + "' generation " +
                                     std::to_string(held.generation) + ": " + c.why);
}

Status LeaseClient::renew(Lease& held) {
  STOWAGE_ASSIGN_OR_RETURN(const LeaseCheck c, check(held));
  if (!c.ours) return lost(held, c);
  Lease next = held;
  next.renewal += 1;
  next.expires_ns = cfg_.wall_ns() + cfg_.ttl_ns;
  next.ttl_ns = cfg_.ttl_ns;
  STOWAGE_ASSIGN_OR_RETURN(const std::string json, serialize_lease(next));
  STOWAGE_RETURN_IF_ERROR(store_.put(lease_key(held.volume, held.generation), json)
                              .with_context("renew lease of volume '" + held.volume + "'"));
  held = std::move(next);
  return Status::ok();
}

Status LeaseClient::release(Lease& held) {
  STOWAGE_ASSIGN_OR_RETURN(const LeaseCheck c, check(held));
  if (!c.ours) return lost(held, c);
  Lease next = held;
  next.released = true;
  next.renewal += 1;
  next.expires_ns = cfg_.wall_ns();
  STOWAGE_ASSIGN_OR_RETURN(const std::string json, serialize_lease(next));
  STOWAGE_RETURN_IF_ERROR(store_.put(lease_key(held.volume, held.generation), json)
                              .with_context("release lease of volume '" + held.volume + "'"));
  held = std::move(next);
  return Status::ok();
}

}  // namespace stowage
