// Backup policy of a volume, as written in its create options: when to back
// it up (`-o backup=…`: @hourly, 5-field cron, every:DURATION, off) and which
// backups to keep afterwards (`-o keep=last:24,daily:7,…`, restic's forget
// rules). Pure parsing and calendar arithmetic; the Scheduler (scheduler.h)
// runs them. All times are UTC: a cron field "hour 2" means 02:00 UTC, so a
// schedule never skips or repeats a run at a daylight-saving change.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "stowage/status.h"
#include "stowage/upkeep.h"

namespace stowage {

struct Schedule {
  enum class Kind { kOff, kCron, kEvery };
  Kind kind = Kind::kOff;
  std::string text;  // the schedule as written (surrounding blanks trimmed)

  // kCron: the allowed values of each field as bit sets (bit i = value i).
  uint64_t minutes = 0;   // 0-59
  uint32_t hours = 0;     // 0-23
  uint32_t days = 0;      // day of month, 1-31
  uint32_t months = 0;    // 1-12
  uint32_t weekdays = 0;  // 0-6, Sunday = 0 (7 is accepted and means Sunday)
  // Vixie cron's rule: a day field that starts with '*' is "unrestricted".
  // When neither day field is, a day matches if EITHER matches
  // ("0 0 1,15 * mon" = the 1st, the 15th and every Monday); otherwise both
  // must ("0 0 * * mon" = Mondays, "0 0 */2 * mon" = odd days that are Mondays).
  bool days_star = true, weekdays_star = true;

  // kEvery: the interval (at least kMinEveryInterval).
  int64_t every_ns = 0;

  bool off() const { return kind == Kind::kOff; }
};

inline constexpr int64_t kMinEveryIntervalNs = int64_t{60} * 1'000'000'000;          // every:1m
inline constexpr int64_t kMaxEveryIntervalNs = int64_t{366} * 86400 * 1'000'000'000;  // every:366d

// Parses a schedule:
//   off                                   no scheduled backups
//   @hourly @daily (@midnight) @weekly @monthly @yearly (@annually)
//   "MIN HOUR DOM MON DOW"                cron: `*`, lists `1,5`, ranges `1-5`,
//                                         steps `*/15`, `0-30/10`, `5/20` (= 5-59/20),
//                                         names jan-dec and sun-sat (any case)
//   every:DURATION                        e.g. every:90s, every:10m, every:1h30m, every:2d;
//                                         between 1m and 366d
// kInvalidArgument names the field and the value at fault, e.g.
// "minute field '61' is out of range 0-59", and refuses cron schedules that
// can never run ("0 0 30 2 *").
[[nodiscard]] Result<Schedule> parse_schedule(std::string_view text);

// The first slot strictly after `after_ns` (Unix ns, UTC), on a whole minute
// for cron schedules. For every:D, the slots are anchor + k·D for any integer
// k when an anchor is given, else the slot is after + D. nullopt for `off`.
std::optional<int64_t> next_slot(const Schedule& s, int64_t after_ns, std::optional<int64_t> anchor_ns = {});

// The jitter bound for the slot `slot_ns`: a tenth of the gap to the slot
// after it, at most 5 minutes (kMaxJitterNs). 0 for `off`.
inline constexpr int64_t kMaxJitterNs = int64_t{300} * 1'000'000'000;
int64_t max_jitter_ns(const Schedule& s, int64_t slot_ns);

// Parses a keep policy "last:24,hourly:48,daily:7,weekly:4,monthly:12,yearly:3"
// (any subset, any order, each rule once, counts 1-1000000) into the forget
// policy applied after each scheduled backup. kInvalidArgument names the rule
// at fault and lists the valid ones.
[[nodiscard]] Result<ForgetPolicy> parse_keep_policy(std::string_view text);

// The canonical text of a policy: its non-zero rules in the order last,
// hourly, daily, weekly, monthly, yearly ("" when empty).
std::string format_keep_policy(const ForgetPolicy& p);

// "YYYY-MM-DD HH:MM:SS UTC" for tables; "-" for 0.
std::string format_utc_short(int64_t unix_ns);

}  // namespace stowage
