// Backup schedules and keep policies (plugin/schedule.h): parsing, errors, and
// next-run arithmetic checked against fixed dates and against a brute-force
// search built on the C library's calendar (timegm/gmtime_r).
#include "schedule.h"

#include <ctime>
#include <random>

#include <gtest/gtest.h>

namespace stowage {
namespace {

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kMin = 60 * kSec;

// "2026-02-28 23:59" (UTC) as Unix ns, via the C library.
int64_t at(const char* text) {
  std::tm tm{};
  int sec = 0;
  int n = std::sscanf(text, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &sec);
  EXPECT_GE(n, 5) << text;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  tm.tm_sec = sec;
  return static_cast<int64_t>(::timegm(&tm)) * kSec;
}

std::string show(int64_t ns) {
  time_t s = static_cast<time_t>(ns / kSec);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %a", &tm);
  return buf;
}

Schedule parse_ok(const std::string& text) {
  auto s = parse_schedule(text);
  EXPECT_TRUE(s.is_ok()) << text << ": " << s.status().to_string();
  return s.is_ok() ? *s : Schedule{};
}

// The next `count` runs strictly after `from`.
std::vector<std::string> runs(const std::string& text, const char* from, int count = 1) {
  Schedule s = parse_ok(text);
  std::vector<std::string> out;
  int64_t t = at(from);
  for (int i = 0; i < count; ++i) {
    auto n = next_slot(s, t);
    if (!n) break;
    out.push_back(show(*n));
    t = *n;
  }
  return out;
}

using V = std::vector<std::string>;

void expect_error(const std::string& text, const std::string& fragment) {
  auto s = parse_schedule(text);
  ASSERT_FALSE(s.is_ok()) << "'" << text << "' parsed";
  EXPECT_EQ(s.status().code(), Code::kInvalidArgument);
  EXPECT_NE(s.status().message().find(fragment), std::string::npos)
      << "'" << text << "': expected '" << fragment << "' in: " << s.status().message();
}

TEST(Schedule, Macros) {
  // 2026-11-26 is a Thursday.
  EXPECT_EQ(runs("@hourly", "2026-11-26 12:34:56", 2), (V{"2026-11-26 13:00:00 Thu", "2026-11-26 14:00:00 Thu"}));
  EXPECT_EQ(runs("@daily", "2026-11-26 12:34"), V{"2026-11-27 00:00:00 Fri"});
  EXPECT_EQ(runs("@midnight", "2026-11-26 12:34"), V{"2026-11-27 00:00:00 Fri"});
  EXPECT_EQ(runs("@weekly", "2026-11-26 12:34", 2), (V{"2026-11-29 00:00:00 Sun", "2026-12-06 00:00:00 Sun"}));
  EXPECT_EQ(runs("@monthly", "2026-11-26 12:34", 2), (V{"2026-12-01 00:00:00 Tue", "2027-01-01 00:00:00 Fri"}));
  EXPECT_EQ(runs("@yearly", "2026-11-26 12:34"), V{"2027-01-01 00:00:00 Fri"});
  EXPECT_EQ(runs("@annually", "2027-01-01 00:00"), V{"2028-01-01 00:00:00 Sat"});
  EXPECT_EQ(parse_ok("  @Daily ").text, "@daily");
  // The @ may be left out; the schedule is then shown with it.
  EXPECT_EQ(parse_ok("daily").text, "@daily");
  EXPECT_EQ(parse_ok("Weekly").text, "@weekly");
  EXPECT_EQ(runs("hourly", "2026-11-26 12:34:56"), V{"2026-11-26 13:00:00 Thu"});
  EXPECT_FALSE(parse_schedule("dailyish").is_ok());
}

TEST(Schedule, NextIsStrictlyAfterAndOnAWholeMinute) {
  EXPECT_EQ(runs("@hourly", "2026-11-26 13:00:00"), V{"2026-11-26 14:00:00 Thu"});
  Schedule s = parse_ok("* * * * *");
  EXPECT_EQ(*next_slot(s, at("2026-11-26 13:00:00")), at("2026-11-26 13:01:00"));
  EXPECT_EQ(*next_slot(s, at("2026-11-26 13:00:00") - 1), at("2026-11-26 13:00:00"));
  EXPECT_EQ(*next_slot(s, at("2026-11-26 13:00:59") + 999'999'999), at("2026-11-26 13:01:00"));
}

TEST(Schedule, StepsRangesAndLists) {
  EXPECT_EQ(runs("*/15 * * * *", "2026-11-26 12:07", 4),
            (V{"2026-11-26 12:15:00 Thu", "2026-11-26 12:30:00 Thu", "2026-11-26 12:45:00 Thu",
               "2026-11-26 13:00:00 Thu"}));
  EXPECT_EQ(runs("0-30/10 8 * * *", "2026-11-26 07:00", 5),
            (V{"2026-11-26 08:00:00 Thu", "2026-11-26 08:10:00 Thu", "2026-11-26 08:20:00 Thu",
               "2026-11-26 08:30:00 Thu", "2026-11-27 08:00:00 Fri"}));
  EXPECT_EQ(runs("5/20 3 * * *", "2026-11-26 00:00", 4),
            (V{"2026-11-26 03:05:00 Thu", "2026-11-26 03:25:00 Thu", "2026-11-26 03:45:00 Thu",
               "2026-11-27 03:05:00 Fri"}));
  EXPECT_EQ(runs("0,30 1,13 * * *", "2026-11-26 12:00", 3),
            (V{"2026-11-26 13:00:00 Thu", "2026-11-26 13:30:00 Thu", "2026-11-27 01:00:00 Fri"}));
  // Office hours: from Friday evening to Monday morning.
  EXPECT_EQ(runs("0 9-17 * * mon-fri", "2026-11-27 17:30", 2),
            (V{"2026-11-30 09:00:00 Mon", "2026-11-30 10:00:00 Mon"}));
  // Every other hour, in a range with a step and a list item beside it.
  EXPECT_EQ(runs("0 0-6/3,23 * * *", "2026-11-26 00:00", 4),
            (V{"2026-11-26 03:00:00 Thu", "2026-11-26 06:00:00 Thu", "2026-11-26 23:00:00 Thu",
               "2026-11-27 00:00:00 Fri"}));
}

TEST(Schedule, NamesAndSundayAsSeven) {
  EXPECT_EQ(runs("0 0 * JAN,Jul sun", "2026-11-26 00:00", 2),
            (V{"2027-01-03 00:00:00 Sun", "2027-01-10 00:00:00 Sun"}));
  EXPECT_EQ(runs("0 0 * * 7", "2026-11-26 00:00"), V{"2026-11-29 00:00:00 Sun"});
  EXPECT_EQ(runs("0 0 * * 5-7", "2026-11-26 00:00", 3),
            (V{"2026-11-27 00:00:00 Fri", "2026-11-28 00:00:00 Sat", "2026-11-29 00:00:00 Sun"}));
  EXPECT_EQ(runs("0 12 * mar-may *", "2026-11-26 00:00"), V{"2027-03-01 12:00:00 Mon"});
}

TEST(Schedule, DayOfMonthOrDayOfWeekWhenBothAreRestricted) {
  // Cron's rule: both restricted → either matches. The 13th and every Friday.
  EXPECT_EQ(runs("0 0 13 * fri", "2026-11-01 00:00", 5),
            (V{"2026-11-06 00:00:00 Fri", "2026-11-13 00:00:00 Fri", "2026-11-20 00:00:00 Fri",
               "2026-11-27 00:00:00 Fri", "2026-12-04 00:00:00 Fri"}));
  EXPECT_EQ(runs("0 0 1,15 * mon", "2026-11-26 00:00", 4),
            (V{"2026-11-30 00:00:00 Mon", "2026-12-01 00:00:00 Tue", "2026-12-07 00:00:00 Mon",
               "2026-12-14 00:00:00 Mon"}));
  // Only one restricted → that one alone.
  EXPECT_EQ(runs("0 0 13 * *", "2026-11-01 00:00", 2), (V{"2026-11-13 00:00:00 Fri", "2026-12-13 00:00:00 Sun"}));
  EXPECT_EQ(runs("0 0 * * fri", "2026-11-01 00:00", 2), (V{"2026-11-06 00:00:00 Fri", "2026-11-13 00:00:00 Fri"}));
  // A field that starts with '*' counts as unrestricted (Vixie cron): then
  // both must match — odd days of the month that are Mondays.
  EXPECT_EQ(runs("0 0 */2 * mon", "2026-11-01 00:00", 3),
            (V{"2026-11-09 00:00:00 Mon", "2026-11-23 00:00:00 Mon", "2026-12-07 00:00:00 Mon"}));
  // A day that February lacks still runs on February's Mondays.
  EXPECT_EQ(runs("0 0 30 2 mon", "2027-01-31 00:00", 2), (V{"2027-02-01 00:00:00 Mon", "2027-02-08 00:00:00 Mon"}));
}

TEST(Schedule, LeapDaysAndMonthEnds) {
  EXPECT_EQ(runs("0 0 29 2 *", "2025-03-01 00:00", 2), (V{"2028-02-29 00:00:00 Tue", "2032-02-29 00:00:00 Sun"}));
  // 2100 is not a leap year.
  EXPECT_EQ(runs("0 0 29 2 *", "2096-03-01 00:00"), V{"2104-02-29 00:00:00 Fri"});
  EXPECT_EQ(runs("0 0 29 2 *", "2000-01-01 00:00"), V{"2000-02-29 00:00:00 Tue"});
  // The 31st skips the months without one.
  EXPECT_EQ(runs("0 0 31 * *", "2026-04-01 00:00", 3),
            (V{"2026-05-31 00:00:00 Sun", "2026-07-31 00:00:00 Fri", "2026-08-31 00:00:00 Mon"}));
  EXPECT_EQ(runs("0 0 30 * *", "2026-01-31 00:00"), V{"2026-03-30 00:00:00 Mon"});
  EXPECT_EQ(runs("30 23 28-31 2 *", "2027-02-27 00:00", 2),
            (V{"2027-02-28 23:30:00 Sun", "2028-02-28 23:30:00 Mon"}));
  EXPECT_EQ(runs("0 12 31 12 *", "2026-12-31 12:00"), V{"2027-12-31 12:00:00 Fri"});
}

TEST(Schedule, YearRollover) {
  EXPECT_EQ(runs("* * * * *", "2026-12-31 23:59"), V{"2027-01-01 00:00:00 Fri"});
  EXPECT_EQ(runs("59 23 31 12 *", "2026-12-31 23:59"), V{"2027-12-31 23:59:00 Fri"});
  EXPECT_EQ(runs("0 0 * 1 mon", "2026-12-31 23:00"), V{"2027-01-04 00:00:00 Mon"});
  EXPECT_EQ(runs("@hourly", "2026-12-31 23:30"), V{"2027-01-01 00:00:00 Fri"});
}

TEST(Schedule, Every) {
  Schedule s = parse_ok("every:1h30m");
  EXPECT_EQ(s.kind, Schedule::Kind::kEvery);
  EXPECT_EQ(s.every_ns, 90 * kMin);
  EXPECT_EQ(parse_ok("every:90s").every_ns, 90 * kSec);
  EXPECT_EQ(parse_ok("every:2d").every_ns, 2 * 86400 * kSec);
  EXPECT_EQ(parse_ok("every:1m").every_ns, kMin);
  EXPECT_EQ(parse_ok("every:366d").every_ns, kMaxEveryIntervalNs);
  int64_t t = at("2026-11-26 12:00:07");
  Schedule ten = parse_ok("every:10m");
  EXPECT_EQ(*next_slot(ten, t), t + 10 * kMin);  // no anchor: one interval from now
  // With an anchor, slots stay on its grid whatever time it is.
  int64_t anchor = at("2026-11-26 12:00:00");
  EXPECT_EQ(*next_slot(ten, anchor, anchor), anchor + 10 * kMin);
  EXPECT_EQ(*next_slot(ten, anchor + 10 * kMin, anchor), anchor + 20 * kMin);
  EXPECT_EQ(*next_slot(ten, anchor + 73 * kMin, anchor), anchor + 80 * kMin);
  EXPECT_EQ(*next_slot(ten, anchor - 25 * kMin, anchor), anchor - 20 * kMin);
}

TEST(Schedule, OffNeverRuns) {
  Schedule s = parse_ok("off");
  EXPECT_TRUE(s.off());
  EXPECT_FALSE(next_slot(s, at("2026-11-26 12:00")).has_value());
  EXPECT_EQ(max_jitter_ns(s, at("2026-11-26 12:00")), 0);
}

TEST(Schedule, JitterIsATenthOfTheGapAtMostFiveMinutes) {
  int64_t slot = at("2026-11-26 12:00");
  EXPECT_EQ(max_jitter_ns(parse_ok("every:10m"), slot), kMin);
  EXPECT_EQ(max_jitter_ns(parse_ok("*/15 * * * *"), slot), 90 * kSec);
  EXPECT_EQ(max_jitter_ns(parse_ok("@hourly"), slot), 5 * kMin);
  EXPECT_EQ(max_jitter_ns(parse_ok("@daily"), slot), 5 * kMin);
  EXPECT_EQ(max_jitter_ns(parse_ok("every:1m"), slot), 6 * kSec);
  // Uneven gaps: 12:00 → 12:05 is the short one.
  EXPECT_EQ(max_jitter_ns(parse_ok("0,5 * * * *"), slot), 30 * kSec);
}

TEST(Schedule, ErrorsNameTheFieldAndValue) {
  expect_error("61 * * * *", "minute field '61' is out of range 0-59");
  expect_error("* 24 * * *", "hour field '24' is out of range 0-23");
  expect_error("* * 0 * *", "day-of-month field '0' is out of range 1-31");
  expect_error("* * 32 * *", "day-of-month field '32' is out of range 1-31");
  expect_error("* * * 13 *", "month field '13' is out of range 1-12");
  expect_error("* * * * 8", "day-of-week field '8' is out of range 0-7");
  expect_error("* * * foo *", "month field 'foo' has unknown name 'foo' (valid: jan, feb");
  expect_error("* * * * monday", "day-of-week field 'monday' has unknown name 'monday' (valid: sun, mon");
  expect_error("x * * * *", "minute field 'x' has 'x', which is not a number");
  expect_error("*/0 * * * *", "minute field '*/0' has step '0'");
  expect_error("*/x * * * *", "minute field '*/x' has step 'x'");
  expect_error("30-10 * * * *", "minute field '30-10' has range '30-10' whose start is after its end");
  expect_error("1,,2 * * * *", "minute field '1,,2' has an empty list item");
  expect_error("1, * * * *", "minute field '1,' has an empty list item");
  expect_error("-5 * * * *", "minute field '-5' has an empty value");
  expect_error("* * * *", "'* * * *' has 4 fields; a cron schedule has 5");
  expect_error("* * * * * *", "has 6 fields");
  expect_error("0 0 30 2 *", "never runs: day-of-month field '30' names no day that month field '2' has");
  expect_error("0 0 31 4,6,9,11 *", "never runs");
  expect_error("@fortnightly", "unknown schedule '@fortnightly'");
  expect_error("", "schedule is empty");
  expect_error("   ", "schedule is empty");
  expect_error("every:30s", "duration '30s' is shorter than the minimum of 1m");
  expect_error("every:10x", "duration '10x' has unknown unit 'x'");
  expect_error("every:10", "needs a unit (s, m, h or d) after 10");
  expect_error("every:", "duration '' is empty");
  expect_error("every:h", "needs a number before each unit");
  expect_error("every:367d", "is longer than 366d");
  expect_error("every:99999999999999999d", "is longer than 366d");
  expect_error("every:99999999999999999999d", "is longer than 366d");
  expect_error("every:9999999999h", "is longer than 366d");
}

// Brute force with the C library: day by day, then minute by minute.
std::optional<int64_t> brute_next(const std::string& text, int64_t after_ns) {
  Schedule s = parse_ok(text);
  time_t t = static_cast<time_t>(after_ns / kSec);
  t = t - t % 60 + 60;
  for (int day = 0; day < 366 * 12; ++day) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    bool dom = s.days >> tm.tm_mday & 1, dow = s.weekdays >> tm.tm_wday & 1;
    bool day_ok = (s.months >> (tm.tm_mon + 1) & 1) &&
                  ((s.days_star || s.weekdays_star) ? (dom && dow) : (dom || dow));
    if (day_ok) {
      for (time_t m = t; ; m += 60) {
        std::tm mt{};
        gmtime_r(&m, &mt);
        if (mt.tm_mday != tm.tm_mday) break;
        if ((s.hours >> mt.tm_hour & 1) && (s.minutes >> mt.tm_min & 1)) return static_cast<int64_t>(m) * kSec;
      }
    }
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_mday += 1;
    t = ::timegm(&tm);
  }
  return std::nullopt;
}

TEST(Schedule, AgreesWithABruteForceSearch) {
  std::mt19937_64 rng(20261126);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto field = [&](int lo, int hi) -> std::string {
    switch (pick(0, 5)) {
      case 0: return "*";
      case 1: return "*/" + std::to_string(pick(1, std::max(1, (hi - lo) / 2)));
      case 2: return std::to_string(pick(lo, hi));
      case 3: {
        int a = pick(lo, hi), b = pick(a, hi);
        return std::to_string(a) + "-" + std::to_string(b);
      }
      case 4: return std::to_string(pick(lo, hi)) + "," + std::to_string(pick(lo, hi));
      default: {
        int a = pick(lo, hi);
        return std::to_string(a) + "-" + std::to_string(pick(a, hi)) + "/" + std::to_string(pick(1, 5));
      }
    }
  };
  int checked = 0;
  for (int i = 0; i < 400; ++i) {
    std::string text = field(0, 59) + " " + field(0, 23) + " " + field(1, 31) + " " + field(1, 12) + " " + field(0, 7);
    auto s = parse_schedule(text);
    if (!s.is_ok()) {
      EXPECT_NE(s.status().message().find("never runs"), std::string::npos) << text << ": " << s.status().message();
      continue;
    }
    // From random instants between 1990 and 2110 (across 2000 and 2100).
    int64_t from = (int64_t{631152000} + static_cast<int64_t>(rng() % 3786912000ull)) * kSec +
                   static_cast<int64_t>(rng() % kSec);
    auto want = brute_next(text, from);
    auto got = next_slot(*s, from);
    ASSERT_EQ(got.has_value(), want.has_value()) << text << " from " << show(from);
    if (want) {
      EXPECT_EQ(show(*got), show(*want)) << text << " from " << show(from);
      ++checked;
    }
  }
  EXPECT_GT(checked, 300);
}

TEST(KeepPolicy, ParsesEveryRuleInAnyOrder) {
  auto p = parse_keep_policy("weekly:4, last:24,daily:7,HOURLY:48,monthly:12,yearly:3");
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_EQ(p->keep_last, 24);
  EXPECT_EQ(p->keep_hourly, 48);
  EXPECT_EQ(p->keep_daily, 7);
  EXPECT_EQ(p->keep_weekly, 4);
  EXPECT_EQ(p->keep_monthly, 12);
  EXPECT_EQ(p->keep_yearly, 3);
  EXPECT_EQ(format_keep_policy(*p), "last:24,hourly:48,daily:7,weekly:4,monthly:12,yearly:3");
  auto one = parse_keep_policy("daily:7");
  ASSERT_TRUE(one.is_ok());
  EXPECT_EQ(format_keep_policy(*one), "daily:7");
  EXPECT_EQ(one->keep_last, 0);
  EXPECT_FALSE(one->empty());
  EXPECT_EQ(format_keep_policy(ForgetPolicy{}), "");
}

TEST(KeepPolicy, ErrorsNameTheRule) {
  auto err = [](const std::string& text, const std::string& fragment) {
    auto p = parse_keep_policy(text);
    ASSERT_FALSE(p.is_ok()) << text;
    EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
    EXPECT_NE(p.status().message().find(fragment), std::string::npos)
        << text << ": expected '" << fragment << "' in " << p.status().message();
  };
  err("", "keep policy is empty");
  err("daily", "keep rule 'daily' is not RULE:COUNT");
  err("daily:7,", "keep rule '' is not RULE:COUNT");
  err("fortnightly:2", "unknown rule 'fortnightly'; the rules are last, hourly, daily, weekly, monthly, yearly");
  err("daily:0", "count '0' is not a number between 1 and 1000000");
  err("daily:-1", "count '-1' is not");
  err("daily:x", "count 'x' is not");
  err("daily:", "count '' is not");
  err("daily:2000000", "count '2000000' is not");
  err("daily:7,daily:3", "keep rule 'daily' is given twice");
}

TEST(FormatUtc, ShortForm) {
  EXPECT_EQ(format_utc_short(0), "-");
  EXPECT_EQ(format_utc_short(at("2028-02-29 07:08:09")), "2028-02-29 07:08:09 UTC");
}

}  // namespace
}  // namespace stowage
