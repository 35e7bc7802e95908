#include "stowage/volume.h"

#include <charconv>
#include <ctime>

#include <nlohmann/json.hpp>

#include "schedule.h"
#include "stowage/snapshot_manifest.h"

namespace stowage {

Status validate_volume_name(std::string_view name) {
  if (name.empty()) return Status::invalid_argument("volume name is empty");
  if (name.size() > kMaxVolumeNameLength) {
    return Status::invalid_argument("volume name is " + std::to_string(name.size()) +
                                    " bytes long; the limit is " + std::to_string(kMaxVolumeNameLength));
  }
  auto alnum = [](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(static_cast<unsigned char>(name[0]))) {
    return Status::invalid_argument("volume name must start with a letter or digit, matching [a-zA-Z0-9][a-zA-Z0-9_.-]*");
  }
  for (size_t i = 0; i < name.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (alnum(c) || c == '_' || c == '.' || c == '-') continue;
    std::string shown = (c >= 0x20 && c < 0x7f) ? std::string("'") + static_cast<char>(c) + "'"
                                                 : "byte 0x" + [&] {
                                                     char b[3];
                                                     std::snprintf(b, sizeof b, "%02x", c);
                                                     return std::string(b);
                                                   }();
    return Status::invalid_argument("volume name contains " + shown + " at position " + std::to_string(i) +
                                    "; allowed are letters, digits, '_', '.' and '-'");
  }
  return Status::ok();
}

namespace {

const std::vector<OptionDoc> kOptionDocs = {
    {"uid", "numeric user ID that owns the volume root (default 0)"},
    {"gid", "numeric group ID of the volume root (default 0)"},
    {"mode", "octal permission bits of the volume root, e.g. 0750 (default 0755)"},
    {"from-snapshot", "VOLUME@SNAPSHOT: start as a copy of that snapshot (reflinked where possible)"},
    {"quiesce", "none or pause: pause the containers using the volume while it is snapshotted (default none)"},
    {"takeover", "force: take the volume's lease at Create even while another host holds it (that host is fenced; "
                 "docs/MIGRATION.md)"},
    {"backup", "backup schedule (UTC): @hourly, @daily, @weekly, @monthly, @yearly, a cron expression like "
               "\"*/15 * * * *\", every:DURATION (e.g. every:10m, at least 1m) or off (no backups at all); "
               "needs the daemon's repository (docs/BACKUP.md)"},
    {"keep", "backups to keep after each scheduled one, e.g. last:24,daily:7,weekly:4 (rules last, hourly, daily, "
             "weekly, monthly, yearly); needs backup="},
};

std::string valid_keys() {
  std::string s;
  for (const auto& d : kOptionDocs) {
    if (!s.empty()) s += ", ";
    s += d.key;
  }
  return s;
}

Result<uint32_t> parse_id(std::string_view key, std::string_view v) {
  uint64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out, 10);
  // 4294967295 is (uid_t)-1, which chown() reads as "leave unchanged".
  if (v.empty() || ec != std::errc() || p != v.data() + v.size() || out >= 4294967295ull) {
    return Status::invalid_argument("option '" + std::string(key) + "': '" + std::string(v) +
                                    "' is not a numeric ID between 0 and 4294967294");
  }
  return static_cast<uint32_t>(out);
}

Result<uint32_t> parse_mode(std::string_view v) {
  uint32_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out, 8);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size() || out > 07777) {
    return Status::invalid_argument("option 'mode': '" + std::string(v) +
                                    "' is not an octal permission mode between 0 and 7777, e.g. 0750");
  }
  return out;
}

}  // namespace

const std::vector<OptionDoc>& volume_option_docs() { return kOptionDocs; }

Result<VolumeOptions> parse_volume_options(const std::map<std::string, std::string>& opts) {
  VolumeOptions out;
  for (const auto& [key, value] : opts) {
    if (key == "uid") {
      STOWAGE_ASSIGN_OR_RETURN(out.uid, parse_id(key, value));
    } else if (key == "gid") {
      STOWAGE_ASSIGN_OR_RETURN(out.gid, parse_id(key, value));
    } else if (key == "mode") {
      STOWAGE_ASSIGN_OR_RETURN(out.mode, parse_mode(value));
    } else if (key == "from-snapshot") {
      auto at = value.find('@');
      if (at == std::string::npos) {
        return Status::invalid_argument("option 'from-snapshot': '" + value + "' is not VOLUME@SNAPSHOT");
      }
      out.from_volume = value.substr(0, at);
      out.from_snapshot = value.substr(at + 1);
      if (Status st = validate_volume_name(out.from_volume); !st.is_ok()) {
        return Status::invalid_argument("option 'from-snapshot': " + st.message());
      }
      if (Status st = validate_volume_name(out.from_snapshot); !st.is_ok()) {
        return Status::invalid_argument("option 'from-snapshot': snapshot " + st.message().substr(7));
      }
    } else if (key == "quiesce") {
      if (value == "none") {
        out.quiesce = Quiesce::kNone;
      } else if (value == "pause") {
        out.quiesce = Quiesce::kPause;
      } else {
        return Status::invalid_argument("option 'quiesce': '" + value + "' is not one of: none, pause");
      }
    } else if (key == "takeover") {
      if (value != "force") return Status::invalid_argument("option 'takeover': '" + value + "' is not: force");
      out.takeover = true;
    } else if (key == "backup") {
      auto schedule = parse_schedule(value);
      if (!schedule.is_ok()) return Status::invalid_argument("option 'backup': " + schedule.status().message());
      out.backup = schedule->text;
      out.raw[key] = out.backup;
      continue;
    } else if (key == "keep") {
      auto keep = parse_keep_policy(value);
      if (!keep.is_ok()) return Status::invalid_argument("option 'keep': " + keep.status().message());
      out.keep = format_keep_policy(*keep);
      out.raw[key] = out.keep;
      continue;
    } else {
      return Status::invalid_argument("unknown option '" + key + "'; valid options are: " + valid_keys());
    }
    out.raw[key] = value;
  }
  if (!out.keep.empty() && (out.backup.empty() || out.backup == "off")) {
    return Status::invalid_argument("option 'keep' applies to scheduled backups; add a schedule with -o backup=… "
                                    "(e.g. backup=@daily)");
  }
  return out;
}

std::string format_rfc3339(int64_t unix_ns) { return format_rfc3339_ns(unix_ns); }

std::string volume_record_to_json(const VolumeRecord& rec) {
  nlohmann::ordered_json j;
  j["format"] = 1;
  j["name"] = rec.name;
  j["kind"] = rec.driver_kind;
  j["created_unix_ns"] = rec.created_unix_ns;
  j["options"] = rec.options.raw;
  j["mount_ids"] = rec.mount_ids;
  j["boot_id"] = rec.boot_id;
  return j.dump(2) + "\n";
}

Result<VolumeRecord> volume_record_from_json(std::string_view json) {
  try {
    auto j = nlohmann::json::parse(json);
    if (!j.is_object()) return Status::corruption("volume record is not a JSON object");
    if (j.value("format", 0) != 1) return Status::corruption("volume record has unknown format " + j.value("format", nlohmann::json()).dump());
    VolumeRecord rec;
    rec.name = j.at("name").get<std::string>();
    if (Status st = validate_volume_name(rec.name); !st.is_ok()) return Status::corruption("volume record: " + st.message());
    rec.driver_kind = j.at("kind").get<std::string>();
    rec.created_unix_ns = j.at("created_unix_ns").get<int64_t>();
    auto raw = j.at("options").get<std::map<std::string, std::string>>();
    auto opts = parse_volume_options(raw);
    if (!opts.is_ok()) return Status::corruption("volume record: " + opts.status().message());
    rec.options = std::move(opts).value();
    rec.mount_ids = j.at("mount_ids").get<std::set<std::string>>();
    rec.boot_id = j.value("boot_id", "");
    return rec;
  } catch (const nlohmann::json::exception& e) {
    return Status::corruption(std::string("volume record: ") + e.what());
  }
}

}  // namespace stowage
