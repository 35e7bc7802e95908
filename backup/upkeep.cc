#include "stowage/upkeep.h"

#include <time.h>

#include <algorithm>
#include <cstdint>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "repo_util.h"
#include "stowage/pack.h"
#include "stowage/tree.h"

namespace stowage {
namespace {

using repo_util::SnapshotRef;

// ---- forget

enum class Bucket { kHour, kDay, kWeek, kMonth, kYear };

int64_t bucket_of(int64_t time_ns, Bucket b) {
  const time_t secs = static_cast<time_t>(time_ns / 1'000'000'000 - (time_ns % 1'000'000'000 < 0 ? 1 : 0));
  tm t{};
  gmtime_r(&secs, &t);
  const int64_t y = t.tm_year + 1900;
  switch (b) {
    case Bucket::kHour: return ((y * 100 + t.tm_mon + 1) * 100 + t.tm_mday) * 100 + t.tm_hour;
    case Bucket::kDay: return (y * 100 + t.tm_mon + 1) * 100 + t.tm_mday;
    case Bucket::kWeek: {
      char buf[16];
      strftime(buf, sizeof buf, "%G%V", &t);  // ISO 8601 year and week
      return std::stoll(buf);
    }
    case Bucket::kMonth: return y * 100 + t.tm_mon + 1;
    case Bucket::kYear: return y;
  }
  return 0;
}

// Calls on_entry(dir path, entry) for every entry under the tree blobs `roots`;
// on_tree(dir path, id) for every tree blob before it is read; tree errors
// go to on_error (the walk continues elsewhere). With `seen`, a tree blob
// already visited is skipped (prune needs blobs, not paths).
struct Walker {
  Repository& repo;
  const Index& index;
  BlobCodec codec;
  std::function<void(const std::vector<std::string>&, const TreeEntry&)> on_entry;
  std::function<void(const std::vector<std::string>&, const BlobId&)> on_tree;
  std::function<void(const std::vector<std::string>&, const Status&)> on_error;
  std::unordered_set<BlobId, Hash256Hasher>* seen = nullptr;

  void walk(const std::vector<BlobId>& ids, std::vector<std::string>& path, int depth) {
    if (depth > 4096) {
      on_error(path, Status::corruption("nesting deeper than 4096"));
      return;
    }
    std::vector<BlobId> todo;
    for (const auto& id : ids) {
      if (seen && !seen->insert(id).second) continue;
      if (on_tree) on_tree(path, id);
      todo.push_back(id);
    }
    if (todo.empty()) return;
    auto entries = repo_util::load_dir(repo, index, codec, todo);
    if (!entries.is_ok()) {
      on_error(path, entries.status());
      return;
    }
    for (const auto& e : *entries) {
      if (on_entry) on_entry(path, e);
      if (e.type == NodeType::kDir) {
        path.push_back(e.name);
        walk(e.subtree, path, depth + 1);
        path.pop_back();
      }
    }
  }
};

// Checks each directory (the tree blobs of one `subtree`) once and remembers
// what it found, so a repository whose trees share subtrees (even a crafted
// one reaching one tree through 2^n paths) is checked in time linear in its
// distinct directories. report() then walks one snapshot's directories,
// each once: findings are named by the first path that reaches it; every
// other path to a directory with damage at or below it is reported as such,
// naming that first path (so the output stays linear too). Nesting depth
// depends on the path, not the directory: report() judges it.
class DirChecker {
 public:
  struct Finding {
    std::string name;  // the entry; empty: the directory itself
    std::string problem;
    bool damage;       // false: an error that does not hurt a restore
  };
  using FileCheck = std::function<void(const TreeEntry&, std::vector<Finding>&)>;
  using OnFinding = std::function<void(const std::string& path, const Finding&)>;
  using OnShared = std::function<void(const std::string& path, const std::string& first_path)>;

  DirChecker(Repository& repo, const Index& index, FileCheck check_file)
      : repo_(repo), index_(index), check_file_(std::move(check_file)) {}

  // Calls on_finding(path, finding) for every finding in the directories
  // under the tree blobs `root`, checking those not checked before, and
  // on_shared(path, first path) for each further path to a directory with
  // damage at or below it.
  void report(const std::vector<BlobId>& root, const OnFinding& on_finding, const OnShared& on_shared) {
    std::unordered_map<size_t, std::string> first;  // handle -> first path (kept only where damaged)
    std::vector<std::string> path;
    visit(check(root, 0), path, first, on_finding, on_shared);
  }

 private:
  static constexpr int kMaxDepth = 4096;  // FORMAT.md §6.2
  static constexpr size_t kUnchecked = SIZE_MAX;
  struct Subdir {
    std::string name;
    std::vector<BlobId> ids;
    size_t handle;  // kUnchecked: below the depth check() stopped at
  };
  struct Dir {
    std::vector<Finding> findings;
    std::vector<Subdir> subdirs;
    bool damage_below = false;  // as far as checked
  };

  // Checks the directory made of the tree blobs `ids`, first met at `depth`,
  // and what is below it, unless done before; returns its handle.
  size_t check(const std::vector<BlobId>& ids, int depth) {
    auto [it, fresh] = handles_.emplace(ids, dirs_.size());
    if (!fresh) return it->second;
    const size_t me = dirs_.size();
    dirs_.emplace_back();
    auto entries = repo_util::load_dir(repo_, index_, codec_, ids);
    if (!entries.is_ok()) {
      dirs_[me].findings.push_back({"", entries.status().message(), true});
      dirs_[me].damage_below = true;
      return me;
    }
    for (auto& e : *entries) {
      std::vector<Finding> found;
      if (e.type == NodeType::kFile) check_file_(e, found);
      for (auto& f : found) {
        if (f.damage) dirs_[me].damage_below = true;
        dirs_[me].findings.push_back(std::move(f));
      }
      if (e.type != NodeType::kDir) continue;
      // Deeper than any path may go from here: visit() refuses it, or
      // checks it when a shorter path reaches it.
      const size_t sub = depth + 1 > kMaxDepth ? kUnchecked : check(e.subtree, depth + 1);
      if (sub != kUnchecked && dirs_[sub].damage_below) dirs_[me].damage_below = true;
      dirs_[me].subdirs.push_back({std::move(e.name), std::move(e.subtree), sub});
    }
    return me;
  }

  void visit(size_t dir, std::vector<std::string>& path, std::unordered_map<size_t, std::string>& first,
             const OnFinding& on_finding, const OnShared& on_shared) {
    first.emplace(dir, dirs_[dir].damage_below ? repo_util::display_path(path) : std::string());
    for (const auto& f : dirs_[dir].findings) {
      if (!f.name.empty()) path.push_back(f.name);
      on_finding(repo_util::display_path(path), f);
      if (!f.name.empty()) path.pop_back();
    }
    for (size_t i = 0; i < dirs_[dir].subdirs.size(); ++i) {
      path.push_back(dirs_[dir].subdirs[i].name);
      const int depth = static_cast<int>(path.size());
      if (depth > kMaxDepth) {
        on_finding(repo_util::display_path(path), {"", "nesting deeper than 4096", true});
      } else {
        if (dirs_[dir].subdirs[i].handle == kUnchecked) {
          const size_t handle = check(dirs_[dir].subdirs[i].ids, depth);  // may grow dirs_
          dirs_[dir].subdirs[i].handle = handle;
        }
        const size_t sub = dirs_[dir].subdirs[i].handle;
        if (auto it = first.find(sub); it == first.end()) {
          visit(sub, path, first, on_finding, on_shared);
        } else if (dirs_[sub].damage_below) {
          on_shared(repo_util::display_path(path), it->second);
        }
      }
      path.pop_back();
    }
  }

  Repository& repo_;
  const Index& index_;
  FileCheck check_file_;
  BlobCodec codec_;
  std::map<std::vector<BlobId>, size_t> handles_;
  std::vector<Dir> dirs_;
};

// Writes one index file superseding every file of `files` that names a pack
// in `drop`, listing the rest of their packs (FORMAT.md §8.3 step 1), and
// returns the ids it superseded; the caller deletes those once nothing needs
// them any more. Writes nothing when no file names a pack in `drop`. The
// replacement also supersedes `leftovers` (present files superseded by one
// of `files`, Repository::load_index_files): once the file superseding them
// is deleted, nothing else would keep them out of the index.
Result<std::vector<Hash256>> supersede_index_files(Repository& repo, const std::map<Hash256, IndexFile>& files,
                                                   const std::set<PackId>& drop, const std::set<Hash256>& leftovers,
                                                   std::vector<IndexPack> add = {}) {
  IndexFile replacement;
  replacement.packs = std::move(add);
  for (const auto& [id, f] : files) {
    if (std::none_of(f.packs.begin(), f.packs.end(), [&](const IndexPack& p) { return drop.count(p.id) > 0; })) {
      continue;
    }
    replacement.supersedes.push_back(id);
    for (const auto& p : f.packs) {
      if (!drop.count(p.id)) replacement.packs.push_back(p);
    }
  }
  if (replacement.supersedes.empty()) return replacement.supersedes;  // and `add` stays unindexed
  replacement.supersedes.insert(replacement.supersedes.end(), leftovers.begin(), leftovers.end());
  auto saved = repo.save_index(replacement);
  if (!saved.is_ok()) return saved.status().with_context("write replacement index");
  return replacement.supersedes;
}

// Takes the packs `drop` out of the index (indexing the packs `add`, already
// stored, in their place): supersedes the files naming them, then deletes
// those files. The packs themselves are left alone.
Status drop_from_index(Repository& repo, const std::map<Hash256, IndexFile>& files, const std::set<PackId>& drop,
                       const std::set<Hash256>& leftovers, std::vector<IndexPack> add = {}) {
  STOWAGE_ASSIGN_OR_RETURN(const auto superseded, supersede_index_files(repo, files, drop, leftovers, std::move(add)));
  for (const auto& id : superseded) STOWAGE_RETURN_IF_ERROR(repo.store().remove(index_key(id)));
  return Status::ok();
}

// Copies every intact blob of the damaged pack `rec` into a new pack and
// stores it; nullopt when none is intact (or the pack is gone). Which blobs
// the pack holds comes from its own header when that parses, else from the
// index: the index itself may be what is wrong about the pack. Each blob is
// decoded and hashed here, from the bytes copied, so nothing unverified is
// carried over, whatever an earlier read of the pack found.
Result<std::optional<IndexPack>> salvage_pack(Repository& repo, const IndexPack& rec) {
  auto data = repo.store().get(pack_key(rec.id));
  if (!data.is_ok()) {
    if (data.status().code() == Code::kNotFound) return std::optional<IndexPack>();
    return data.status().with_context("salvage pack " + rec.id.hex());
  }
  auto own = parse_pack_tail(*data, data->size());
  const std::vector<PackBlob>& blobs = own.is_ok() ? *own : rec.blobs;
  BlobCodec codec;
  PackWriter w;
  std::set<BlobId> kept;
  for (const auto& b : blobs) {
    if (kept.count(b.id) || uint64_t{b.offset} + b.stored_length > data->size()) continue;
    const std::string_view stored = std::string_view(*data).substr(b.offset, b.stored_length);
    if (!codec.decode(b.id, b.compression, b.raw_length, stored).is_ok()) continue;
    STOWAGE_RETURN_IF_ERROR(w.add({b.id, b.type, b.compression, b.raw_length, stored}));
    kept.insert(b.id);
  }
  if (kept.empty()) return std::optional<IndexPack>();
  STOWAGE_ASSIGN_OR_RETURN(auto pack, w.finish());
  STOWAGE_RETURN_IF_ERROR(repo.save_pack(pack).with_context("salvage pack " + rec.id.hex()));
  return std::optional<IndexPack>(IndexPack{pack.id, static_cast<uint32_t>(pack.data.size()), pack.blobs});
}

}  // namespace

std::vector<ForgetDecision> apply_forget_policy(const std::vector<std::pair<Hash256, SnapshotManifest>>& snapshots,
                                                const ForgetPolicy& policy) {
  std::map<std::pair<std::string, std::string>, std::vector<ForgetDecision>> groups;
  for (const auto& [id, m] : snapshots) groups[{m.volume, m.hostname}].push_back({id, m, false, {}});
  std::vector<ForgetDecision> out;
  for (auto& [key, list] : groups) {
    std::sort(list.begin(), list.end(), [](const ForgetDecision& a, const ForgetDecision& b) {
      return a.manifest.time_ns != b.manifest.time_ns ? a.manifest.time_ns > b.manifest.time_ns : a.id > b.id;
    });
    for (size_t i = 0; i < list.size() && static_cast<int>(i) < policy.keep_last; ++i) {
      list[i].keep = true;
      list[i].reasons.push_back("last");
    }
    const std::pair<int, Bucket> rules[] = {{policy.keep_hourly, Bucket::kHour},
                                            {policy.keep_daily, Bucket::kDay},
                                            {policy.keep_weekly, Bucket::kWeek},
                                            {policy.keep_monthly, Bucket::kMonth},
                                            {policy.keep_yearly, Bucket::kYear}};
    static constexpr const char* kNames[] = {"hourly", "daily", "weekly", "monthly", "yearly"};
    for (size_t r = 0; r < 5; ++r) {
      int left = rules[r].first;
      std::optional<int64_t> last;
      for (auto& d : list) {
        if (left <= 0) break;
        const int64_t b = bucket_of(d.manifest.time_ns, rules[r].second);
        if (last && *last == b) continue;
        last = b;
        d.keep = true;
        d.reasons.push_back(kNames[r]);
        --left;
      }
    }
    for (auto& d : list) {
      for (const auto& t : policy.keep_tags) {
        if (std::find(d.manifest.tags.begin(), d.manifest.tags.end(), t) != d.manifest.tags.end()) {
          d.keep = true;
          d.reasons.push_back("tag " + t);
          break;
        }
      }
      out.push_back(std::move(d));
    }
  }
  return out;
}

Result<std::vector<ForgetDecision>> run_forget(Repository& repo, const ForgetOptions& opts) {
  if (!opts.snapshots.empty() && !opts.policy.empty()) {
    return Status::invalid_argument("forget: give snapshot ids or keep rules, not both");
  }
  const ForgetPolicy& p = opts.policy;
  for (const int n : {p.keep_last, p.keep_hourly, p.keep_daily, p.keep_weekly, p.keep_monthly, p.keep_yearly}) {
    if (n < 0) return Status::invalid_argument("forget: keep counts must be positive, not " + std::to_string(n));
  }
  if (opts.snapshots.empty() && opts.policy.empty()) {
    return Status::invalid_argument("forget: no keep rule given (refusing to forget everything)");
  }
  STOWAGE_ASSIGN_OR_RETURN(const auto all, repo_util::scan_snapshots(repo));
  std::vector<ForgetDecision> decisions;
  if (!opts.snapshots.empty()) {
    for (const auto& what : opts.snapshots) {
      STOWAGE_ASSIGN_OR_RETURN(const Hash256 id, repo_util::resolve_snapshot_id(all, what));
      auto it = std::find_if(all.readable.begin(), all.readable.end(), [&](const SnapshotRef& s) { return s.id == id; });
      if (it != all.readable.end()) {
        decisions.push_back({id, it->manifest, false, {}});
      } else {
        decisions.push_back({id, {}, false, {}, true});
      }
    }
  } else {
    std::vector<std::pair<Hash256, SnapshotManifest>> chosen;
    for (const auto& s : all.readable) {
      if (opts.name.empty() || s.manifest.volume == opts.name) chosen.emplace_back(s.id, s.manifest);
    }
    decisions = apply_forget_policy(chosen, opts.policy);
    for (const auto& u : all.unreadable) decisions.push_back({u.id, {}, true, {"unreadable"}, true});
  }
  if (!opts.dry_run) {
    for (const auto& d : decisions) {
      if (d.keep) continue;
      STOWAGE_RETURN_IF_ERROR(repo.store().remove(snapshot_key(d.id)).with_context("forget " + d.id.hex()));
    }
  }
  return decisions;
}

// ---- prune

Result<PruneReport> run_prune(Repository& repo, const PruneOptions& opts) {
  const auto clock = opts.clock ? opts.clock : system_clock();
  const int64_t now = clock->now_ns();
  PruneReport report;

  // Marks first: a mark written after the snapshots were listed must not be
  // swept on the strength of that older list.
  STOWAGE_ASSIGN_OR_RETURN(const auto marks, repo_util::load_marks(repo));
  STOWAGE_ASSIGN_OR_RETURN(const auto all, repo_util::scan_snapshots(repo));
  if (!all.unreadable.empty()) {
    const auto& u = all.unreadable.front();
    return Status::failed_precondition(
        "prune: " + u.problem.message() + ": it may reference any pack, so prune deletes nothing while it is there. " +
        "Put back an intact copy of " + snapshot_key(u.id) + ", or remove it with 'stowctl forget " + u.id.hex() +
        "' (what only it references is then deleted)");
  }
  const auto& snaps = all.readable;
  std::set<Hash256> leftovers;
  STOWAGE_ASSIGN_OR_RETURN(auto files, repo.load_index_files(&leftovers));
  if (!opts.dry_run) {
    // Superseded files an interrupted prune left: deleted before anything
    // else, while the files superseding them still keep them out.
    for (const auto& id : leftovers) {
      STOWAGE_RETURN_IF_ERROR(repo.store().remove(index_key(id)).with_context("prune: delete superseded index file"));
      ++report.index_files_removed;
    }
    leftovers.clear();
  }
  STOWAGE_ASSIGN_OR_RETURN(const auto stored, repo.list_packs());
  // Index entries of packs that are gone (deleted by hand, lost by the
  // store): backups would keep deduplicating against them. A backup stores
  // a pack before indexing it and prune drops a pack from the index before
  // deleting it, so such an entry can only be a loss. Dropped first: the
  // walk below may fail on the very trees they held.
  std::set<PackId> lost;
  for (const auto& [id, f] : files) {
    for (const auto& p : f.packs) {
      if (!stored.count(p.id)) lost.insert(p.id);
    }
  }
  report.lost_packs.assign(lost.begin(), lost.end());
  if (!lost.empty() && !opts.dry_run) {
    STOWAGE_RETURN_IF_ERROR(
        drop_from_index(repo, files, lost, leftovers).with_context("prune: drop index entries of missing packs"));
    STOWAGE_ASSIGN_OR_RETURN(files, repo.load_index_files(&leftovers));
  }
  Index index;
  std::map<PackId, const IndexPack*> indexed;
  for (const auto& [id, f] : files) {
    STOWAGE_RETURN_IF_ERROR(index.merge(f));
    for (const auto& p : f.packs) indexed.emplace(p.id, &p);
  }

  // Every blob some snapshot needs. Any unreadable tree stops prune: it must
  // never delete on an incomplete picture.
  std::unordered_set<BlobId, Hash256Hasher> used, seen;
  Status walk_error;
  Walker w{repo, index, BlobCodec{}, {}, {}, {}, &seen};
  w.on_tree = [&](const std::vector<std::string>&, const BlobId& id) { used.insert(id); };
  w.on_entry = [&](const std::vector<std::string>&, const TreeEntry& e) { used.insert(e.chunks.begin(), e.chunks.end()); };
  w.on_error = [&](const std::vector<std::string>& path, const Status& s) {
    if (walk_error.is_ok()) walk_error = s.with_context(repo_util::display_path(path));
  };
  for (const auto& s : snaps) {
    std::vector<std::string> path;
    w.walk(s.manifest.tree, path, 0);
    if (!walk_error.is_ok()) return walk_error.with_context("prune: snapshot " + s.id.hex() + " is unreadable");
  }
  // A pack no index lists is a running or a dead backup's, or one check
  // --repair took out of the index as damaged, unless an index file was
  // lost: then it may hold blobs snapshots use that no index lists, and
  // only its header tells. Such a pack is kept if it is intact.
  std::map<PackId, bool> unindexed_keep;
  auto keep_unindexed = [&](const PackId& p) -> Result<bool> {
    auto [it, fresh] = unindexed_keep.emplace(p, false);
    if (!fresh) return it->second;
    auto header = read_pack_header(repo.store(), pack_key(p));
    if (!header.is_ok()) {
      if (header.status().code() != Code::kCorruption) return header.status().with_context("prune");
      return false;  // unreadable: of no use to anyone
    }
    if (std::none_of(header->begin(), header->end(),
                     [&](const PackBlob& b) { return used.count(b.id) > 0 && !index.contains(b.id); })) {
      return false;
    }
    STOWAGE_ASSIGN_OR_RETURN(const Bytes whole, repo.store().get(pack_key(p)));
    it->second = sha256(whole) == p;
    if (it->second) report.unindexed_kept.push_back(p);
    return it->second;
  };
  auto pack_used = [&](const PackId& p) {
    auto it = indexed.find(p);
    if (it == indexed.end()) return false;
    return std::any_of(it->second->blobs.begin(), it->second->blobs.end(),
                       [&](const PackBlob& b) { return used.count(b.id) > 0; });
  };

  // Phase 2: sweep marks older than the grace period. A marked pack holding a
  // blob some snapshot uses survives unless another surviving pack has that
  // blob too (a backup that started after the mark uploaded it again).
  std::set<PackId> doomed, pending;
  std::vector<Hash256> swept;
  for (const auto& [id, mark] : marks) {
    if (mark.created_ns + opts.grace_ns > now) {
      ++report.marks_pending;
      pending.insert(mark.packs.begin(), mark.packs.end());
      continue;
    }
    swept.push_back(id);
    for (const auto& p : mark.packs) {
      if (stored.count(p)) doomed.insert(p);
    }
  }
  std::unordered_set<BlobId, Hash256Hasher> elsewhere;
  for (const auto& [p, rec] : indexed) {
    if (doomed.count(p)) continue;
    for (const auto& b : rec->blobs) {
      if (used.count(b.id)) elsewhere.insert(b.id);
    }
  }
  for (auto it = doomed.begin(); it != doomed.end();) {
    if (!indexed.count(*it)) {
      STOWAGE_ASSIGN_OR_RETURN(const bool keep, keep_unindexed(*it));
      if (keep) {
        it = doomed.erase(it);
        continue;
      }
    }
    auto rec = indexed.find(*it);
    const bool needed = rec != indexed.end() &&
                        std::any_of(rec->second->blobs.begin(), rec->second->blobs.end(), [&](const PackBlob& b) {
                          return used.count(b.id) && !elsewhere.count(b.id);
                        });
    if (needed) {
      ++report.packs_rescued;
      for (const auto& b : rec->second->blobs) {
        if (used.count(b.id)) elsewhere.insert(b.id);  // now kept here
      }
      it = doomed.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& p : doomed) pending.erase(p);
  if (!opts.dry_run && (!doomed.empty() || !swept.empty())) {
    // 1. Supersede every index file naming a doomed pack.
    auto superseded = supersede_index_files(repo, files, doomed, leftovers);
    if (!superseded.is_ok()) return superseded.status().with_context("prune");
    report.index_files_rewritten = superseded->size();
    // 2. Delete packs, 3. then superseded index files and the marks.
    for (const auto& p : doomed) {
      STOWAGE_RETURN_IF_ERROR(repo.store().remove(pack_key(p)).with_context("prune"));
      report.bytes_deleted += stored.at(p);
      ++report.packs_deleted;
    }
    for (const auto& id : *superseded) STOWAGE_RETURN_IF_ERROR(repo.store().remove(index_key(id)).with_context("prune"));
    for (const auto& id : swept) STOWAGE_RETURN_IF_ERROR(repo.store().remove(repo_util::mark_key(id)).with_context("prune"));
  } else {
    report.packs_deleted = doomed.size();
    for (const auto& p : doomed) report.bytes_deleted += stored.at(p);
  }

  // Phase 1: mark what is unreferenced now (unindexed packs included: they
  // belong to a backup that is running, or died; the grace period tells).
  repo_util::PruneMark mark;
  mark.created_ns = now;
  std::set<Hash256> mark_indexes;
  for (const auto& [p, size] : stored) {
    if (doomed.count(p) || pending.count(p)) continue;
    if (!indexed.count(p)) {
      STOWAGE_ASSIGN_OR_RETURN(const bool keep, keep_unindexed(p));
      if (keep) continue;
    }
    if (pack_used(p)) {
      auto it = indexed.find(p);
      if (std::any_of(it->second->blobs.begin(), it->second->blobs.end(),
                      [&](const PackBlob& b) { return used.count(b.id) == 0; })) {
        ++report.packs_partly_used;
      }
      continue;
    }
    mark.packs.push_back(p);
  }
  for (const auto& [id, f] : files) {
    for (const auto& p : f.packs) {
      if (std::binary_search(mark.packs.begin(), mark.packs.end(), p.id)) mark_indexes.insert(id);
    }
  }
  mark.indexes.assign(mark_indexes.begin(), mark_indexes.end());
  report.packs_marked = mark.packs.size();
  if (!mark.packs.empty() && !opts.dry_run) {
    const std::string bytes = repo_util::serialize_mark(mark);
    const Hash256 id = sha256(bytes);
    Status s = repo.store().put(repo_util::mark_key(id), bytes, {.create_only = true});
    if (!s.is_ok() && s.code() != Code::kAlreadyExists) return s.with_context("prune: write mark");
  }
  return report;
}

// ---- check

Result<CheckReport> run_check(Repository& repo, const CheckOptions& opts) {
  CheckReport report;
  std::set<Hash256> leftovers;
  auto files = repo.load_index_files(&leftovers);
  if (!files.is_ok()) {
    if (files.status().code() != Code::kCorruption) return files.status();
    report.errors.push_back(files.status().message());
    return report;
  }
  STOWAGE_ASSIGN_OR_RETURN(const auto stored, repo.list_packs());
  Index index;
  std::map<PackId, const IndexPack*> indexed;
  for (const auto& [id, f] : *files) {
    if (Status s = index.merge(f); !s.is_ok()) report.errors.push_back(s.with_context(index_key(id)).message());
    for (const auto& p : f.packs) {
      auto [it, fresh] = indexed.emplace(p.id, &p);
      if (!fresh && !(*it->second == p)) {
        report.errors.push_back("pack " + p.id.hex() + " is described differently by two index files");
      }
    }
  }
  report.packs = indexed.size();
  report.blobs = index.size();

  // Index against pack headers.
  std::set<PackId> damaged;
  for (const auto& [id, rec] : indexed) {
    auto it = stored.find(id);
    if (it == stored.end()) {
      report.errors.push_back("pack " + id.hex() + " is in the index but missing from the store");
      damaged.insert(id);
      continue;
    }
    if (it->second != rec->length) {
      report.errors.push_back("pack " + id.hex() + " has " + std::to_string(it->second) + " bytes, the index says " +
                              std::to_string(rec->length));
      damaged.insert(id);
      continue;
    }
    auto header = read_pack_header(repo.store(), pack_key(id));
    if (!header.is_ok()) {
      if (header.status().code() != Code::kCorruption) return header.status();
      report.errors.push_back("pack " + id.hex() + ": " + header.status().message());
      damaged.insert(id);
    } else if (*header != rec->blobs) {
      report.errors.push_back("pack " + id.hex() + ": header does not match the index");
      damaged.insert(id);
    }
  }
  for (const auto& [id, size] : stored) {
    if (!indexed.count(id)) {
      report.warnings.push_back("pack " + id.hex() +
                                " is not indexed (a backup running or interrupted, or a lost index file; prune removes "
                                "it unless snapshots use its blobs, check --repair indexes it)");
    }
  }

  // Every blob: download each pack once, verify it and every blob in it.
  std::unordered_set<BlobId, Hash256Hasher> bad_blobs;
  // With read_data: each intact data blob's XXH3-128, to compare with the
  // chunk sums trees record (FORMAT.md §6.2 chunk_xxh128). A flat vector,
  // sorted once all packs are read: 48 bytes per data blob.
  std::vector<std::pair<BlobId, ChunkSum>> sums;
  const ChunkSummer summer(repo.config().id);
  if (opts.read_data) {
    std::vector<const IndexPack*> list;
    for (const auto& [id, rec] : indexed) {
      if (stored.count(id)) list.push_back(rec);
    }
    std::mutex mu;
    std::atomic<size_t> next{0};
    Status fatal;
    std::vector<std::thread> threads;
    const unsigned n = opts.workers ? opts.workers : 4;
    for (unsigned t = 0; t < n; ++t) {
      threads.emplace_back([&] {
        BlobCodec codec;
        for (size_t i = next++; i < list.size(); i = next++) {
          const IndexPack& p = *list[i];
          auto data = repo.store().get(pack_key(p.id));
          if (!data.is_ok()) {
            std::lock_guard lk(mu);
            if (fatal.is_ok()) fatal = data.status();
            continue;
          }
          // Verified outside the lock (the threads hash and decompress in
          // parallel); the findings are merged under it.
          const bool pack_ok = sha256(*data) == p.id;
          std::vector<BlobId> bad;
          std::vector<std::string> errors;
          std::vector<std::pair<BlobId, ChunkSum>> pack_sums;
          for (const auto& b : p.blobs) {
            if (uint64_t{b.offset} + b.stored_length > data->size()) {
              bad.push_back(b.id);
              continue;
            }
            auto plain = codec.decode(b.id, b.compression, b.raw_length,
                                      std::string_view(*data).substr(b.offset, b.stored_length));
            if (!plain.is_ok()) {
              bad.push_back(b.id);
              errors.push_back("pack " + p.id.hex() + ": blob " + b.id.hex() + ": " + plain.status().message());
            } else {
              // Of trees too: a file's chunk may be a tree blob (FORMAT.md §3.3).
              pack_sums.emplace_back(b.id, summer(*plain));
            }
          }
          std::lock_guard lk(mu);
          report.blobs_read += p.blobs.size();
          if (!pack_ok) {
            report.errors.push_back("pack " + p.id.hex() + ": content does not match its name (SHA-256)");
            damaged.insert(p.id);
          }
          bad_blobs.insert(bad.begin(), bad.end());
          if (!errors.empty()) damaged.insert(p.id);
          report.errors.insert(report.errors.end(), errors.begin(), errors.end());
          sums.insert(sums.end(), pack_sums.begin(), pack_sums.end());
        }
      });
    }
    for (auto& t : threads) t.join();
    STOWAGE_RETURN_IF_ERROR(fatal);
    std::sort(sums.begin(), sums.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  // Blobs of missing or mismatching packs are unusable even without read_data.
  for (const auto& p : damaged) {
    auto it = indexed.find(p);
    if (it == indexed.end()) continue;
    if (!opts.read_data || !stored.count(p)) {
      for (const auto& b : it->second->blobs) bad_blobs.insert(b.id);
    }
  }
  report.damaged_packs.assign(damaged.begin(), damaged.end());

  // Snapshots: every tree readable, every chunk indexed and intact. Each
  // directory is checked once (DirChecker), however many paths and snapshots
  // share it.
  STOWAGE_ASSIGN_OR_RETURN(const auto all, repo_util::scan_snapshots(repo));
  for (const auto& u : all.unreadable) {
    report.errors.push_back(u.problem.message() + " (remove it with 'stowctl forget " + u.id.hex() + "')");
  }
  const auto& snaps = all.readable;
  report.snapshots = snaps.size() + all.unreadable.size();
  auto check_file = [&](const TreeEntry& e, std::vector<DirChecker::Finding>& out) {
    uint64_t data = 0;
    for (const auto& c : e.chunks) {
      auto loc = index.find(c);
      if (!loc) {
        out.push_back({e.name, "data blob " + c.hex() + " is not in the index", true});
        return;
      }
      if (bad_blobs.count(c)) {
        out.push_back({e.name, "data blob " + c.hex() + " in pack " + loc->pack.hex() + " is damaged", true});
        return;
      }
      data += loc->raw_length;
    }
    if (data + hole_bytes(e.holes) != e.size) out.push_back({e.name, "size does not match its chunks and holes", true});
    // A wrong sum does not hurt a restore, but the next backup of the file
    // would trust it to find the chunk in place: an error, not damage.
    for (size_t i = 0; i < e.chunk_sums.size() && i < e.chunks.size(); ++i) {
      auto it = std::lower_bound(sums.begin(), sums.end(), e.chunks[i],
                                 [](const auto& entry, const BlobId& id) { return entry.first < id; });
      if (it != sums.end() && it->first == e.chunks[i] && it->second != e.chunk_sums[i]) {
        out.push_back({e.name,
                       "chunk " + std::to_string(i) + " (data blob " + e.chunks[i].hex() +
                           ") does not have the recorded chunk_xxh128 sum",
                       false});
        break;
      }
    }
  };
  DirChecker dirs(repo, index, check_file);
  for (const auto& s : snaps) {
    auto error = [&](const std::string& path, const std::string& problem) {
      report.errors.push_back("snapshot " + s.id.hex() + ": " + path + ": " + problem);
    };
    auto damage = [&](const std::string& path, const std::string& problem) {
      report.damaged.push_back({s.id, path, problem});
      error(path, problem);
    };
    dirs.report(s.manifest.tree, [&](const std::string& path, const DirChecker::Finding& f) {
      f.damage ? damage(path, f.problem) : error(path, f.problem);
    }, [&](const std::string& path, const std::string& first) {
      damage(path, "the same directory as " + first + ", which holds damage reported there");
    });
  }
  if (opts.repair && !damaged.empty()) {
    std::vector<IndexPack> salvaged;
    for (const auto& p : damaged) {
      auto it = indexed.find(p);
      if (it == indexed.end()) continue;
      STOWAGE_ASSIGN_OR_RETURN(auto copy, salvage_pack(repo, *it->second));
      if (copy) salvaged.push_back(std::move(*copy));
    }
    report.packs_salvaged = salvaged.size();
    STOWAGE_RETURN_IF_ERROR(
        drop_from_index(repo, *files, damaged, leftovers, std::move(salvaged)).with_context("check --repair"));
    report.packs_unindexed = report.damaged_packs;
  }
  if (opts.repair) {
    // Packs no index lists, from their headers (FORMAT.md §4: a pack
    // describes itself). Harmless for a running backup's packs: it indexes
    // them the same way.
    // Only intact ones: check --repair takes damaged packs out of the index
    // and leaves them in data/ for prune.
    IndexFile found;
    for (const auto& [id, size] : stored) {
      if (indexed.count(id) || damaged.count(id)) continue;
      auto whole = repo.store().get(pack_key(id));
      if (!whole.is_ok()) return whole.status().with_context("check --repair");
      if (sha256(*whole) != id) continue;
      auto header = parse_pack_tail(*whole, whole->size());
      if (!header.is_ok()) continue;
      found.packs.push_back({id, static_cast<uint32_t>(size), std::move(header).value()});
      report.packs_indexed.push_back(id);
    }
    if (!found.packs.empty()) STOWAGE_RETURN_IF_ERROR(repo.save_index(found).status().with_context("check --repair"));
  }
  return report;
}

}  // namespace stowage
