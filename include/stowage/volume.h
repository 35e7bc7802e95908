// Volumes as the daemon sees them: names, creation options and the persisted
// record (options, creation time, the set of mount IDs Docker holds).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "stowage/status.h"

namespace stowage {

// Longest volume name we accept. Names become directory names, so they must
// stay well below NAME_MAX (255) with room for our temp/trash prefixes.
inline constexpr size_t kMaxVolumeNameLength = 128;

// OK if `name` follows Docker's rule `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, is at most
// kMaxVolumeNameLength bytes, and is not "." or ".."-like; otherwise
// kInvalidArgument saying exactly why.
[[nodiscard]] Status validate_volume_name(std::string_view name);

// What `docker volume create -o key=value` may set. Every field is validated by
// parse_volume_options(); unknown keys are refused.
enum class Quiesce { kNone, kPause };

struct VolumeOptions {
  std::optional<uint32_t> uid;   // owner of the volume root
  std::optional<uint32_t> gid;   // group of the volume root
  std::optional<uint32_t> mode;  // permission bits of the volume root (<= 07777)
  // "from-snapshot=<volume>@<snapshot>": the new volume starts as a copy of it.
  std::string from_volume, from_snapshot;
  // "quiesce=pause": containers using the volume are paused during a snapshot.
  Quiesce quiesce = Quiesce::kNone;
  // "takeover=force": take the volume's lease at Create (docs/MIGRATION.md).
  bool takeover = false;
  // "backup=SCHEDULE" and "keep=POLICY" (plugin/schedule.h), in canonical
  // form; empty when not given. backup "off" means no backups at all.
  std::string backup, keep;

  // The options as Docker passed them (normalised), for Get/inspect.
  std::map<std::string, std::string> raw;

  // The parsed values; a new field must be added here.
  auto parsed() const { return std::tie(uid, gid, mode, from_volume, from_snapshot, quiesce, takeover, backup, keep); }
  // Equal when the parsed values are: mode=0750 and mode=750 are the same
  // options (Docker retries a Create; a user may spell it either way). `raw`
  // is not compared.
  bool operator==(const VolumeOptions& o) const { return parsed() == o.parsed(); }
};

struct OptionDoc {
  std::string_view key;
  std::string_view help;
};
// Every option `Create` accepts, for error messages, --help and docs.
const std::vector<OptionDoc>& volume_option_docs();

// Parses Docker's `Opts` map. kInvalidArgument names the offending key and, for
// an unknown key, lists the valid ones.
[[nodiscard]] Result<VolumeOptions> parse_volume_options(const std::map<std::string, std::string>& opts);

// The persisted state of one volume.
struct VolumeRecord {
  std::string name;
  std::string driver_kind = "dir";
  VolumeOptions options;
  int64_t created_unix_ns = 0;
  std::set<std::string> mount_ids;  // Docker mount IDs currently holding the volume
  std::string boot_id;              // kernel boot the mount IDs belong to

  bool operator==(const VolumeRecord&) const = default;
};

// JSON round trip of a record. Parsing validates name and options again, so a
// hand-edited or damaged file is refused with kCorruption naming the field.
std::string volume_record_to_json(const VolumeRecord& rec);
[[nodiscard]] Result<VolumeRecord> volume_record_from_json(std::string_view json);

// RFC 3339 UTC with nanoseconds, as Docker shows `CreatedAt`.
std::string format_rfc3339(int64_t unix_ns);

}  // namespace stowage
