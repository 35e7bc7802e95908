#include "stowage/backup_cli.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cctype>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>
#include <zstd.h>

#include "repo_util.h"
#include "stowage/backup_pipeline.h"
#include "stowage/object_store.h"
#include "stowage/repository.h"
#include "stowage/restore.h"
#include "stowage/upkeep.h"

namespace stowage {
namespace {

using json = nlohmann::ordered_json;

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

int fail(const std::string& what, const Status& s) {
  std::cerr << "stowctl: " << what << ": " << s.to_string() << "\n";
  return 1;
}

// Parses "90s", "15m", "24h", "7d" (or plain seconds).
Result<int64_t> parse_duration_ns(const std::string& text) {
  if (text.empty()) return Status::invalid_argument("empty duration");
  size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(text, &used);
  } catch (const std::exception&) {
    return Status::invalid_argument("bad duration '" + text + "'");
  }
  const std::string unit = text.substr(used);
  int64_t mult = 1;
  if (unit.empty() || unit == "s") {
    mult = 1;
  } else if (unit == "m") {
    mult = 60;
  } else if (unit == "h") {
    mult = 3600;
  } else if (unit == "d") {
    mult = 86400;
  } else {
    return Status::invalid_argument("bad duration unit in '" + text + "' (use s, m, h or d)");
  }
  if (n < 0) return Status::invalid_argument("negative duration");
  return static_cast<int64_t>(n) * mult * 1'000'000'000;
}

Result<std::unique_ptr<Repository>> open_repo(const std::string& url) {
  if (url.empty()) return Status::invalid_argument("no repository: pass --repo URL or set STOWAGE_REPOSITORY");
  // Opening a file store creates its directory; only 'repo init' may do that,
  // or a mistyped path would leave an empty directory behind.
  if (url.starts_with("file:///")) {  // a relative one is refused by the store, with its own message
    std::error_code ec;
    if (!std::filesystem::exists(url.substr(7), ec) && !ec) {
      return Status::not_found("no repository at " + url + " (no such directory); 'stowctl repo init' creates one");
    }
  }
  STOWAGE_ASSIGN_OR_RETURN(auto store, open_object_store(url));
  auto repo = Repository::open(std::move(store));
  if (!repo.is_ok()) return repo.status().with_context(url);
  return repo;
}

// A progress line on stderr, redrawn a few times a second, only on a terminal.
class ProgressLine {
 public:
  explicit ProgressLine(std::function<std::string(double secs)> render)
      : render_(std::move(render)), start_(std::chrono::steady_clock::now()) {
    if (!::isatty(STDERR_FILENO)) return;
    thread_ = std::thread([this] {
      std::unique_lock lk(mu_);
      while (!cv_.wait_for(lk, std::chrono::milliseconds(250), [&] { return stop_; })) {
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
        std::fprintf(stderr, "\r\033[K%s", render_(secs).c_str());
        std::fflush(stderr);
      }
      std::fprintf(stderr, "\r\033[K");
      std::fflush(stderr);
    });
  }
  ~ProgressLine() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::function<std::string(double)> render_;
  std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

std::string eta(double done, double total, double secs) {
  if (done <= 0 || total <= done || secs <= 0) return "--:--";
  const long left = static_cast<long>((total - done) / (done / secs));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", left / 3600, left / 60 % 60, left % 60);
  return buf;
}

json stats_json(const SnapshotStats& s) {
  return {{"files", s.files},         {"dirs", s.dirs},           {"bytes", s.bytes},
          {"bytes_read", s.bytes_read}, {"bytes_matched", s.bytes_matched}, {"new_blobs", s.new_blobs},
          {"new_bytes", s.new_bytes},   {"stored_bytes", s.stored_bytes}};
}

// Names each snapshot whose manifest cannot be read, on stderr, and how to remove it.
void warn_unreadable(const repo_util::SnapshotList& all) {
  for (const auto& u : all.unreadable) {
    std::cerr << "stowctl: warning: skipped " << u.problem.to_string() << " (remove it with 'stowctl forget "
              << u.id.hex() << "')\n";
  }
}

int cmd_init(const BackupCliState& st) {
  if (st.repo.empty()) return fail("repo init", Status::invalid_argument("pass --repo URL or set STOWAGE_REPOSITORY"));
  auto store = open_object_store(st.repo);
  if (!store.is_ok()) return fail("repo init", store.status());
  RepositoryConfig config;
  std::random_device rd;  // the repository id only needs to be unique
  std::string seed;
  for (int i = 0; i < 8; ++i) seed += std::to_string(rd());
  config.id = sha256(seed + std::to_string(system_clock()->now_ns()));
  config.created_ns = system_clock()->now_ns();
  auto repo = Repository::init(std::move(store).value(), config);
  if (!repo.is_ok()) return fail("repo init " + st.repo, repo.status());
  if (st.json) {
    std::cout << json{{"repository", st.repo}, {"id", config.id.hex()}}.dump(2) << "\n";
  } else {
    std::cout << "created repository " << config.id.hex().substr(0, 12) << " at " << st.repo << "\n";
  }
  return 0;
}

int cmd_create(const BackupCliState& st) {
  auto repo = open_repo(st.repo);
  if (!repo.is_ok()) return fail("backup create", repo.status());
  BackupOptions o;
  o.source = st.path;
  o.name = st.name.empty() ? default_source_name(st.path) : st.name;
  o.hostname = st.host;
  o.tags = st.tags;
  o.use_parent = !st.no_parent;
  o.compression_level = st.compression_level;
  o.workers = st.workers;
  BackupProgress progress;
  o.progress = &progress;
  Result<BackupResult> r = Status::internal("not run");
  {
    ProgressLine line([&](double secs) {
      const double done = static_cast<double>(progress.bytes_done), total = static_cast<double>(progress.bytes_total);
      char buf[256];
      std::snprintf(buf, sizeof buf, "%s / %s%s  %llu/%llu files  %s/s read  ETA %s", human_bytes(done).c_str(),
                    human_bytes(total).c_str(), progress.walk_done ? "" : "+",
                    static_cast<unsigned long long>(progress.files_done.load()),
                    static_cast<unsigned long long>(progress.files_total.load()),
                    human_bytes(static_cast<double>(progress.bytes_read) / std::max(secs, 0.001)).c_str(),
                    progress.walk_done ? eta(done, total, secs).c_str() : "--:--");
      return std::string(buf);
    });
    r = run_backup(**repo, o);
  }
  if (!r.is_ok()) return fail("backup " + st.path, r.status());
  const auto& m = r->manifest;
  if (st.json) {
    // "id" as in backup ls; "snapshot" kept for scripts written before.
    json j = {{"id", r->snapshot_id.hex()},     {"snapshot", r->snapshot_id.hex()}, {"name", m.volume},  {"hostname", m.hostname},
              {"time", format_rfc3339_ns(m.time_ns)}, {"parent", m.parent ? json(m.parent->hex()) : json(nullptr)},
              {"stats", stats_json(m.stats)},      {"warnings", r->warnings}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "snapshot " << r->snapshot_id.hex().substr(0, 12) << " of " << m.volume << " saved: " << m.stats.files
              << " files, " << human_bytes(static_cast<double>(m.stats.bytes)) << " ("
              << human_bytes(static_cast<double>(m.stats.bytes_read)) << " read, "
              << human_bytes(static_cast<double>(m.stats.bytes_matched)) << " of it unchanged in place, "
              << human_bytes(static_cast<double>(m.stats.new_bytes)) << " new, "
              << human_bytes(static_cast<double>(m.stats.stored_bytes)) << " stored)\n";
  }
  return 0;
}

int cmd_ls(const BackupCliState& st) {
  auto repo = open_repo(st.repo);
  if (!repo.is_ok()) return fail("backup ls", repo.status());
  auto snaps = repo_util::scan_snapshots(**repo);
  if (!snaps.is_ok()) return fail("backup ls", snaps.status());
  warn_unreadable(*snaps);
  json out = json::array();
  if (!st.json) std::printf("%-12s  %-30s  %-20s  %-16s  %10s  %s\n", "ID", "TIME", "NAME", "HOST", "SIZE", "TAGS");
  for (const auto& s : snaps->readable) {
    const auto& m = s.manifest;
    if (!st.name.empty() && m.volume != st.name) continue;
    if (st.json) {
      out.push_back({{"id", s.id.hex()},
                     {"time", format_rfc3339_ns(m.time_ns)},
                     {"time_ns", m.time_ns},
                     {"name", m.volume},
                     {"hostname", m.hostname},
                     {"source_path", m.source_path},
                     {"tags", m.tags},
                     {"parent", m.parent ? json(m.parent->hex()) : json(nullptr)},
                     {"stats", stats_json(m.stats)}});
    } else {
      std::string tags;
      for (const auto& t : m.tags) tags += (tags.empty() ? "" : ",") + t;
      std::printf("%-12s  %-30s  %-20s  %-16s  %10s  %s\n", s.id.hex().substr(0, 12).c_str(),
                  format_rfc3339_ns(m.time_ns).c_str(), m.volume.c_str(), m.hostname.c_str(),
                  human_bytes(static_cast<double>(m.stats.bytes)).c_str(), tags.c_str());
    }
  }
  if (st.json) std::cout << out.dump(2) << "\n";
  return 0;
}

int cmd_restore(const BackupCliState& st) {
  auto repo = open_repo(st.repo);
  if (!repo.is_ok()) return fail("restore", repo.status());
  auto all = repo_util::scan_snapshots(**repo);
  if (!all.is_ok()) return fail("restore " + st.snapshot, all.status());
  if (st.snapshot == "latest") warn_unreadable(*all);  // one of them may be newer
  auto snap = repo_util::resolve_snapshot(*all, st.snapshot, st.name);
  if (!snap.is_ok()) return fail("restore " + st.snapshot, snap.status());
  RestoreOptions o;
  o.target = st.target;
  o.overwrite = st.overwrite;
  o.workers = st.workers;
  RestoreProgress progress;
  o.progress = &progress;
  Result<RestoreResult> r = Status::internal("not run");
  {
    ProgressLine line([&](double secs) {
      const double done = static_cast<double>(progress.bytes_written), total = static_cast<double>(progress.bytes_total);
      return human_bytes(done) + " / " + human_bytes(total) + "  " + human_bytes(done / std::max(secs, 0.001)) +
             "/s  ETA " + eta(done, total, secs);
    });
    r = run_restore(**repo, snap->id, o);
  }
  if (!r.is_ok()) return fail("restore " + snap->id.hex().substr(0, 12) + " to " + st.target, r.status());
  if (st.json) {
    std::cout << json{{"snapshot", snap->id.hex()}, {"target", st.target}, {"files", r->files},
                      {"dirs", r->dirs},             {"symlinks", r->symlinks}, {"bytes_written", r->bytes_written},
                      {"files_direct", r->files_direct}, {"warnings", r->warnings}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << "restored snapshot " << snap->id.hex().substr(0, 12) << " to " << st.target << ": " << r->files
              << " files, " << r->dirs << " dirs, " << human_bytes(static_cast<double>(r->bytes_written)) << "\n";
  }
  return 0;
}

int cmd_forget(const BackupCliState& st) {
  auto repo = open_repo(st.repo);
  if (!repo.is_ok()) return fail("forget", repo.status());
  ForgetOptions o;
  o.policy = {st.keep_last, st.keep_hourly, st.keep_daily, st.keep_weekly, st.keep_monthly, st.keep_yearly, st.keep_tags};
  o.name = st.name;
  o.dry_run = st.dry_run;
  o.snapshots = st.forget_ids;
  auto r = run_forget(**repo, o);
  if (!r.is_ok()) return fail("forget", r.status());
  json keep = json::array(), remove = json::array();
  for (const auto& d : *r) {
    json entry = {{"id", d.id.hex()}, {"name", d.manifest.volume}};
    if (d.unreadable) entry["unreadable"] = true;
    if (d.keep) {
      entry["reasons"] = d.reasons;
      keep.push_back(std::move(entry));
    } else {
      remove.push_back(std::move(entry));
    }
    if (!st.json) {
      std::string why;
      for (const auto& x : d.reasons) why += (why.empty() ? "" : ",") + x;
      std::printf("%-6s %s  %s  %s  %s\n", d.keep ? "keep" : (st.dry_run ? "would" : "forget"),
                  d.id.hex().substr(0, 12).c_str(),
                  d.unreadable ? "(manifest unreadable)" : format_rfc3339_ns(d.manifest.time_ns).c_str(),
                  d.manifest.volume.c_str(), why.c_str());
    }
  }
  if (st.json) std::cout << json{{"dry_run", st.dry_run}, {"keep", keep}, {"remove", remove}}.dump(2) << "\n";
  return 0;
}

int cmd_prune(const BackupCliState& st) {
  auto repo = open_repo(st.repo);
  if (!repo.is_ok()) return fail("prune", repo.status());
  auto grace = parse_duration_ns(st.grace);
  if (!grace.is_ok()) return fail("prune --grace", grace.status());
  PruneOptions o;
  o.grace_ns = *grace;
  o.dry_run = st.dry_run;
  auto r = run_prune(**repo, o);
  if (!r.is_ok()) return fail("prune", r.status());
  json lost = json::array();
  for (const auto& p : r->lost_packs) {
    lost.push_back(p.hex());
    std::cerr << "stowctl: prune: pack " << p.hex() << " is missing from the store: "
              << (st.dry_run ? "would drop" : "dropped") << " its index entries (the next backup stores that data again)\n";
  }
  json kept = json::array();
  for (const auto& p : r->unindexed_kept) {
    kept.push_back(p.hex());
    std::cerr << "stowctl: prune: pack " << p.hex()
              << " is in no index file but holds data snapshots use: kept; "
                 "'stowctl check --repair' indexes it\n";
  }
  if (st.json) {
    std::cout << json{{"packs_marked", r->packs_marked},       {"packs_deleted", r->packs_deleted},
                      {"bytes_deleted", r->bytes_deleted},     {"packs_rescued", r->packs_rescued},
                      {"marks_pending", r->marks_pending},     {"index_files_rewritten", r->index_files_rewritten},
                      {"index_files_removed", r->index_files_removed},
                      {"packs_partly_used", r->packs_partly_used}, {"lost_packs", lost},
                      {"unindexed_kept", kept}}
                     .dump(2)
              << "\n";
  } else {
    if (st.dry_run) std::cout << "dry run, nothing changed: ";
    std::cout << (st.dry_run ? "would delete " : "deleted ") << r->packs_deleted << " packs ("
              << human_bytes(static_cast<double>(r->bytes_deleted)) << "), " << (st.dry_run ? "would mark " : "marked ")
              << r->packs_marked << " unreferenced packs for deletion after " << st.grace << ", " << r->marks_pending
              << " earlier marks still in their grace period\n";
  }
  return 0;
}

int cmd_check(const BackupCliState& st) {
  auto repo = open_repo(st.repo);
  if (!repo.is_ok()) return fail("check", repo.status());
  auto r = run_check(**repo, {.read_data = st.read_data, .repair = st.repair});
  if (!r.is_ok()) return fail("check", r.status());
  if (st.json) {
    json damaged = json::array();
    for (const auto& d : r->damaged) damaged.push_back({{"snapshot", d.snapshot.hex()}, {"path", d.path}, {"problem", d.problem}});
    json packs = json::array(), unindexed = json::array(), indexed = json::array();
    for (const auto& p : r->damaged_packs) packs.push_back(p.hex());
    for (const auto& p : r->packs_unindexed) unindexed.push_back(p.hex());
    for (const auto& p : r->packs_indexed) indexed.push_back(p.hex());
    std::cout << json{{"ok", r->ok()},          {"snapshots", r->snapshots}, {"packs", r->packs},
                      {"blobs", r->blobs},      {"blobs_read", r->blobs_read}, {"errors", r->errors},
                      {"warnings", r->warnings}, {"damaged_packs", packs},  {"damaged", damaged},
                      {"packs_unindexed", unindexed}, {"packs_salvaged", r->packs_salvaged},
                      {"packs_indexed", indexed}}
                     .dump(2)
              << "\n";
  } else {
    for (const auto& p : r->packs_unindexed) {
      std::cout << "repaired: pack " << p.hex() << " taken out of the index (the next backup stores its data again)\n";
    }
    if (r->packs_salvaged) std::cout << "repaired: intact blobs copied into " << r->packs_salvaged << " new packs\n";
    for (const auto& p : r->packs_indexed) std::cout << "repaired: pack " << p.hex() << " indexed from its header\n";
    for (const auto& w : r->warnings) std::cout << "warning: " << w << "\n";
    for (const auto& e : r->errors) std::cout << "error: " << e << "\n";
    std::cout << (r->ok() ? "no errors" : std::to_string(r->errors.size()) + " errors") << " in " << r->snapshots
              << " snapshots, " << r->packs << " packs, " << r->blobs << " blobs"
              << (st.read_data ? " (" + std::to_string(r->blobs_read) + " blobs read)" : "") << "\n";
  }
  if (!r->ok()) {
    std::cerr << "stowctl: check found " << r->errors.size() << " errors\n";
    return 1;
  }
  return 0;
}

// No envname("STOWAGE_REPOSITORY") here: every subcommand has its own --repo
// bound to st.repo, and CLI11 applies an option's environment variable even
// when another subcommand's --repo was given, overwriting it. The variable is
// read once, after parsing, in run_backup_command().
CLI::Option* repo_option(CLI::App* cmd, BackupCliState& st) {
  return cmd->add_option("--repo,-r", st.repo,
                         "Repository: a local directory (a path, or file:///abs/path) or s3://bucket/prefix; "
                         "default: $STOWAGE_REPOSITORY");
}

}  // namespace

void add_backup_commands(CLI::App& app, BackupCliState& st) {
  auto* repo = app.add_subcommand("repo", "Create backup repositories");
  repo->require_subcommand(1);
  st.init = repo->add_subcommand("init", "Create a repository at --repo");
  repo_option(st.init, st);
  st.init->add_flag("--json", st.json, "Print JSON for scripts");

  auto* backup = app.add_subcommand("backup", "Back up directories and list snapshots (no daemon needed)");
  backup->require_subcommand(1);
  st.create = backup->add_subcommand("create", "Back up a directory into a new snapshot");
  // No ExistingDirectory check: stowctl sends a volume name (no '/', not a
  // directory here) to the daemon instead.
  st.create->add_option("path", st.path, "Directory to back up, or the name of a stowaged volume")->required();
  repo_option(st.create, st);
  st.create->add_option("--tag", st.tags, "Tag for the snapshot (repeatable)")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            if (v.empty()) return "a tag cannot be empty";
            for (unsigned char c : v) {
              if (c < 0x20 || c == 0x7f || c == ',') return "a tag cannot hold control characters or ','";
            }
            return "";
          },
          "TAG"));
  st.create->add_option("--name", st.name, "Source name (default: the directory's name)");
  st.create->add_option("--host", st.host, "Host name to record (default: this host)");
  st.create->add_flag("--no-parent", st.no_parent, "Read every file instead of skipping unchanged ones");
  st.create->add_option("--compression-level", st.compression_level,
                        "zstd level for new data, " + std::to_string(ZSTD_minCLevel()) + " to " +
                            std::to_string(ZSTD_maxCLevel()) + " (default: the repository's; negative = faster)")
      ->check(CLI::Range(ZSTD_minCLevel(), ZSTD_maxCLevel()));
  st.create->add_option("--workers", st.workers, "Files read and chunked in parallel (default: 4 per core)");
  st.create->add_flag("--json", st.json, "Print JSON for scripts");
  st.ls = backup->add_subcommand("ls", "List snapshots");
  repo_option(st.ls, st);
  st.ls->add_option("--name", st.name, "Only snapshots of this source");
  st.ls->add_flag("--json", st.json, "Print JSON for scripts");

  st.restore = app.add_subcommand("restore", "Restore a snapshot into an empty directory; it ends with the files on the disk (syncfs)");
  st.restore->add_option("snapshot", st.snapshot, "Snapshot id (a unique prefix) or 'latest'")->required();
  st.restore->add_option("--to", st.target, "Target directory (created if missing), or the name of a stowaged volume")->required();
  repo_option(st.restore, st);
  st.restore->add_option("--name", st.name, "With 'latest': the newest snapshot of this source");
  st.restore->add_flag("--overwrite", st.overwrite,
                       "Restore into a non-empty directory, replacing entries the snapshot has (symlinks are replaced, never followed)");
  st.restore->add_option("--workers", st.workers, "Packs fetched in parallel (default: 2 per core)");
  st.restore->add_flag("--json", st.json, "Print JSON for scripts");

  st.forget = app.add_subcommand(
      "forget", "Remove snapshots by retention policy, or the ones named (data stays until prune)");
  st.forget->add_option("snapshot", st.forget_ids,
                        "Snapshot ids (unique prefixes) to forget instead of a policy; also removes a manifest "
                        "that cannot be read");
  repo_option(st.forget, st);
  // CLI11's PositiveNumber names its range as 0 to 1.8e308; say it plainly.
  // A transform, not a check: the number is written back in plain decimal,
  // or CLI11's own conversion would read "010" as octal 8.
  const CLI::Validator at_least_one(
      [](std::string& v) -> std::string {
        int n = 0;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec != std::errc() || end != v.data() + v.size() || n < 1) {
          return "must be a whole decimal number of at least 1, got '" + v + "'";
        }
        v = std::to_string(n);
        return "";
      },
      "N>=1");
  auto keep = [&](const char* flag, int& count, const char* what) {
    st.forget->add_option(flag, count, what)->transform(at_least_one);
  };
  keep("--keep-last", st.keep_last, "Keep the N newest snapshots");
  keep("--keep-hourly", st.keep_hourly, "Keep the newest snapshot of each of the last N hours");
  keep("--keep-daily", st.keep_daily, "… of each of the last N days (UTC)");
  keep("--keep-weekly", st.keep_weekly, "… of each of the last N ISO weeks");
  keep("--keep-monthly", st.keep_monthly, "… of each of the last N months");
  keep("--keep-yearly", st.keep_yearly, "… of each of the last N years");
  st.forget->add_option("--keep-tag", st.keep_tags, "Keep every snapshot with this tag (repeatable)");
  st.forget->add_option("--name", st.name, "Only snapshots of this source");
  st.forget->add_flag("--dry-run,-n", st.dry_run, "Only show what would be forgotten");
  st.forget->add_flag("--json", st.json, "Print JSON for scripts");

  st.prune = app.add_subcommand("prune", "Delete data no snapshot needs (two-phase, safe during backups)");
  repo_option(st.prune, st);
  st.prune->add_option("--grace", st.grace, "Age a mark must reach before its packs are deleted (e.g. 24h, 7d)")
      ->capture_default_str();
  st.prune->add_flag("--dry-run,-n", st.dry_run, "Only count");
  st.prune->add_flag("--json", st.json, "Print JSON for scripts");

  st.check = app.add_subcommand("check", "Verify the repository's structure (and with --read-data every blob)");
  repo_option(st.check, st);
  st.check->add_flag("--read-data", st.read_data, "Download, decompress and hash every blob");
  st.check->add_flag("--repair", st.repair,
                     "Take damaged packs out of the index so the next backup stores their data again "
                     "(snapshots that used damaged data stay damaged until it is backed up again), and index the "
                     "intact packs no index file lists (after an index file was lost)");
  st.check->add_flag("--json", st.json, "Print JSON for scripts");
}

std::optional<int> run_backup_command(const BackupCliState& parsed) {
  BackupCliState st = parsed;
  if (st.repo.empty()) {
    if (const char* env = std::getenv("STOWAGE_REPOSITORY")) st.repo = env;  // an explicit --repo wins
  }
  // A plain path, as restic takes it: a local repository, relative to here.
  // Anything that starts like a URL scheme ("s3:", "file:") stays a URL, to be
  // refused if malformed rather than taken for a directory ("./a:b" is one).
  const size_t colon = st.repo.find(':');
  const bool url_like = colon != std::string::npos && colon > 0 &&
                        std::isalpha(static_cast<unsigned char>(st.repo[0])) &&
                        st.repo.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-") ==
                            colon;
  if (!st.repo.empty() && !url_like) {
    std::error_code ec;
    const auto abs = std::filesystem::absolute(st.repo, ec);
    if (ec) return fail("--repo " + st.repo, Status::invalid_argument("cannot make the path absolute: " + ec.message()));
    st.repo = "file://" + abs.lexically_normal().string();
  }
  if (st.init && st.init->parsed()) return cmd_init(st);
  if (st.create && st.create->parsed()) return cmd_create(st);
  if (st.ls && st.ls->parsed()) return cmd_ls(st);
  if (st.restore && st.restore->parsed()) return cmd_restore(st);
  if (st.forget && st.forget->parsed()) return cmd_forget(st);
  if (st.prune && st.prune->parsed()) return cmd_prune(st);
  if (st.check && st.check->parsed()) return cmd_check(st);
  return std::nullopt;
}

}  // namespace stowage
