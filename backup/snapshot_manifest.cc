#include "stowage/snapshot_manifest.h"

#include <cstdio>
#include <ctime>

#include "json_util.h"

namespace stowage {

namespace {

using json_util::Json;
using json_util::id_from_json;
using json_util::ids_to_json;

}  // namespace

bool valid_volume_name(std::string_view name) {
  if (name.empty() || name.size() > 255) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  if (!alnum(name[0])) return false;
  for (char c : name) {
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

std::string format_rfc3339_ns(int64_t time_ns) {
  int64_t secs = time_ns / 1'000'000'000;
  int64_t ns = time_ns % 1'000'000'000;
  if (ns < 0) {
    ns += 1'000'000'000;
    --secs;
  }
  const time_t t = static_cast<time_t>(secs);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(ns));
  return buf;
}

Result<std::string> serialize_snapshot(const SnapshotManifest& s) {
  if (!valid_volume_name(s.volume)) return Status::invalid_argument("snapshot: invalid volume name '" + s.volume + "'");
  Json j;
  j["version"] = s.version;
  j["volume"] = s.volume;
  j["hostname"] = s.hostname;
  j["time_ns"] = s.time_ns;
  j["time"] = format_rfc3339_ns(s.time_ns);
  j["parent"] = s.parent ? Json(s.parent->hex()) : Json(nullptr);
  j["tree"] = ids_to_json(s.tree);
  if (s.root) {
    if (s.root->mode > 07777) return Status::invalid_argument("snapshot: root mode has bits outside 07777");
    if (std::string p = json_util::xattrs_problem(s.root->xattrs); !p.empty()) {
      return Status::invalid_argument("snapshot: root: " + p);
    }
    Json r = {{"mode", s.root->mode}, {"uid", s.root->uid}, {"gid", s.root->gid}, {"mtime_ns", s.root->mtime_ns}};
    if (!s.root->xattrs.empty()) r["xattrs"] = json_util::xattrs_to_json(s.root->xattrs);
    j["root"] = std::move(r);
  }
  j["tags"] = s.tags;
  j["lease_generation"] = s.lease_generation;
  j["stats"] = {{"files", s.stats.files},         {"dirs", s.stats.dirs},
                {"bytes", s.stats.bytes},         {"new_blobs", s.stats.new_blobs},
                {"new_bytes", s.stats.new_bytes}, {"stored_bytes", s.stats.stored_bytes},
                {"bytes_read", s.stats.bytes_read}, {"bytes_matched", s.stats.bytes_matched}};
  j["program"] = s.program;
  j["source_path"] = s.source_path;
  // Host names, tags and paths are informational; a non-UTF-8 byte in one
  // must not make the snapshot unwritable, so it is replaced (U+FFFD).
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Result<SnapshotManifest> parse_snapshot(std::string_view text) {
  SnapshotManifest s;
  try {
    const auto j = Json::parse(text);
    s.version = j.at("version").get<uint32_t>();
    if (s.version != kSnapshotVersion) {
      return Status::unimplemented("snapshot: version " + std::to_string(s.version) + " (newer Stowage?)");
    }
    s.volume = j.at("volume").get<std::string>();
    s.hostname = j.at("hostname").get<std::string>();
    s.time_ns = j.at("time_ns").get<int64_t>();
    if (!j.at("parent").is_null()) s.parent = id_from_json(j.at("parent"), "parent");
    for (const auto& v : j.at("tree")) s.tree.push_back(id_from_json(v, "tree"));
    if (j.contains("root") && !j.at("root").is_null()) {
      const auto& r = j.at("root");
      RootMeta m;
      m.mode = json_util::get_field<uint32_t>(r, "mode");
      m.uid = json_util::get_field<uint32_t>(r, "uid");
      m.gid = json_util::get_field<uint32_t>(r, "gid");
      m.mtime_ns = json_util::get_field<int64_t>(r, "mtime_ns");
      if (r.contains("xattrs")) m.xattrs = json_util::xattrs_from_json(r.at("xattrs"));
      if (m.mode > 07777) return Status::corruption("snapshot: root mode has bits outside 07777");
      if (std::string p = json_util::xattrs_problem(m.xattrs); !p.empty()) {
        return Status::corruption("snapshot: root: " + p);
      }
      s.root = std::move(m);
    }
    s.tags = j.value("tags", std::vector<std::string>{});
    s.lease_generation = j.value("lease_generation", uint64_t{0});
    if (j.contains("stats")) {
      const auto& st = j.at("stats");
      s.stats.files = st.value("files", uint64_t{0});
      s.stats.dirs = st.value("dirs", uint64_t{0});
      s.stats.bytes = st.value("bytes", uint64_t{0});
      s.stats.new_blobs = st.value("new_blobs", uint64_t{0});
      s.stats.new_bytes = st.value("new_bytes", uint64_t{0});
      s.stats.stored_bytes = st.value("stored_bytes", uint64_t{0});
      s.stats.bytes_read = st.value("bytes_read", uint64_t{0});
      s.stats.bytes_matched = st.value("bytes_matched", uint64_t{0});
    }
    s.program = j.value("program", std::string());
    s.source_path = j.value("source_path", std::string());
  } catch (const std::exception& e) {
    return Status::corruption(std::string("snapshot: ") + e.what());
  }
  if (!valid_volume_name(s.volume)) return Status::corruption("snapshot: invalid volume name");
  return s;
}

std::string lease_prefix(std::string_view volume) { return "leases/" + std::string(volume) + "/"; }

std::string lease_key(std::string_view volume, uint64_t generation) {
  char digits[24];
  std::snprintf(digits, sizeof digits, "%020llu", static_cast<unsigned long long>(generation));
  return lease_prefix(volume) + digits;
}

Result<uint64_t> lease_generation_from_key(std::string_view volume, std::string_view key) {
  const std::string prefix = lease_prefix(volume);
  if (!key.starts_with(prefix) || key.size() != prefix.size() + 20) {
    return Status::invalid_argument("not a lease key of volume " + std::string(volume) + ": " + std::string(key));
  }
  uint64_t g = 0;
  for (char c : key.substr(prefix.size())) {
    if (c < '0' || c > '9') return Status::invalid_argument("not a lease key: " + std::string(key));
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (g > (UINT64_MAX - d) / 10) return Status::invalid_argument("lease generation overflows: " + std::string(key));
    g = g * 10 + d;
  }
  return g;
}

Result<std::string> serialize_lease(const Lease& l) {
  if (!valid_volume_name(l.volume)) return Status::invalid_argument("lease: invalid volume name '" + l.volume + "'");
  if (l.generation == 0) return Status::invalid_argument("lease: generation must be at least 1");
  Json j;
  j["version"] = l.version;
  j["volume"] = l.volume;
  j["generation"] = l.generation;
  j["holder"] = {{"host", l.holder.host}, {"daemon_id", l.holder.daemon_id}, {"pid", l.holder.pid}};
  j["acquired_ns"] = l.acquired_ns;
  j["expires_ns"] = l.expires_ns;
  j["released"] = l.released;
  j["nonce"] = l.nonce;
  j["renewal"] = l.renewal;
  j["ttl_ns"] = l.ttl_ns;
  return j.dump();
}

Result<Lease> parse_lease(std::string_view text) {
  Lease l;
  try {
    const auto j = Json::parse(text);
    l.version = j.at("version").get<uint32_t>();
    if (l.version != kLeaseVersion) {
      return Status::unimplemented("lease: version " + std::to_string(l.version) + " (newer Stowage?)");
    }
    l.volume = j.at("volume").get<std::string>();
    l.generation = j.at("generation").get<uint64_t>();
    const auto& h = j.at("holder");
    l.holder.host = h.at("host").get<std::string>();
    l.holder.daemon_id = h.value("daemon_id", std::string());
    l.holder.pid = h.value("pid", int64_t{0});
    l.acquired_ns = j.at("acquired_ns").get<int64_t>();
    l.expires_ns = j.at("expires_ns").get<int64_t>();
    l.released = j.at("released").get<bool>();
    l.nonce = j.value("nonce", std::string());
    l.renewal = j.value("renewal", uint64_t{0});
    l.ttl_ns = j.value("ttl_ns", int64_t{0});
  } catch (const std::exception& e) {
    return Status::corruption(std::string("lease: ") + e.what());
  }
  if (!valid_volume_name(l.volume)) return Status::corruption("lease: invalid volume name");
  if (l.generation == 0) return Status::corruption("lease: generation 0");
  return l;
}

}  // namespace stowage
