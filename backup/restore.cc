#include "stowage/restore.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>

#include "bounded_queue.h"
#include "fs_util.h"
#include "repo_util.h"
#include "stowage/aligned.h"
#include "stowage/blob.h"
#include "stowage/durable.h"
#include "stowage/pack.h"
#include "stowage/snapshot_manifest.h"
#include "stowage/tree.h"

namespace stowage {
namespace {

using fs_util::Fd;

constexpr int kMaxDepth = 4096;
// Blobs of one pack closer than this are fetched with one GET (reading a
// small gap costs less than another request).
constexpr uint64_t kCoalesceGap = 256 * 1024;
constexpr uint64_t kMaxRange = 4u << 20;  // bounds a fetcher's buffer
constexpr size_t kFdCache = 64;           // open files kept per fetcher
// Files with at least this much data are written with O_DIRECT (see
// DirectFile), in blocks of kBlock; smaller ones through the page cache.
constexpr uint64_t kDirectMin = 1 << 20;
constexpr uint64_t kBlock = 4096;
constexpr uint64_t kDirectRun = 2u << 20;  // bytes per direct write, at most

// Nanoseconds since the epoch as a timespec: seconds rounded down, so that
// tv_nsec is in [0, 1e9) also before 1970 (utimensat refuses a negative one).
timespec timespec_of(int64_t ns) {
  constexpr int64_t kSec = 1'000'000'000;
  int64_t secs = ns / kSec, rest = ns % kSec;
  if (rest < 0) {
    --secs;
    rest += kSec;
  }
  return {static_cast<time_t>(secs), static_cast<long>(rest)};
}

struct DirRec {
  size_t parent = 0;  // index into dirs_; the root is its own parent
  std::string name;
  TreeEntry meta;  // chunks/subtree dropped
};

// `n` bytes aligned to kBlock, as O_DIRECT needs; zeroed if `zero`.
AlignedBytes block_aligned(size_t n, bool zero = false) {
  AlignedBytes p = aligned_bytes(kBlock, n);
  if (p == nullptr) throw std::bad_alloc();
  if (zero) std::memset(p.get(), 0, n);
  return p;
}

// A file written with O_DIRECT. Through the page cache, the data reaches the
// disk only at writeback, which on the machines measured ran at a third of
// the rate of direct writes (3 GiB: 10.4 s buffered + fdatasync, 3.3 s
// O_DIRECT), and a restore had to end with seconds of flushing; it also
// filled the page cache with data nobody reads, evicting the host's. Direct
// writes go to the disk as they are made, while other blobs are decoded.
//
// O_DIRECT writes whole aligned blocks, but chunks start and end anywhere,
// and a block's pieces arrive from different packs on different fetchers.
// Each fetcher writes the whole blocks of its run (OpenFiles::DirectRun) at
// once; the bytes of a block it only partly covers are collected here until
// the block's data is complete, and the run that completes it writes it with
// its own blocks (one write, not three: a run's edges are cut by chunk
// boundaries wherever consecutive chunks lie in different packs, as after an
// incremental backup, and thousands of separate 4 KiB writes cost a restore
// seconds on a disk with 0.1-0.5 ms per request). Those blocks are held
// within RestoreOptions::partial_block_memory; past it a block's pieces are
// merged on the disk instead (read, modify, write under the file's lock;
// only `on_disk` counts remain in memory). Every write of the
// file is direct: buffered writes beside direct ones in the same file could
// meet in one page-cache folio. The last block may be written past the
// file's size; the size is set again once all data is written.
struct DirectFile {
  struct Block {
    AlignedBytes bytes;  // kBlock, zeroed: hole bytes in it stay zero
    uint64_t filled = 0;
  };
  std::mutex mu;
  std::unordered_map<uint64_t, Block> partial;     // by block number
  std::unordered_map<uint64_t, uint64_t> on_disk;  // block number → data bytes written
};

// A file whose chunks all lie in one pack: the fetcher of that pack creates
// it and sets its metadata once the last chunk is written. A small file then
// costs one open, not three (create, write, set metadata), and that work runs
// on the fetchers in parallel instead of on the planner before them and a
// metadata pass after them (31,000 small files: about a second).
struct FetcherMade {
  TreeEntry meta;  // without chunks and holes
  size_t chunks_left = 0;
  bool sparse = false;  // its size is set when it is created
  bool created = false;
};

// A range of a file's data (its content minus holes): where it lies in the
// file and where in the data stream, which its chunks cut.
struct DataRange {
  uint64_t offset = 0;  // in the file
  uint64_t length = 0;
  uint64_t stream = 0;  // data bytes before it
};

std::vector<DataRange> stream_ranges(uint64_t size, const std::vector<Hole>& holes) {
  std::vector<DataRange> out;
  uint64_t stream = 0;
  for (const auto& r : fs_util::data_ranges(size, holes)) {
    out.push_back({r.offset, r.length, stream});
    stream += r.length;
  }
  return out;
}

struct FileRec {
  size_t dir = 0;
  std::string name;
  std::vector<DataRange> data;  // ascending, none empty
  uint64_t size = 0;
  std::unique_ptr<DirectFile> direct;  // null: written through the page cache
  // Set while the fetcher is to make the file; null for a file the planner
  // created, whose metadata the metadata pass sets.
  std::unique_ptr<FetcherMade> fetcher_made;
};

// Data bytes of a file (its data ranges) in block `b`.
uint64_t data_in_block(const std::vector<DataRange>& ranges, uint64_t b) {
  const uint64_t lo = b * kBlock, hi = lo + kBlock;
  auto it = std::partition_point(ranges.begin(), ranges.end(),
                                 [&](const DataRange& r) { return r.offset + r.length <= lo; });
  uint64_t n = 0;
  for (; it != ranges.end() && it->offset < hi; ++it) n += std::min(hi, it->offset + it->length) - std::max(lo, it->offset);
  return n;
}

struct OtherRec {  // anything but a directory, for the metadata pass
  size_t dir = 0;
  TreeEntry meta;
};

struct LinkRec {
  size_t dir = 0;
  std::string name;
  size_t leader_dir = 0;
  std::string leader_name;
};

struct WriteOp {
  uint32_t offset = 0;  // in the pack
  uint32_t stored_length = 0;
  uint32_t raw_length = 0;
  Compression compression = Compression::kRaw;
  BlobId id;
  size_t file = 0;
  uint64_t data_offset = 0;  // in the file's data stream (content minus holes)
};

// Calls fn(file_offset, offset_in_piece, length) for each file range that
// bytes [pos, pos+len) of a file's data stream (content minus holes) occupy.
// Stops at fn's first error. *mapped (less than len if the data runs past the
// file's data ranges) counts the bytes handed to fn. Finds the first range by
// bisection: a chunk of a file with many holes costs the ranges it covers,
// not all those before it.
template <typename Fn>
Status map_data(const std::vector<DataRange>& ranges, uint64_t pos, uint64_t len, uint64_t* mapped, Fn&& fn) {
  uint64_t done = 0;
  auto it = std::partition_point(ranges.begin(), ranges.end(),
                                 [&](const DataRange& r) { return r.stream + r.length <= pos; });
  for (; it != ranges.end() && done < len; ++it) {
    const uint64_t in = pos - it->stream;  // 0 after the first range
    const uint64_t n = std::min<uint64_t>(it->length - in, len - done);
    STOWAGE_RETURN_IF_ERROR(fn(it->offset + in, done, n));
    done += n;
    pos += n;
  }
  *mapped = done;
  return Status::ok();
}

Status pwrite_all(int fd, std::string_view piece, uint64_t off) {
  while (!piece.empty()) {
    const ssize_t w = ::pwrite(fd, piece.data(), piece.size(), static_cast<off_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno_status(errno, "write");
    }
    piece.remove_prefix(static_cast<size_t>(w));
    off += static_cast<uint64_t>(w);
  }
  return Status::ok();
}

// Opens `rel` beneath `root` read-only without following any symlink; -1 when
// it cannot (missing, a symlink on the way, or openat2 unsupported).
int open_beneath(int root, const std::string& rel) {
  open_how how{};
  how.flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, root, rel.c_str(), &how, sizeof how));
}

// Loads and parses the snapshot's tree blobs on a thread of its own, in the
// order the planner asks for them (depth first, a directory's entries in
// order: that of Restorer::plan_dir), up to kAhead directories ahead. The
// planner, which creates entries one at a time, then rarely waits for a
// tree to be read, decompressed, hashed and parsed. Errors are handed over
// in order, so the planner meets them where it would have loaded that tree.
class TreePrefetcher {
 public:
  TreePrefetcher(Repository& repo, const Index& index, std::vector<BlobId> root)
      : repo_(repo), index_(index), queue_(kAhead), thread_([this, root = std::move(root)] {
          visit(root);
          queue_.close();
        }) {}
  ~TreePrefetcher() {
    queue_.close();  // unblocks a push; the thread then stops
    thread_.join();
  }
  TreePrefetcher(const TreePrefetcher&) = delete;
  TreePrefetcher& operator=(const TreePrefetcher&) = delete;

  // The entries of the next directory, which must be `subtree`.
  Result<std::vector<TreeEntry>> next(const std::vector<BlobId>& subtree) {
    Item item;
    if (!queue_.pop(item)) return Status::internal("tree prefetch ended early");
    if (item.ids != subtree) return Status::internal("tree prefetch out of order");
    return std::move(item.entries);
  }

 private:
  static constexpr size_t kAhead = 16;
  struct Item {
    std::vector<BlobId> ids;
    Result<std::vector<TreeEntry>> entries = Status::internal("empty");
  };

  // Depth first without recursion (trees nest up to kMaxDepth: recursion
  // overflowed the stack). Stops once the planner will ask for nothing more
  // (an error was handed over, or the prefetcher is being destroyed).
  void visit(const std::vector<BlobId>& root) {
    std::vector<std::pair<std::vector<std::vector<BlobId>>, size_t>> stack;  // subdirectories, next one
    // Hands one directory over; false to stop.
    auto load = [&](const std::vector<BlobId>& ids) {
      Item item{ids, repo_util::load_dir(repo_, index_, codec_, ids)};
      const bool ok = item.entries.is_ok();
      std::vector<std::vector<BlobId>> subdirs;
      if (ok) {
        for (const auto& e : *item.entries) {
          if (e.type == NodeType::kDir) subdirs.push_back(e.subtree);
        }
      }
      if (!queue_.push(std::move(item)) || !ok) return false;
      stack.emplace_back(std::move(subdirs), 0);
      return true;
    };
    if (!load(root)) return;
    while (!stack.empty()) {
      auto& [subdirs, next] = stack.back();
      if (next == subdirs.size()) {
        stack.pop_back();
        continue;
      }
      const std::vector<BlobId> ids = std::move(subdirs[next++]);
      // The planner refuses deeper trees before it asks for them.
      if (stack.size() > kMaxDepth || !load(ids)) return;
    }
  }

  Repository& repo_;
  const Index& index_;
  BlobCodec codec_;
  BoundedQueue<Item> queue_;
  std::thread thread_;  // last: starts once the members it uses exist
};

class Restorer {
 public:
  Restorer(Repository& repo, const RestoreOptions& opts) : repo_(repo), opts_(opts) {
    progress_ = opts.progress ? opts.progress : &own_progress_;
  }
  Result<RestoreResult> run(const Hash256& id);
  // True once run() has made the target directory itself (it did not exist).
  bool created_target() const { return created_target_; }

 private:
  void warn(const std::string& line) {
    std::lock_guard lk(mu_);
    result_.warnings.push_back(line);
    const std::string msg = "level=warn component=restore msg=\"" + line + "\"";
    if (opts_.log) {
      opts_.log(msg);
    } else {
      stderr_log_sink()(msg);
    }
  }
  // The names from the root down to `dir` (none for the root). Made when
  // needed rather than kept per directory: at the depth limit a copy per
  // directory would hold 4096²/2 names.
  std::vector<std::string> components(size_t dir) const {
    std::vector<std::string> names;
    for (size_t d = dir; d != 0; d = dirs_[d].parent) names.push_back(dirs_[d].name);
    std::reverse(names.begin(), names.end());
    return names;
  }
  std::string where(size_t dir) const { return repo_util::display_path(components(dir)); }
  std::string where(size_t dir, const std::string& name) const {
    auto p = components(dir);
    p.push_back(name);
    return repo_util::display_path(p);
  }

  // A directory created (or reused) and opened, its entries still to plan.
  struct OpenedDir {
    Fd fd;
    size_t dir = 0;  // index into dirs_
    std::vector<BlobId> subtree;
  };
  Status plan_tree(int rootfd, const std::vector<BlobId>& root);
  // Creates `e` in directory `dir` (open as `dirfd`); for a directory,
  // returns it opened, for plan_tree() to plan its entries.
  Result<std::optional<OpenedDir>> create_entry(int dirfd, size_t dir, TreeEntry& e);
  Status make_room(int dirfd, size_t dir, const std::string& name, bool want_dir, bool* exists_as_dir);
  Result<int> open_dir(size_t dir);  // a new fd for dirs_[dir], opened component by component
  // The last directory opened through it, kept open: consecutive entries of
  // one directory (the usual order) open it once, not component by component
  // each time.
  struct DirCursor {
    size_t dir = SIZE_MAX;
    Fd fd;
  };
  Result<int> dir_fd(size_t dir, DirCursor& cursor);  // owned by `cursor`
  // For the single-threaded final passes: the directories from the root down
  // to the last one opened, all kept open, so the next directory costs only
  // the opens below the deepest ancestor the two share. Visiting directories
  // in (reverse) creation order then opens each about once, instead of
  // component by component from the root each time (4096²/2 opens for a
  // chain at the depth limit). Holds one descriptor per level, as planning
  // does.
  struct DirChain {
    std::vector<std::pair<size_t, Fd>> open;  // (dir, its fd), from the root's child down
  };
  Result<int> chain_fd(size_t dir, DirChain& chain);  // owned by `chain`
  // A fetcher's open files: the kFdCache most recently written stay open, so
  // a large file whose blobs are spread over many packs is not reopened for
  // each one while many small files pass through.
  struct OpenFiles {
    struct Slot {
      Fd fd;
      uint64_t used = 0;
    };
    std::unordered_map<size_t, Slot> open;  // by index into files_
    uint64_t clock = 0;
    DirCursor dir;
    // Consecutive bytes of one DirectFile, collected across the blobs of a
    // pack (a backup packs a file's chunks in order) and written with one
    // call: direct writes are synchronous, and one per 64 KiB chunk made
    // restores slower than through the page cache. bytes[i] is file offset
    // `block_start + i`, so whole blocks are aligned in memory as they are.
    struct DirectRun {
      size_t file = SIZE_MAX;  // none
      uint64_t block_start = 0, begin = 0, end = 0;  // file offsets
      AlignedBytes bytes;
    } run;
  };
  // Opens files_[file] for writing (O_DIRECT for a DirectFile), or returns
  // the fetcher's open fd for it.
  Result<int> file_fd(size_t file, OpenFiles& files);
  Status fetch_pack(const PackId& pack, std::vector<WriteOp>& ops, BlobCodec& codec, OpenFiles& files);
  Status write_blob(const WriteOp& op, std::string_view plain, OpenFiles& files);
  // Adds `piece` at file offset `off` of DirectFile `file` to the fetcher's
  // run, writing the run first if the piece does not continue it.
  Status add_direct(size_t file, std::string_view piece, uint64_t off, OpenFiles& files);
  // Writes the run's blocks with one call: its whole blocks, and its first
  // and last block where other runs' bytes already complete them; the bytes
  // of a first or last block still incomplete go to the DirectFile.
  Status write_run(OpenFiles& files);
  // Adds bytes [from, to) of the run, which lie in one block of `f` (open
  // as `fd`), to that block: see DirectFile. True if they complete it: the
  // block's other bytes are then in the run's buffer too, for write_run.
  Result<bool> add_partial(const FileRec& f, int fd, OpenFiles::DirectRun& run, uint64_t from, uint64_t to);
  // Whether files on the target's filesystem can be written with O_DIRECT in
  // kBlock units (asked once, of the open file `fd`).
  bool direct_io_works(int fd);
  // After the fetchers: every file the fetchers were to make was made, every
  // DirectFile's blocks were all written, and its size is set again where
  // the last block went past it.
  Status finish_files();
  Status apply_meta(int dirfd, const std::string& name, const TreeEntry& e, int fd);
  // The regular file at the same path under opts.reuse_from, or an invalid Fd.
  Fd open_reusable(size_t dir, const std::string& name);
  // Copies the chunk at data offset `pos` from `old_fd` into `fd` if the bytes
  // there hash to `id`; false if they do not (or cannot be read).
  Result<bool> reuse_chunk(int old_fd, int fd, const std::vector<DataRange>& ranges, uint64_t pos, uint32_t len,
                           const BlobId& id);

  Repository& repo_;
  const RestoreOptions& opts_;
  RestoreProgress own_progress_;
  RestoreProgress* progress_;
  Index index_;
  Fd root_;
  Fd reuse_root_;
  bool as_root_ = ::geteuid() == 0;
  bool created_target_ = false;
  std::optional<bool> direct_io_;  // see direct_io_works()
  std::atomic<uint64_t> partial_bytes_{0};  // held in DirectFile::partial

  std::mutex mu_;
  RestoreResult result_;
  std::vector<DirRec> dirs_;
  std::vector<FileRec> files_;
  std::vector<OtherRec> others_;
  std::vector<LinkRec> links_;
  // Hard link group → its first member: where it is and what it holds (the
  // other members must hold the same, or the tree is corrupt).
  struct LinkLeader {
    size_t dir = 0;
    std::string name;
    uint64_t size = 0;
    std::vector<BlobId> chunks;
    std::vector<Hole> holes;
  };
  std::map<uint64_t, LinkLeader> link_leaders_;
  std::map<PackId, std::vector<WriteOp>> by_pack_;
  std::vector<PackId> pack_order_;  // by_pack_'s keys in the order files first need them
  std::unique_ptr<TreePrefetcher> trees_;  // while planning
};

Status Restorer::make_room(int dirfd, size_t dir, const std::string& name, bool want_dir, bool* exists_as_dir) {
  *exists_as_dir = false;
  // Into an empty target, nothing is in the way: a tree's names are unique
  // (parse_tree), and whatever appeared meanwhile makes the exclusive create
  // of the entry fail.
  if (!opts_.overwrite) return Status::ok();
  struct stat st {};
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Status::ok();
    return errno_status(errno, where(dir, name));
  }
  if (S_ISDIR(st.st_mode)) {
    if (want_dir) {
      *exists_as_dir = true;
      return Status::ok();
    }
    return Status::failed_precondition(where(dir, name) + ": a directory is in the way of a non-directory");
  }
  // Unlinking never follows a symlink: a planted link is removed, not used.
  if (::unlinkat(dirfd, name.c_str(), 0) != 0) return errno_status(errno, "replace " + where(dir, name));
  return Status::ok();
}

Result<std::optional<Restorer::OpenedDir>> Restorer::create_entry(int dirfd, size_t dir, TreeEntry& e) {
  const std::string& name = e.name;
  bool is_dir = false;
  STOWAGE_RETURN_IF_ERROR(make_room(dirfd, dir, name, e.type == NodeType::kDir, &is_dir));
  switch (e.type) {
    case NodeType::kDir: {
      if (!is_dir && ::mkdirat(dirfd, name.c_str(), 0700) != 0) return errno_status(errno, "mkdir " + where(dir, name));
      const int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return errno_status(errno, "open " + where(dir, name));
      Fd sub(fd);
      DirRec rec;
      rec.parent = dir;
      rec.name = name;
      std::vector<BlobId> subtree = std::move(e.subtree);
      rec.meta = std::move(e);
      dirs_.push_back(std::move(rec));
      ++result_.dirs;
      return std::optional<OpenedDir>(OpenedDir{std::move(sub), dirs_.size() - 1, std::move(subtree)});
    }
    case NodeType::kFile: {
      // FORMAT.md §6.2: size = chunk bytes + hole bytes.
      uint64_t data = 0;
      std::optional<PackId> pack;  // while all chunks are in one
      bool one_pack = true;
      for (const auto& c : e.chunks) {
        auto loc = index_.find(c);
        // Whatever its type: a chunk may be a tree's bytes (FORMAT.md §3.3).
        if (!loc) return Status::not_found(where(dir, name) + ": data blob " + c.hex() + " is not in the index");
        data += loc->raw_length;
        if (pack && *pack != loc->pack) one_pack = false;
        pack = loc->pack;
      }
      const uint64_t holes = hole_bytes(e.holes);
      if (data + holes != e.size) {
        return Status::corruption(where(dir, name) + ": size " + std::to_string(e.size) + " != data " +
                                  std::to_string(data) + " + holes " + std::to_string(holes));
      }
      ++result_.files;
      if (e.hardlink != 0) {
        auto it = link_leaders_.find(e.hardlink);
        if (it != link_leaders_.end()) {
          const LinkLeader& l = it->second;
          if (l.size != e.size || l.chunks != e.chunks || l.holes != e.holes) {
            return Status::corruption(where(dir, name) + ": hard link of " + where(l.dir, l.name) +
                                      " (group " + std::to_string(e.hardlink) + ") with other content");
          }
          links_.push_back({dir, name, l.dir, l.name});
          return std::optional<OpenedDir>();
        }
        link_leaders_.emplace(e.hardlink, LinkLeader{dir, name, e.size, e.chunks, e.holes});
      }
      const size_t file = files_.size();
      files_.push_back({dir, name, stream_ranges(e.size, e.holes), e.size, nullptr, nullptr});
      progress_->bytes_total += data;
      progress_->files_total += 1;
      Fd old = open_reusable(dir, name);
      const bool direct_size = opts_.direct_io && data >= kDirectMin;
      std::unique_ptr<FetcherMade> made;
      Fd f;
      if (pack && one_pack && !direct_size && old.get() < 0) {
        made = std::make_unique<FetcherMade>();
        made->chunks_left = e.chunks.size();
        made->sparse = !e.holes.empty();
      } else {
        f = Fd(::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (f.get() < 0) return errno_status(errno, "create " + where(dir, name));
        // Holes stay holes: the size is set first and only data is written.
        if (::ftruncate(f.get(), static_cast<off_t>(e.size)) != 0) {
          return errno_status(errno, "truncate " + where(dir, name));
        }
      }
      // Reused chunks are copied in below through the page cache, so such a
      // file is not direct (see DirectFile).
      if (direct_size && old.get() < 0 && direct_io_works(f.get())) {
        files_[file].direct = std::make_unique<DirectFile>();
        ++result_.files_direct;
        // Allocated blocks let ext4 take concurrent direct writes to one file
        // under a shared lock; into a hole each write holds the inode lock
        // until its I/O completes, which serialized the fetchers. (Where
        // fallocate is not supported the writes are merely serialized.)
        for (const DataRange& r : files_[file].data) {
          if (::fallocate(f.get(), 0, static_cast<off_t>(r.offset), static_cast<off_t>(r.length)) != 0) {
            if (errno == EOPNOTSUPP) break;
            return errno_status(errno, "allocate " + where(dir, name));
          }
        }
      }
      uint64_t off = 0;
      for (const auto& c : e.chunks) {
        auto loc = index_.find(c);
        bool reused = false;
        if (old.get() >= 0) {
          STOWAGE_ASSIGN_OR_RETURN(reused, reuse_chunk(old.get(), f.get(), files_[file].data, off, loc->raw_length, c));
        }
        if (reused) {
          ++result_.blobs_reused;
          result_.bytes_reused += loc->raw_length;
          progress_->bytes_written += loc->raw_length;
        } else {
          auto& ops = by_pack_[loc->pack];
          if (ops.empty()) pack_order_.push_back(loc->pack);
          ops.push_back({loc->offset, loc->stored_length, loc->raw_length, loc->compression, c, file, off});
        }
        off += loc->raw_length;
      }
      e.chunks.clear();
      e.chunk_sums.clear();
      e.holes.clear();
      if (made) {
        made->meta = std::move(e);
        files_[file].fetcher_made = std::move(made);
      } else {
        others_.push_back({dir, std::move(e)});
      }
      return std::optional<OpenedDir>();
    }
    case NodeType::kSymlink:
      if (::symlinkat(e.target.c_str(), dirfd, name.c_str()) != 0) return errno_status(errno, "symlink " + where(dir, name));
      ++result_.symlinks;
      others_.push_back({dir, std::move(e)});
      return std::optional<OpenedDir>();
    case NodeType::kFifo:
    case NodeType::kCharDev:
    case NodeType::kBlockDev: {
      const mode_t type = e.type == NodeType::kFifo ? S_IFIFO : e.type == NodeType::kCharDev ? S_IFCHR : S_IFBLK;
      if (::mknodat(dirfd, name.c_str(), type | 0600, static_cast<dev_t>(e.rdev)) != 0) {
        if (errno == EPERM && e.type != NodeType::kFifo) {
          warn("device node not restored (needs root): " + where(dir, name));
          return std::optional<OpenedDir>();
        }
        return errno_status(errno, "mknod " + where(dir, name));
      }
      ++result_.special;
      others_.push_back({dir, std::move(e)});
      return std::optional<OpenedDir>();
    }
    case NodeType::kSocket:
      warn("socket not restored: " + where(dir, name));
      return std::optional<OpenedDir>();
  }
  return Status::internal("unknown node type");
}

// Depth first, in the order TreePrefetcher reads the trees, without
// recursion (trees nest up to kMaxDepth: recursion overflowed the stack).
// One open directory per level.
Status Restorer::plan_tree(int rootfd, const std::vector<BlobId>& root) {
  struct Level {
    int fd;
    Fd owned;  // closed when the level is done; the root's is not ours
    size_t dir;
    std::vector<TreeEntry> entries;
    size_t next = 0;
  };
  std::vector<Level> stack;
  auto enter = [&](int fd, Fd owned, size_t dir, const std::vector<BlobId>& subtree) -> Status {
    if (stack.size() > kMaxDepth) return Status::corruption(where(dir) + ": nesting deeper than 4096");
    auto entries = trees_->next(subtree);
    if (!entries.is_ok()) return entries.status().with_context(where(dir));
    stack.push_back({fd, std::move(owned), dir, std::move(entries).value()});
    return Status::ok();
  };
  STOWAGE_RETURN_IF_ERROR(enter(rootfd, Fd(), 0, root));
  while (!stack.empty()) {
    Level& top = stack.back();
    if (top.next == top.entries.size()) {
      stack.pop_back();
      continue;
    }
    STOWAGE_ASSIGN_OR_RETURN(auto sub, create_entry(top.fd, top.dir, top.entries[top.next++]));
    if (sub) {
      const int fd = sub->fd.get();
      STOWAGE_RETURN_IF_ERROR(enter(fd, std::move(sub->fd), sub->dir, sub->subtree));
    }
  }
  return Status::ok();
}

Result<int> Restorer::open_dir(size_t dir) {
  std::vector<size_t> chain;
  for (size_t d = dir; d != 0; d = dirs_[d].parent) chain.push_back(d);
  int fd = ::dup(root_.get());
  if (fd < 0) return errno_status(errno, "dup");
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    const int next = ::openat(fd, dirs_[*it].name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    const int err = errno;
    ::close(fd);
    if (next < 0) return errno_status(err, "open " + where(*it));
    fd = next;
  }
  return fd;
}

Result<int> Restorer::chain_fd(size_t dir, DirChain& chain) {
  std::vector<size_t> want;  // dir and its ancestors below the root, root side first
  for (size_t d = dir; d != 0; d = dirs_[d].parent) want.push_back(d);
  std::reverse(want.begin(), want.end());
  size_t keep = 0;
  while (keep < chain.open.size() && keep < want.size() && chain.open[keep].first == want[keep]) ++keep;
  chain.open.erase(chain.open.begin() + static_cast<std::ptrdiff_t>(keep), chain.open.end());
  for (size_t i = keep; i < want.size(); ++i) {
    const int at = i == 0 ? root_.get() : chain.open[i - 1].second.get();
    const int fd = ::openat(at, dirs_[want[i]].name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return errno_status(errno, "open " + where(want[i]));
    chain.open.emplace_back(want[i], Fd(fd));
  }
  return want.empty() ? root_.get() : chain.open.back().second.get();
}

Result<int> Restorer::dir_fd(size_t dir, DirCursor& cursor) {
  if (cursor.dir != dir || cursor.fd.get() < 0) {
    cursor.dir = SIZE_MAX;
    STOWAGE_ASSIGN_OR_RETURN(const int fd, open_dir(dir));
    cursor.fd = Fd(fd);
    cursor.dir = dir;
  }
  return cursor.fd.get();
}

Result<int> Restorer::file_fd(size_t file, OpenFiles& files) {
  FileRec& f = files_[file];
  auto it = files.open.find(file);
  if (it == files.open.end()) {
    if (files.open.size() >= kFdCache) {
      files.open.erase(std::min_element(files.open.begin(), files.open.end(), [](const auto& a, const auto& b) {
        return a.second.used < b.second.used;
      }));
    }
    STOWAGE_ASSIGN_OR_RETURN(const int dfd, dir_fd(f.dir, files.dir));
    FetcherMade* made = f.fetcher_made.get();
    const bool create = made && !made->created;
    const int fd = ::openat(dfd, f.name.c_str(),
                            (f.direct ? O_RDWR | O_DIRECT : O_WRONLY) | (create ? O_CREAT | O_EXCL : 0) | O_NOFOLLOW |
                                O_CLOEXEC,
                            0600);
    if (fd < 0) return errno_status(errno, (create ? "create " : "open ") + where(f.dir, f.name));
    Fd owned(fd);
    if (create) {
      made->created = true;
      // Holes stay holes: data is written around them, and a hole at the
      // end needs the size.
      if (made->sparse && ::ftruncate(fd, static_cast<off_t>(f.size)) != 0) {
        return errno_status(errno, "truncate " + where(f.dir, f.name));
      }
    }
    it = files.open.emplace(file, OpenFiles::Slot{std::move(owned), 0}).first;
  }
  it->second.used = ++files.clock;
  return it->second.fd.get();
}

Status Restorer::write_blob(const WriteOp& op, std::string_view plain, OpenFiles& files) {
  FileRec& f = files_[op.file];
  int fd = -1;
  if (!f.direct) {
    STOWAGE_ASSIGN_OR_RETURN(fd, file_fd(op.file, files));
  }
  // Map the blob's place in the data stream onto file offsets around holes.
  uint64_t mapped = 0;
  STOWAGE_RETURN_IF_ERROR(map_data(f.data, op.data_offset, plain.size(), &mapped,
                                   [&](uint64_t file_off, uint64_t at, uint64_t n) {
                                     const std::string_view piece = plain.substr(at, n);
                                     if (f.direct) return add_direct(op.file, piece, file_off, files);
                                     return pwrite_all(fd, piece, file_off).with_context(where(f.dir, f.name));
                                   }));
  if (mapped != plain.size()) return Status::corruption(where(f.dir, f.name) + ": data runs past the file's size");
  progress_->bytes_written += plain.size();
  if (f.fetcher_made && --f.fetcher_made->chunks_left == 0) {
    // All its data is written: its metadata now, and it is closed.
    STOWAGE_RETURN_IF_ERROR(apply_meta(-1, f.name, f.fetcher_made->meta, fd).with_context(where(f.dir, f.name)));
    files.open.erase(op.file);
    f.fetcher_made.reset();
  }
  return Status::ok();
}

bool Restorer::direct_io_works(int fd) {
  std::lock_guard lk(mu_);
  if (!direct_io_) {
    struct statx stx {};
    direct_io_ = ::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN) &&
                 stx.stx_dio_offset_align != 0 && kBlock % stx.stx_dio_offset_align == 0 &&
                 stx.stx_dio_mem_align != 0 && kBlock % stx.stx_dio_mem_align == 0;
  }
  return *direct_io_;
}

Status Restorer::add_direct(size_t file, std::string_view piece, uint64_t off, OpenFiles& files) {
  OpenFiles::DirectRun& run = files.run;
  while (!piece.empty()) {
    if (run.file != file || run.end != off || run.end - run.block_start == kDirectRun) {
      STOWAGE_RETURN_IF_ERROR(write_run(files));
      if (!run.bytes) run.bytes = block_aligned(kDirectRun);
      run.file = file;
      run.block_start = off / kBlock * kBlock;
      run.begin = run.end = off;
    }
    const uint64_t n = std::min<uint64_t>(piece.size(), kDirectRun - (run.end - run.block_start));
    std::memcpy(run.bytes.get() + (run.end - run.block_start), piece.data(), n);
    run.end += n;
    off += n;
    piece.remove_prefix(n);
  }
  return Status::ok();
}

Status Restorer::write_run(OpenFiles& files) {
  OpenFiles::DirectRun& run = files.run;
  if (run.file == SIZE_MAX) return Status::ok();
  const size_t file = std::exchange(run.file, SIZE_MAX);
  const FileRec& f = files_[file];
  STOWAGE_ASSIGN_OR_RETURN(const int fd, file_fd(file, files));
  // The run's bytes lie in blocks [lo, hi). Its first and last block may
  // hold other runs' bytes too: such a block is written with this run only
  // if this run completes it.
  uint64_t lo = run.block_start;
  uint64_t hi = (run.end + kBlock - 1) / kBlock * kBlock;
  Status s = [&]() -> Status {
    const uint64_t head_end = std::min(run.end, lo + kBlock);
    if (run.begin != lo || head_end != lo + kBlock) {
      STOWAGE_ASSIGN_OR_RETURN(const bool complete, add_partial(f, fd, run, run.begin, head_end));
      if (!complete) lo += kBlock;
    }
    if (hi - run.block_start > kBlock && run.end != hi) {  // a last block apart from the first, partly covered
      STOWAGE_ASSIGN_OR_RETURN(const bool complete, add_partial(f, fd, run, hi - kBlock, run.end));
      if (!complete) hi -= kBlock;
    }
    if (hi <= lo) return Status::ok();
    return pwrite_all(fd, std::string_view(run.bytes.get() + (lo - run.block_start), hi - lo), lo);
  }();
  return s.with_context(where(f.dir, f.name));
}

Result<bool> Restorer::add_partial(const FileRec& f, int fd, OpenFiles::DirectRun& run, uint64_t from, uint64_t to) {
  const uint64_t block = from / kBlock, block_start = block * kBlock, block_end = block_start + kBlock;
  const uint64_t expected = data_in_block(f.data, block);
  char* in_run = run.bytes.get() + (block_start - run.block_start);  // the block's place in the run
  DirectFile& d = *f.direct;
  std::lock_guard lk(d.mu);
  auto cached = d.partial.find(block);
  auto merged = d.on_disk.find(block);
  const bool first = cached == d.partial.end() && merged == d.on_disk.end();
  const uint64_t filled = (first ? 0 : merged != d.on_disk.end() ? merged->second : cached->second.filled) + (to - from);
  if (filled > expected) return Status::internal("block " + std::to_string(block) + " written twice");
  if (filled == expected && merged == d.on_disk.end()) {
    // Complete: the rest of the block joins the run, which writes it. That
    // is what earlier pieces left in memory, zeros where there are none
    // (holes, past the end of the file).
    if (first) {
      std::memset(in_run, 0, from - block_start);
      std::memset(in_run + (to - block_start), 0, block_end - to);
    } else {
      const char* held = cached->second.bytes.get();
      std::memcpy(in_run, held, from - block_start);
      std::memcpy(in_run + (to - block_start), held + (to - block_start), block_end - to);
      d.partial.erase(cached);
      partial_bytes_ -= kBlock;
    }
    return true;
  }
  if (first) {
    // Held in memory if there is room.
    if (partial_bytes_.fetch_add(kBlock) + kBlock <= opts_.partial_block_memory) {
      cached = d.partial.emplace(block, DirectFile::Block{block_aligned(kBlock, /*zero=*/true), 0}).first;
    } else {
      partial_bytes_ -= kBlock;
      merged = d.on_disk.emplace(block, 0).first;
    }
  }
  if (merged == d.on_disk.end()) {
    std::memcpy(cached->second.bytes.get() + (from - block_start), in_run + (from - block_start), to - from);
    cached->second.filled = filled;
    return false;
  }
  // Read, modify, write: what earlier pieces put there, or zeros (the range
  // is allocated unwritten, or past the end of the file).
  AlignedBytes buf = block_aligned(kBlock, /*zero=*/true);
  ssize_t got;
  do {
    got = ::pread(fd, buf.get(), kBlock, static_cast<off_t>(block_start));
  } while (got < 0 && errno == EINTR);
  if (got < 0) return errno_status(errno, "read back block " + std::to_string(block));
  std::memcpy(buf.get() + (from - block_start), in_run + (from - block_start), to - from);
  STOWAGE_RETURN_IF_ERROR(pwrite_all(fd, std::string_view(buf.get(), kBlock), block_start));
  if (filled == expected) {
    d.on_disk.erase(merged);
  } else {
    merged->second = filled;
  }
  return false;
}

Status Restorer::finish_files() {
  DirCursor cursor;
  for (const FileRec& f : files_) {
    if (f.fetcher_made) {
      return Status::internal(where(f.dir, f.name) + ": " + std::to_string(f.fetcher_made->chunks_left) +
                              " chunks never written");
    }
    if (!f.direct) continue;
    if (!f.direct->partial.empty() || !f.direct->on_disk.empty()) {
      return Status::internal(where(f.dir, f.name) + ": " +
                              std::to_string(f.direct->partial.size() + f.direct->on_disk.size()) +
                              " blocks left partly written");
    }
    if (f.size % kBlock == 0) continue;
    STOWAGE_ASSIGN_OR_RETURN(const int dfd, dir_fd(f.dir, cursor));
    Fd fd(::openat(dfd, f.name.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
    if (fd.get() < 0) return errno_status(errno, "open " + where(f.dir, f.name));
    if (::ftruncate(fd.get(), static_cast<off_t>(f.size)) != 0) return errno_status(errno, "truncate " + where(f.dir, f.name));
  }
  return Status::ok();
}

Status Restorer::fetch_pack(const PackId& pack, std::vector<WriteOp>& ops, BlobCodec& codec, OpenFiles& files) {
  std::sort(ops.begin(), ops.end(), [](const WriteOp& a, const WriteOp& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.id < b.id;
  });
  const std::string key = pack_key(pack);
  size_t i = 0;
  while (i < ops.size()) {
    // One ranged GET for a run of nearby blobs.
    const uint64_t start = ops[i].offset;
    uint64_t end = start + ops[i].stored_length;
    size_t j = i + 1;
    while (j < ops.size() && ops[j].offset <= end + kCoalesceGap &&
           std::max<uint64_t>(end, ops[j].offset + ops[j].stored_length) - start <= kMaxRange) {
      end = std::max<uint64_t>(end, ops[j].offset + ops[j].stored_length);
      ++j;
    }
    Bytes range;
    if (end > start) {
      auto got = repo_.store().get(key, start, end - start);
      if (!got.is_ok()) return got.status().with_context("read " + key);
      range = std::move(got).value();
      if (range.size() != end - start) return Status::corruption(key + ": shorter than the index says");
    }
    Bytes plain;
    for (size_t k = i; k < j; ++k) {
      const WriteOp& op = ops[k];
      // The same blob (deduplicated) decodes once. Only the same blob: a
      // damaged or planted index may list another id at the same place,
      // whose bytes must then fail their own hash check.
      const WriteOp* prev = k == i ? nullptr : &ops[k - 1];
      if (!prev || op.offset != prev->offset || op.id != prev->id || op.compression != prev->compression ||
          op.stored_length != prev->stored_length || op.raw_length != prev->raw_length) {
        auto dec = codec.decode(op.id, op.compression, op.raw_length,
                                std::string_view(range).substr(op.offset - start, op.stored_length));
        if (!dec.is_ok()) return dec.status().with_context("pack " + pack.hex());
        plain = std::move(dec).value();
        std::lock_guard lk(mu_);
        ++result_.blobs_fetched;
      }
      STOWAGE_RETURN_IF_ERROR(write_blob(op, plain, files));
    }
    i = j;
  }
  return write_run(files);
}

Status Restorer::apply_meta(int dirfd, const std::string& name, const TreeEntry& e, int fd) {
  const std::string what = name;
  if (as_root_ && opts_.restore_owner) {
    const int rc = fd >= 0 ? ::fchown(fd, e.uid, e.gid) : ::fchownat(dirfd, name.c_str(), e.uid, e.gid, AT_SYMLINK_NOFOLLOW);
    if (rc != 0) return errno_status(errno, "chown " + what);
  }
  if (e.type != NodeType::kSymlink) {
    // After chown, which clears setuid/setgid.
    const int rc = fd >= 0 ? ::fchmod(fd, e.mode) : ::fchmodat(dirfd, name.c_str(), e.mode, 0);
    if (rc != 0) return errno_status(errno, "chmod " + what);
  }
  for (const auto& x : e.xattrs) {
    int rc;
    if (fd >= 0) {
      rc = ::fsetxattr(fd, x.name.c_str(), x.value.data(), x.value.size(), 0);
    } else {
      const std::string p = "/proc/self/fd/" + std::to_string(dirfd) + "/" + name;
      rc = ::lsetxattr(p.c_str(), x.name.c_str(), x.value.data(), x.value.size(), 0);
    }
    if (rc != 0) warn("xattr " + repo_util::display_name(x.name) + " not restored on " + what + ": " + std::strerror(errno));
  }
  const timespec mtime = timespec_of(e.mtime_ns);
  const timespec times[2] = {mtime, mtime};
  const int rc = fd >= 0 ? ::futimens(fd, times) : ::utimensat(dirfd, name.c_str(), times, AT_SYMLINK_NOFOLLOW);
  if (rc != 0) return errno_status(errno, "set times of " + what);
  return Status::ok();
}

Fd Restorer::open_reusable(size_t dir, const std::string& name) {
  if (reuse_root_.get() < 0) return Fd();
  std::string rel;
  for (const auto& p : components(dir)) rel += p + "/";
  rel += name;
  Fd f(open_beneath(reuse_root_.get(), rel));
  struct stat st {};
  if (f.get() < 0 || ::fstat(f.get(), &st) != 0 || !S_ISREG(st.st_mode)) return Fd();
  return f;
}

Result<bool> Restorer::reuse_chunk(int old_fd, int fd, const std::vector<DataRange>& ranges, uint64_t pos, uint32_t len,
                                   const BlobId& id) {
  std::string buf(len, '\0');
  uint64_t mapped = 0;
  bool complete = true;
  STOWAGE_RETURN_IF_ERROR(map_data(ranges, pos, len, &mapped, [&](uint64_t file_off, uint64_t at, uint64_t n) {
    uint64_t got = 0;
    while (complete && got < n) {
      const ssize_t r = ::pread(old_fd, buf.data() + at + got, n - got, static_cast<off_t>(file_off + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) complete = false;  // shorter or unreadable: fetch instead
      if (r > 0) got += static_cast<uint64_t>(r);
    }
    return Status::ok();
  }));
  if (!complete || mapped != len || sha256(buf) != id) return false;
  STOWAGE_RETURN_IF_ERROR(map_data(ranges, pos, len, &mapped, [&](uint64_t file_off, uint64_t at, uint64_t n) {
    return pwrite_all(fd, std::string_view(buf).substr(at, n), file_off);
  }));
  return true;
}

Result<RestoreResult> Restorer::run(const Hash256& id) {
  STOWAGE_ASSIGN_OR_RETURN(const Bytes bytes, repo_.load_snapshot(id));
  STOWAGE_ASSIGN_OR_RETURN(const SnapshotManifest manifest, parse_snapshot(bytes));
  STOWAGE_ASSIGN_OR_RETURN(index_, repo_.load_index());

  if (::mkdir(opts_.target.c_str(), 0700) == 0) {
    created_target_ = true;
  } else if (errno != EEXIST) {
    return errno_status(errno, "create target " + opts_.target);
  }
  const int rfd = ::open(opts_.target.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rfd < 0) return errno_status(errno, "open target " + opts_.target);
  root_ = Fd(rfd);
  if (!opts_.overwrite) {
    STOWAGE_ASSIGN_OR_RETURN(const auto names, fs_util::list_dir(rfd));
    if (!names.empty()) {
      return Status::failed_precondition("target " + opts_.target + " is not empty (--overwrite restores into it)");
    }
  }
  if (!opts_.reuse_from.empty()) {
    const int fd = ::open(opts_.reuse_from.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT) return errno_status(errno, "open " + opts_.reuse_from);
    reuse_root_ = Fd(fd);
  }
  dirs_.push_back(DirRec{});  // the root
  trees_ = std::make_unique<TreePrefetcher>(repo_, index_, manifest.tree);
  Status planned = plan_tree(rfd, manifest.tree);
  trees_.reset();
  STOWAGE_RETURN_IF_ERROR(planned);

  // Data: packs are handed out to fetchers one at a time.
  // In the order files first need them, not by pack id: the runs that
  // complete each other's blocks are then fetched close together in time,
  // and few partial blocks wait (DirectFile).
  std::vector<std::pair<PackId, std::vector<WriteOp>>> packs;
  packs.reserve(pack_order_.size());
  for (const PackId& p : pack_order_) packs.emplace_back(p, std::move(by_pack_[p]));
  by_pack_.clear();
  std::atomic<size_t> next{0};
  std::mutex err_mu;
  Status first;
  std::atomic<bool> failed{false};
  const unsigned n = opts_.workers ? opts_.workers : std::max(2u, 2 * std::thread::hardware_concurrency());
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < std::min<size_t>(n, std::max<size_t>(1, packs.size())); ++t) {
    threads.emplace_back([&] {
      BlobCodec codec;
      OpenFiles files;
      for (size_t i = next++; i < packs.size() && !failed; i = next++) {
        Status s = fetch_pack(packs[i].first, packs[i].second, codec, files);
        packs[i].second = {};
        if (!s.is_ok()) {
          std::lock_guard lk(err_mu);
          if (first.is_ok()) first = s;
          failed = true;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  STOWAGE_RETURN_IF_ERROR(first);
  STOWAGE_RETURN_IF_ERROR(finish_files());
  result_.bytes_written = progress_->bytes_written;

  // Hard links after their leader's data is written. Each side keeps its own
  // chain of open directories, so a link costs no walk from the root.
  {
    DirChain leaders, links;
    for (const auto& l : links_) {
      STOWAGE_ASSIGN_OR_RETURN(const int from, chain_fd(l.leader_dir, leaders));
      STOWAGE_ASSIGN_OR_RETURN(const int to, chain_fd(l.dir, links));
      if (::linkat(from, l.leader_name.c_str(), to, l.name.c_str(), 0) != 0) {
        return errno_status(errno, "link " + where(l.dir, l.name));
      }
    }
  }
  // Metadata of everything but directories, then directories deepest first,
  // so creating entries does not disturb a directory's restored mtime.
  DirChain chain;
  for (const auto& o : others_) {
    STOWAGE_ASSIGN_OR_RETURN(const int dfd, chain_fd(o.dir, chain));
    Fd f;
    if (o.meta.type == NodeType::kFile) {
      const int fd = ::openat(dfd, o.meta.name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return errno_status(errno, "open " + where(o.dir, o.meta.name));
      f = Fd(fd);
    }
    STOWAGE_RETURN_IF_ERROR(apply_meta(dfd, o.meta.name, o.meta, f.get()).with_context(where(o.dir, o.meta.name)));
  }
  // A directory comes after all of its descendants here, so none is opened
  // through a directory whose (perhaps restrictive) mode is already set.
  for (size_t d = dirs_.size(); d-- > 1;) {
    STOWAGE_ASSIGN_OR_RETURN(const int dfd, chain_fd(d, chain));
    STOWAGE_RETURN_IF_ERROR(apply_meta(-1, dirs_[d].name, dirs_[d].meta, dfd).with_context(where(d)));
  }
  chain.open.clear();
  if (manifest.root) {
    TreeEntry root;
    root.type = NodeType::kDir;
    root.mode = manifest.root->mode;
    root.uid = manifest.root->uid;
    root.gid = manifest.root->gid;
    root.mtime_ns = manifest.root->mtime_ns;
    root.xattrs = manifest.root->xattrs;
    STOWAGE_RETURN_IF_ERROR(apply_meta(-1, opts_.target, root, root_.get()).with_context("restore target root"));
    result_.root_restored = true;
  }
  return std::move(result_);
}

}  // namespace

Result<std::optional<Hash256>> latest_snapshot_of(Repository& repo, std::string_view volume) {
  STOWAGE_ASSIGN_OR_RETURN(const auto all, repo_util::load_snapshots(repo));
  const repo_util::SnapshotRef* best = volume.empty() ? nullptr : repo_util::newest_snapshot(all, volume);
  return best ? std::optional<Hash256>(best->id) : std::optional<Hash256>();
}

Result<RestoreResult> run_restore(Repository& repo, const Hash256& id, const RestoreOptions& opts) {
  if (opts.target.empty()) return Status::invalid_argument("restore: no target directory");
  Restorer restorer(repo, opts);
  Result<RestoreResult> result = restorer.run(id);
  if (result.is_ok() && opts.sync) {
    if (Status synced = sync_filesystem(opts.target); !synced.is_ok()) result = synced;
  }
  if (!result.is_ok() && restorer.created_target()) {
    // Everything there is ours and unfinished: a full disk must not leave a
    // half-restored tree holding the space and refusing the retry as "not
    // empty".
    std::error_code ec;
    std::filesystem::remove_all(opts.target, ec);
  }
  return result;
}

}  // namespace stowage
