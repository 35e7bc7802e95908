#include "repo_util.h"

#include <algorithm>
#include <tuple>

#include "json_util.h"

namespace stowage::repo_util {

using json_util::Json;

namespace {
constexpr std::string_view kMarkPrefix = "prune/";
}  // namespace

Result<SnapshotList> scan_snapshots(Repository& repo) {
  STOWAGE_ASSIGN_OR_RETURN(const std::vector<Hash256> ids, repo.list_snapshots());
  SnapshotList out;
  out.readable.reserve(ids.size());
  for (const auto& id : ids) {
    auto bytes = repo.load_snapshot(id);
    if (!bytes.is_ok()) {
      if (bytes.status().code() == Code::kNotFound) continue;  // forgotten meanwhile
      if (bytes.status().code() != Code::kCorruption) return bytes.status();
      out.unreadable.push_back({id, bytes.status().with_context(snapshot_key(id))});
      continue;
    }
    auto m = parse_snapshot(*bytes);
    if (!m.is_ok()) {
      out.unreadable.push_back({id, m.status().with_context(snapshot_key(id))});
      continue;
    }
    out.readable.push_back({id, std::move(m).value()});
  }
  std::sort(out.readable.begin(), out.readable.end(), [](const SnapshotRef& a, const SnapshotRef& b) {
    return a.manifest.time_ns != b.manifest.time_ns ? a.manifest.time_ns < b.manifest.time_ns : a.id < b.id;
  });
  return out;
}

Result<std::vector<SnapshotRef>> load_snapshots(Repository& repo) {
  STOWAGE_ASSIGN_OR_RETURN(SnapshotList all, scan_snapshots(repo));
  if (!all.unreadable.empty()) {
    const Status& p = all.unreadable.front().problem;
    return p.code() == Code::kCorruption ? p : Status::corruption(p.message());
  }
  return std::move(all.readable);
}

const SnapshotRef* newest_snapshot(const std::vector<SnapshotRef>& all, std::string_view name) {
  // Lease generations order holders without trusting any clock; one holder's
  // snapshots are ordered by its own clock.
  auto key = [](const SnapshotRef& s) { return std::tuple(s.manifest.lease_generation, s.manifest.time_ns, s.id); };
  const SnapshotRef* best = nullptr;
  for (const auto& s : all) {
    if ((name.empty() || s.manifest.volume == name) && (best == nullptr || key(*best) < key(s))) best = &s;
  }
  return best;
}

Result<Hash256> resolve_snapshot_id(const SnapshotList& all, std::string_view what) {
  if (what.empty() || what.size() > 64 ||
      !std::all_of(what.begin(), what.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); })) {
    return Status::invalid_argument("'" + std::string(what) + "' is neither 'latest' nor a lowercase hex snapshot id prefix");
  }
  std::vector<Hash256> hits;
  auto match = [&](const Hash256& id) {
    if (id.hex().compare(0, what.size(), what) == 0) hits.push_back(id);
  };
  for (const auto& s : all.readable) match(s.id);
  for (const auto& s : all.unreadable) match(s.id);
  if (hits.empty()) return Status::not_found("no snapshot id starts with " + std::string(what));
  if (hits.size() > 1) {
    return Status::invalid_argument("snapshot prefix " + std::string(what) + " is ambiguous (" +
                                    std::to_string(hits.size()) + " snapshots)");
  }
  return hits[0];
}

Result<SnapshotRef> resolve_snapshot(const SnapshotList& all, std::string_view what, std::string_view name) {
  if (what == "latest") {
    if (const SnapshotRef* s = newest_snapshot(all.readable, name)) return *s;
    return Status::not_found(name.empty() ? "no snapshots in the repository"
                                          : "no snapshot of source '" + std::string(name) + "'");
  }
  STOWAGE_ASSIGN_OR_RETURN(const Hash256 id, resolve_snapshot_id(all, what));
  for (const auto& s : all.readable) {
    if (s.id == id) return s;
  }
  for (const auto& s : all.unreadable) {
    if (s.id == id) return s.problem;
  }
  return Status::internal("resolve_snapshot: lost " + id.hex());
}

Result<std::vector<TreeEntry>> load_dir(Repository& repo, const Index& index, BlobCodec& codec,
                                        const std::vector<BlobId>& ids) {
  std::vector<TreeEntry> entries;
  for (const auto& id : ids) {
    auto loc = index.find(id);
    // Whatever its type: a file chunk may hold a tree's bytes (FORMAT.md §3.3).
    if (!loc) return Status::not_found("tree blob " + id.hex() + " is not in the index");
    STOWAGE_ASSIGN_OR_RETURN(Bytes bytes, repo.read_blob(codec, id, *loc));
    auto tree = parse_tree(bytes);
    if (!tree.is_ok()) return tree.status().with_context("tree " + id.hex());
    if (!entries.empty() && !tree->entries.empty() && !(entries.back().name < tree->entries.front().name)) {
      return Status::corruption("tree " + id.hex() + ": entries do not continue the previous tree blob's order");
    }
    for (auto& e : tree->entries) entries.push_back(std::move(e));
  }
  return entries;
}

std::string mark_key(const Hash256& id) { return std::string(kMarkPrefix) + id.hex(); }

std::string serialize_mark(const PruneMark& mark) {
  Json j;
  j["version"] = 1;
  j["created_ns"] = mark.created_ns;
  j["packs"] = json_util::ids_to_json(mark.packs);
  j["indexes"] = json_util::ids_to_json(mark.indexes);
  return j.dump();
}

Result<PruneMark> parse_mark(std::string_view text) {
  PruneMark m;
  try {
    const auto j = Json::parse(text);
    if (j.at("version").get<int>() != 1) return Status::unimplemented("prune mark: unknown version");
    m.created_ns = j.at("created_ns").get<int64_t>();
    for (const auto& v : j.at("packs")) m.packs.push_back(json_util::id_from_json(v, "packs"));
    for (const auto& v : j.value("indexes", Json::array())) m.indexes.push_back(json_util::id_from_json(v, "indexes"));
  } catch (const std::exception& e) {
    return Status::corruption(std::string("prune mark: ") + e.what());
  }
  return m;
}

Result<std::map<Hash256, PruneMark>> load_marks(Repository& repo) {
  auto objects = repo.store().list(kMarkPrefix);
  if (!objects.is_ok()) return objects.status().with_context("list prune/");
  std::map<Hash256, PruneMark> marks;
  for (const auto& o : *objects) {
    if (o.key.size() != kMarkPrefix.size() + 64) continue;
    auto id = Hash256::from_hex(std::string_view(o.key).substr(kMarkPrefix.size()));
    if (!id.is_ok()) continue;
    auto bytes = repo.store().get(o.key);
    if (!bytes.is_ok()) {
      if (bytes.status().code() == Code::kNotFound) continue;  // swept meanwhile
      return bytes.status().with_context("get " + o.key);
    }
    if (sha256(*bytes) != *id) return Status::corruption(o.key + ": content does not match its name");
    auto mark = parse_mark(*bytes);
    if (!mark.is_ok()) return mark.status().with_context(o.key);
    marks.emplace(*id, std::move(mark).value());
  }
  return marks;
}

Result<Index> load_index_for_backup(Repository& repo) {
  STOWAGE_ASSIGN_OR_RETURN(const auto marks, load_marks(repo));
  std::set<PackId> marked;
  for (const auto& [id, m] : marks) marked.insert(m.packs.begin(), m.packs.end());
  STOWAGE_ASSIGN_OR_RETURN(const auto files, repo.load_index_files());
  Index index;
  for (const auto& [id, file] : files) {
    for (const auto& pack : file.packs) {
      if (marked.count(pack.id)) continue;
      STOWAGE_RETURN_IF_ERROR(index.add_pack(pack).with_context("load index " + index_key(id)));
    }
  }
  return index;
}

std::string escape_bytes(std::string_view bytes, bool keep_non_ascii) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    if (c < 0x20 || c == 0x7f || c == '\\' || (c > 0x7f && !keep_non_ascii)) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string display_name(std::string_view name) { return escape_bytes(name, false); }

std::string display_path(const std::vector<std::string>& components) {
  std::string out;
  for (const auto& c : components) {
    if (!out.empty()) out += '/';
    out += display_name(c);
  }
  return out.empty() ? "." : out;
}

}  // namespace stowage::repo_util
