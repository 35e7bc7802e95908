#include "schedule.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <vector>

namespace stowage {

namespace {

constexpr int64_t kNsPerSec = 1'000'000'000;

// ---- calendar (proleptic Gregorian, UTC), after H. Hinnant's date algorithms

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

struct Civil {
  int64_t y;
  unsigned m, d;
};

Civil civil_from_days(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<int64_t>(yoe) + era * 400 + (m <= 2), m, d};
}

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// Sunday = 0; 1970-01-01 was a Thursday.
unsigned weekday_from_days(int64_t z) { return static_cast<unsigned>(((z % 7) + 11) % 7); }

// ---- cron fields

struct FieldSpec {
  std::string_view name;
  int lo, hi;
  const std::array<std::string_view, 12>* names;  // value lo+i is names[i]
};

constexpr std::array<std::string_view, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                          "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 12> kDayNames = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", "", "", "", "",
                                                        ""};

const FieldSpec kFields[5] = {{"minute", 0, 59, nullptr},
                              {"hour", 0, 23, nullptr},
                              {"day-of-month", 1, 31, nullptr},
                              {"month", 1, 12, &kMonthNames},
                              {"day-of-week", 0, 7, &kDayNames}};

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Status field_error(const FieldSpec& f, std::string_view field, const std::string& why) {
  return Status::invalid_argument(std::string(f.name) + " field '" + std::string(field) + "' " + why);
}

// One value: a number or (for month and day-of-week) a three-letter name.
Result<int> parse_value(const FieldSpec& f, std::string_view field, std::string_view v) {
  if (v.empty()) return field_error(f, field, "has an empty value");
  if (f.names && std::isalpha(static_cast<unsigned char>(v[0]))) {
    std::string l = lower(v);
    for (size_t i = 0; i < f.names->size(); ++i) {
      if (!(*f.names)[i].empty() && (*f.names)[i] == l) return f.lo + static_cast<int>(i);
    }
    std::string valid;
    for (const auto& n : *f.names) {
      if (!n.empty()) valid += (valid.empty() ? "" : ", ") + std::string(n);
    }
    return field_error(f, field, "has unknown name '" + std::string(v) + "' (valid: " + valid + ")");
  }
  int out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out, 10);
  if (ec != std::errc() || p != v.data() + v.size()) {
    return field_error(f, field, "has '" + std::string(v) + "', which is not a number");
  }
  if (out < f.lo || out > f.hi) {
    return field_error(f, field, "is out of range " + std::to_string(f.lo) + "-" + std::to_string(f.hi));
  }
  return out;
}

// A whole field ("*/15", "1-5,10", "mon-fri"); sets bits lo..hi in *bits.
Status parse_field(const FieldSpec& f, std::string_view field, uint64_t* bits, bool* star) {
  *bits = 0;
  *star = !field.empty() && field[0] == '*';
  if (field.empty()) return field_error(f, field, "is empty");
  size_t pos = 0;
  while (pos <= field.size()) {
    size_t comma = field.find(',', pos);
    std::string_view item = field.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    if (item.empty()) return field_error(f, field, "has an empty list item");
    int step = 1;
    std::string_view range = item;
    bool has_step = false;
    if (size_t slash = item.find('/'); slash != std::string_view::npos) {
      has_step = true;
      range = item.substr(0, slash);
      std::string_view s = item.substr(slash + 1);
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), step, 10);
      if (s.empty() || ec != std::errc() || p != s.data() + s.size() || step < 1 || step > f.hi) {
        return field_error(f, field, "has step '" + std::string(s) + "', which is not a number between 1 and " +
                                         std::to_string(f.hi));
      }
    }
    int lo = 0, hi = 0;
    if (range == "*") {
      lo = f.lo;
      hi = f.hi == 7 ? 6 : f.hi;  // day-of-week: 7 is Sunday again
    } else if (size_t dash = range.find('-'); dash != std::string_view::npos) {
      STOWAGE_ASSIGN_OR_RETURN(lo, parse_value(f, field, range.substr(0, dash)));
      STOWAGE_ASSIGN_OR_RETURN(hi, parse_value(f, field, range.substr(dash + 1)));
      if (lo > hi) {
        return field_error(f, field, "has range '" + std::string(range) + "' whose start is after its end");
      }
    } else {
      STOWAGE_ASSIGN_OR_RETURN(lo, parse_value(f, field, range));
      // "5/20" means 5-max/20, as in cronie; a bare "5" is just 5.
      hi = has_step ? (f.hi == 7 ? 6 : f.hi) : lo;
    }
    for (int v = lo; v <= hi; v += step) *bits |= uint64_t{1} << (v == 7 && f.hi == 7 ? 0 : v);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return Status::ok();
}

unsigned max_days_in_month(unsigned m) {  // February counts its leap day
  static constexpr unsigned kDays[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return kDays[m];
}

Result<Schedule> parse_cron(std::string_view text, std::string_view expr) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < expr.size()) {
    while (i < expr.size() && (expr[i] == ' ' || expr[i] == '\t')) ++i;
    size_t start = i;
    while (i < expr.size() && expr[i] != ' ' && expr[i] != '\t') ++i;
    if (i > start) fields.push_back(expr.substr(start, i - start));
  }
  if (fields.size() != 5) {
    return Status::invalid_argument("'" + std::string(text) + "' has " + std::to_string(fields.size()) +
                                    " fields; a cron schedule has 5 (minute hour day-of-month month day-of-week), "
                                    "or use @hourly, @daily, @weekly, @monthly, @yearly (the @ may be left out), every:DURATION or off");
  }
  Schedule s;
  s.kind = Schedule::Kind::kCron;
  s.text = std::string(text);
  uint64_t bits[5];
  bool star[5];
  for (int f = 0; f < 5; ++f) STOWAGE_RETURN_IF_ERROR(parse_field(kFields[f], fields[f], &bits[f], &star[f]));
  s.minutes = bits[0];
  s.hours = static_cast<uint32_t>(bits[1]);
  s.days = static_cast<uint32_t>(bits[2]);
  s.months = static_cast<uint32_t>(bits[3]);
  s.weekdays = static_cast<uint32_t>(bits[4]);
  s.days_star = star[2];
  s.weekdays_star = star[4];
  if (s.days_star || s.weekdays_star) {
    // Both day fields must match, so the day of month must exist in some
    // chosen month (each real date falls on every weekday in some year).
    int first_day = 1;
    while (!(s.days >> first_day & 1)) ++first_day;
    bool possible = false;
    for (unsigned m = 1; m <= 12; ++m) {
      if ((s.months >> m & 1) && static_cast<unsigned>(first_day) <= max_days_in_month(m)) possible = true;
    }
    if (!possible) {
      return Status::invalid_argument("'" + std::string(text) + "' never runs: day-of-month field '" +
                                      std::string(fields[2]) + "' names no day that month field '" +
                                      std::string(fields[3]) + "' has");
    }
  }
  return s;
}

// "90s", "10m", "1h30m", "2d".
Result<int64_t> parse_duration(std::string_view text, std::string_view d) {
  auto bad = [&](const std::string& why) {
    return Status::invalid_argument("'" + std::string(text) + "': duration '" + std::string(d) + "' " + why +
                                    " (write e.g. every:90s, every:10m, every:1h30m, every:2d)");
  };
  if (d.empty()) return bad("is empty");
  int64_t total_s = 0;
  size_t i = 0;
  while (i < d.size()) {
    int64_t n = 0;
    auto [p, ec] = std::from_chars(d.data() + i, d.data() + d.size(), n, 10);
    if (ec == std::errc::result_out_of_range) return bad("is longer than 366d");
    if (ec != std::errc() || p == d.data() + i) return bad("needs a number before each unit");
    i = static_cast<size_t>(p - d.data());
    if (i == d.size()) return bad("needs a unit (s, m, h or d) after " + std::to_string(n));
    int64_t unit = 0;
    switch (d[i]) {
      case 's': unit = 1; break;
      case 'm': unit = 60; break;
      case 'h': unit = 3600; break;
      case 'd': unit = 86400; break;
      default: return bad(std::string("has unknown unit '") + d[i] + "' (use s, m, h or d)");
    }
    ++i;
    if (n > kMaxEveryIntervalNs / kNsPerSec / unit) return bad("is longer than 366d");
    total_s += n * unit;
    if (total_s > kMaxEveryIntervalNs / kNsPerSec) return bad("is longer than 366d");
  }
  if (total_s * kNsPerSec < kMinEveryIntervalNs) return bad("is shorter than the minimum of 1m");
  return total_s * kNsPerSec;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool cron_day_matches(const Schedule& s, unsigned day, unsigned weekday) {
  bool dom = s.days >> day & 1;
  bool dow = s.weekdays >> weekday & 1;
  return (s.days_star || s.weekdays_star) ? (dom && dow) : (dom || dow);
}

std::optional<int64_t> next_cron(const Schedule& s, int64_t after_ns) {
  int64_t t = (floor_div(after_ns, kNsPerSec * 60) + 1) * 60;  // seconds, the next whole minute
  // parse_cron() refused schedules that never run; every date recurs on each
  // weekday within 28 years (40 across a skipped leap year like 2100).
  const int64_t limit = t + int64_t{50} * 366 * 86400;
  while (t < limit) {
    const int64_t days = floor_div(t, 86400);
    const int64_t sod = t - days * 86400;
    const Civil c = civil_from_days(days);
    if (!(s.months >> c.m & 1)) {
      t = days_from_civil(c.m == 12 ? c.y + 1 : c.y, c.m == 12 ? 1 : c.m + 1, 1) * 86400;
      continue;
    }
    if (!cron_day_matches(s, c.d, weekday_from_days(days))) {
      t = (days + 1) * 86400;
      continue;
    }
    const int64_t h = sod / 3600;
    if (!(s.hours >> h & 1)) {
      t = days * 86400 + (h + 1) * 3600;
      continue;
    }
    const int64_t m = (sod % 3600) / 60;
    if (!(s.minutes >> m & 1)) {
      t = days * 86400 + h * 3600 + (m + 1) * 60;
      continue;
    }
    return t * kNsPerSec;
  }
  return std::nullopt;
}

struct Macro {
  std::string_view name, cron;
};
constexpr Macro kMacros[] = {{"@hourly", "0 * * * *"},  {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
                             {"@weekly", "0 0 * * 0"},  {"@monthly", "0 0 1 * *"},  {"@yearly", "0 0 1 1 *"},
                             {"@annually", "0 0 1 1 *"}};

}  // namespace

Result<Schedule> parse_schedule(std::string_view raw) {
  std::string_view text = trim(raw);
  if (text.empty()) {
    return Status::invalid_argument("schedule is empty; use @hourly, @daily, @weekly, @monthly, @yearly, a cron "
                                    "expression like \"*/15 * * * *\", every:DURATION or off");
  }
  if (text == "off") {
    Schedule s;
    s.text = "off";
    return s;
  }
  // "daily" is read as "@daily": it is what people write, and a single
  // word can be nothing else (a cron expression has five fields).
  const bool bare_macro = std::ranges::any_of(kMacros, [l = lower(text)](const Macro& m) { return l == m.name.substr(1); });
  if (text[0] == '@' || bare_macro) {
    std::string l = lower(text);
    if (l[0] != '@') l.insert(0, 1, '@');
    for (const auto& m : kMacros) {
      if (l == m.name) {
        auto s = parse_cron(text, m.cron);
        if (s.is_ok()) s->text = l;
        return s;
      }
    }
    return Status::invalid_argument("unknown schedule '" + std::string(text) +
                                    "'; the @ forms are @hourly, @daily, @midnight, @weekly, @monthly, @yearly, "
                                    "@annually");
  }
  if (text.starts_with("every:")) {
    Schedule s;
    s.kind = Schedule::Kind::kEvery;
    s.text = std::string(text);
    STOWAGE_ASSIGN_OR_RETURN(s.every_ns, parse_duration(text, text.substr(6)));
    return s;
  }
  return parse_cron(text, text);
}

std::optional<int64_t> next_slot(const Schedule& s, int64_t after_ns, std::optional<int64_t> anchor_ns) {
  switch (s.kind) {
    case Schedule::Kind::kOff:
      return std::nullopt;
    case Schedule::Kind::kEvery:
      if (!anchor_ns) return after_ns + s.every_ns;
      return *anchor_ns + (floor_div(after_ns - *anchor_ns, s.every_ns) + 1) * s.every_ns;
    case Schedule::Kind::kCron:
      return next_cron(s, after_ns);
  }
  return std::nullopt;
}

int64_t max_jitter_ns(const Schedule& s, int64_t slot_ns) {
  auto after = next_slot(s, slot_ns, slot_ns);
  if (!after) return 0;
  return std::min((*after - slot_ns) / 10, kMaxJitterNs);
}

namespace {
struct KeepRule {
  std::string_view name;
  int ForgetPolicy::*field;
};
constexpr KeepRule kKeepRules[] = {{"last", &ForgetPolicy::keep_last},       {"hourly", &ForgetPolicy::keep_hourly},
                                   {"daily", &ForgetPolicy::keep_daily},     {"weekly", &ForgetPolicy::keep_weekly},
                                   {"monthly", &ForgetPolicy::keep_monthly}, {"yearly", &ForgetPolicy::keep_yearly}};
constexpr std::string_view kKeepExample = " (write e.g. keep=last:24,daily:7,weekly:4)";

std::string keep_rule_names() {
  std::string s;
  for (const auto& r : kKeepRules) s += (s.empty() ? "" : ", ") + std::string(r.name);
  return s;
}
}  // namespace

Result<ForgetPolicy> parse_keep_policy(std::string_view raw) {
  std::string_view text = trim(raw);
  if (text.empty()) return Status::invalid_argument(std::string("keep policy is empty").append(kKeepExample));
  ForgetPolicy p;
  size_t pos = 0;
  while (true) {
    size_t comma = text.find(',', pos);
    std::string_view item = trim(text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos));
    size_t colon = item.find(':');
    if (item.empty() || colon == std::string_view::npos) {
      return Status::invalid_argument("keep rule '" + std::string(item) + "' is not RULE:COUNT" +
                                      std::string(kKeepExample));
    }
    std::string name = lower(trim(item.substr(0, colon)));
    std::string_view count = trim(item.substr(colon + 1));
    const KeepRule* rule = nullptr;
    for (const auto& r : kKeepRules) {
      if (r.name == name) rule = &r;
    }
    if (!rule) {
      return Status::invalid_argument("keep rule '" + std::string(item) + "': unknown rule '" + name +
                                      "'; the rules are " + keep_rule_names());
    }
    int n = 0;
    auto [p2, ec] = std::from_chars(count.data(), count.data() + count.size(), n, 10);
    if (count.empty() || ec != std::errc() || p2 != count.data() + count.size() || n < 1 || n > 1'000'000) {
      return Status::invalid_argument("keep rule '" + std::string(item) + "': count '" + std::string(count) +
                                      "' is not a number between 1 and 1000000");
    }
    if (p.*(rule->field) != 0) {
      return Status::invalid_argument("keep rule '" + name + "' is given twice");
    }
    p.*(rule->field) = n;
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return p;
}

std::string format_keep_policy(const ForgetPolicy& p) {
  std::string s;
  for (const auto& r : kKeepRules) {
    if (p.*(r.field) > 0) s += (s.empty() ? "" : ",") + std::string(r.name) + ":" + std::to_string(p.*(r.field));
  }
  return s;
}

std::string format_utc_short(int64_t unix_ns) {
  if (unix_ns == 0) return "-";
  const int64_t secs = floor_div(unix_ns, kNsPerSec);
  const int64_t days = floor_div(secs, 86400);
  const int64_t sod = secs - days * 86400;
  const Civil c = civil_from_days(days);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u %02lld:%02lld:%02lld UTC", static_cast<long long>(c.y), c.m, c.d,
                static_cast<long long>(sod / 3600), static_cast<long long>(sod % 3600 / 60),
                static_cast<long long>(sod % 60));
  return buf;
}

}  // namespace stowage
