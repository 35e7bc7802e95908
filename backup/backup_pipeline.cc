#include "stowage/backup_pipeline.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <utility>

#include "bounded_queue.h"
#include "chunk_feeder.h"
#include "fs_util.h"
#include "repo_util.h"
#include "stowage/chunker.h"
#include "stowage/file_reader.h"
#include "stowage/pack.h"
#include "stowage/tree.h"

namespace stowage {
namespace {

// An index file is written after this many packs, so a backup that dies late
// leaves most of its uploads indexed (the next one dedups against them).
constexpr size_t kPacksPerIndexFile = 64;
constexpr int kMaxDepth = 4096;  // FORMAT.md §6.2
constexpr size_t kReadSize = 1 << 20;
// Files at least this large are read with O_DIRECT (FileReaderOptions): no
// page-cache copy. Smaller ones are read buffered, with the kernel's readahead.
constexpr uint64_t kDirectMinSize = 1 << 20;
// Files at least this large have their chunks hashed and encoded by the
// encoder threads while the worker goes on reading and cutting, so one big
// file keeps more than one core busy. Smaller files are done in the worker.
constexpr uint64_t kOffloadMinSize = 4 << 20;
// A large file's chunks go to the encoders in batches, one per reader buffer
// (kReadSize): one queue hand-over (and at most one thread wake-up) per batch
// instead of per 64 KiB chunk. Copied chunks (sparse files) are batched by
// this many bytes.
constexpr size_t kBatchBytes = 512 << 10;
// Batches queued for the encoders.
constexpr size_t kQueuedBatches = 8;
// Reader buffers a worker can lend to the encoders while it reads on (beyond
// its queue depth of 4): one for each encoder; a third batch waits in the
// queue while the reader waits for a buffer.
constexpr unsigned kLendBuffers = 2;

// Encoded blobs of one file (or of one batch of a large file), kept together
// until they go into the pack under one lock: the file's chunks then lie side
// by side in the pack, in file order. Added one at a time, they were
// interleaved with the other workers' and encoders' chunks, and restore had
// to write each 64 KiB chunk on its own (restore.cc writes runs of
// consecutive chunks with one O_DIRECT call).
struct StagedBlobs {
  struct Blob {
    BlobId id;
    Compression compression = Compression::kRaw;
    uint32_t raw_length = 0;
    size_t at = 0, size = 0;  // in bytes
  };
  std::string bytes;
  std::vector<Blob> blobs;
};
// A worker adds a small file's staged blobs to the pack once they hold this
// much (and at the file's end).
constexpr size_t kStageBytes = 1 << 20;

class SystemClock : public Clock {
 public:
  int64_t now_ns() const override {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
  }
};

int64_t ns_of(const timespec& ts) { return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec; }

// A wall-clock step larger than this since identity_clock_offset_ns was taken
// stops the use of originals' identities (NTP slews by far less).
constexpr int64_t kMaxClockStepNs = 50'000'000;

// One entry of the source tree while the backup runs; directories own their
// children. Held for the whole backup (see docs/BACKUP.md, memory).
struct Node {
  TreeEntry entry;
  std::vector<std::unique_ptr<Node>> children;
  Node* link_leader = nullptr;  // hard-link follower: content comes from the leader
  bool live_identity = false;   // inode/ctime are the original's (BackupOptions::identity_root)
  // A file gone (or no longer a regular file) when a worker came to read it:
  // left out of the snapshot. Set by the worker, read after workers joined.
  bool vanished = false;
};

struct FileJob {
  std::string path;  // for messages and BackupOptions::before_read
  // The directory the walk found the file in, held open until it is read:
  // the file is opened relative to it, so no path is looked up (of any
  // length, or through a symlink put in place of a directory meanwhile).
  std::shared_ptr<const fs_util::Fd> dir;
  std::string name;
  Node* node = nullptr;
  // A changed file's chunks in the parent snapshot, when they carry chunk
  // sums: those still in place are reused (ChunkFeeder), not cut or hashed.
  ParentChunks parent;
};

// The chunks of one large file that are with the encoders. `ids` is in file
// order; an encoder stores a chunk's id in its slot. Guarded by `mu`.
struct FileChunks {
  const std::string* path = nullptr;
  std::mutex mu;
  std::condition_variable done;
  std::deque<BlobId> ids;  // a deque: slots do not move when more are added
  size_t pending = 0;      // chunks queued or being encoded
};

// Consecutive chunks of one large file for the encoders. Chunks that lie in
// one reader buffer are not copied: `hold` keeps that buffer (`lent`) from
// being reused until the batch is encoded. A chunk that spanned two reader
// buffers, or came from a sparse file's ranges, is copied into `owned`.
// Chunk i's id goes to *ids[i].
struct ChunkBatch {
  struct Piece {
    bool owned = false;
    size_t begin = 0, size = 0;
    const BlobId* reused = nullptr;  // a parent's chunk found in place: its id, nothing to encode
  };
  BufferHold hold;
  std::string_view lent;
  std::string owned;
  std::vector<Piece> pieces;
  std::vector<BlobId*> ids;
  FileChunks* file = nullptr;

  std::string_view chunk(size_t i) const {
    const Piece& p = pieces[i];
    return (p.owned ? std::string_view(owned) : lent).substr(p.begin, p.size);
  }
};

class Pipeline {
 public:
  Pipeline(Repository& repo, const BackupOptions& opts, Index index, Chunker chunker)
      : repo_(repo),
        opts_(opts),
        index_(std::move(index)),
        chunker_(std::move(chunker)),
        summer_(repo.config().id),
        clock_(opts.clock ? opts.clock : system_clock()),
        progress_(opts.progress ? opts.progress : &own_progress_),
        jobs_(2 * worker_count()),
        chunks_(kQueuedBatches),
        uploads_(opts.queued_packs) {}

  Result<BackupResult> run();

 private:
  int level() const { return opts_.compression_level ? opts_.compression_level : repo_.config().compression_level; }
  unsigned worker_count() const {
    if (opts_.workers) return opts_.workers;
    // More workers than cores: with a cold cache, small files are read one
    // latency at a time, and extra workers overlap those waits (measured on
    // 2 cores, 31,000 files + 3 GB: 14.9 s with 2 workers, 11.1 s with 4,
    // 10.2 s with 8).
    return 4 * std::max(1u, std::thread::hardware_concurrency());
  }
  unsigned encoder_count() const { return std::max(1u, std::thread::hardware_concurrency()); }

  void warn(const std::string& line) {
    std::lock_guard lk(warn_mu_);
    warnings_.push_back(line);
    if (opts_.log) {
      opts_.log("level=warn component=backup msg=\"" + line + "\"");
    } else {
      stderr_log_sink()("level=warn component=backup msg=\"" + line + "\"");
    }
  }

  void fail(const Status& s) {
    {
      std::lock_guard lk(err_mu_);
      if (first_error_.is_ok()) first_error_ = s;
    }
    aborted_ = true;
    jobs_.close();
    chunks_.close();
    uploads_.close();
    {
      // A waiter between checking aborted_ and sleeping must not miss this.
      std::lock_guard lk(uploads_mu_);
    }
    uploads_cv_.notify_all();
    {
      std::lock_guard lk(pack_mu_);
    }
    pack_cv_.notify_all();
  }
  Status first_error() {
    std::lock_guard lk(err_mu_);
    return first_error_;
  }
  // Why a stage stopped early: the first error, or `what` if there was none
  // (a queue closed by an abort that recorded nothing).
  Status stop_reason(const char* what) {
    Status s = first_error();
    return s.is_ok() ? Status::internal(what) : s;
  }

  // `dirfd` is the directory being walked, shared with the jobs of its files.
  Status walk_dir(const std::shared_ptr<const fs_util::Fd>& dirfd, int live_fd, const std::string& path, Node& dir,
                  const std::vector<TreeEntry>* parent, std::vector<std::string>& rel, int depth);
  Status add_node(const std::shared_ptr<const fs_util::Fd>& dirfd, int live_fd, const std::string& path,
                  const std::string& name, Node& dir, const std::vector<TreeEntry>* parent,
                  std::vector<std::string>& rel, int depth);
  // BackupOptions::identity_root: gives `node` the identity of the original
  // of the copy `st` (entry `name` of the original directory `live_fd`)
  // when the original provably has not changed since the copy was made.
  void adopt_live_identity(int live_fd, const std::string& name, const struct stat& st, Node& node);
  FileReaderOptions reader_options() const;
  void worker_loop();
  void encoder_loop();
  // `job.parent` is used up (its cursor moves); reused chunks' ids point into
  // it until the file's batches are encoded, which this waits for.
  // A file that is gone when it is opened is marked vanished, with a warning.
  Status process_file(FileJob& job, FileReader& reader, Sha256& sha, BlobCodec& codec);
  // Adds `chunk` to `batch` (a batch of `file`): in place when it lies in
  // batch.lent, else copied; hands the batch to the encoders once it holds
  // kBatchBytes of copies.
  Status offload_chunk(FileChunks& file, ChunkBatch& batch, std::string_view chunk);
  // Adds a reused parent chunk to `batch`, to keep its place among the
  // chunks being encoded.
  void offload_reused(FileChunks& file, ChunkBatch& batch, const BlobId& id);
  // Hands `batch` to the encoders if it holds any chunk; leaves it empty
  // (holding no reader buffer) in any case.
  Status flush_batch(ChunkBatch& batch);
  // Encodes `chunk` into `staged` unless another file already claimed it.
  Status stage_chunk(const BlobId& id, std::string_view chunk, BlobCodec& codec, StagedBlobs& staged);
  bool claim(const BlobId& id);
  Status add_blob(const EncodedBlobView& blob);
  // Adds the staged blobs to the pack, one after the other (a pack that
  // fills up in between is closed, and the rest go into the next one), and
  // empties `staged`.
  Status add_staged(StagedBlobs& staged);
  // add_blob() with pack_mu_ held by `lk`.
  Status add_blob_locked(const EncodedBlobView& blob, std::unique_lock<std::mutex>& lk);
  Status finish_pack();
  // Moves the full open pack out (the caller filled it; `lk` holds pack_mu_),
  // then names and queues it with the lock released.
  Status close_full_pack(std::unique_lock<std::mutex>& lk);
  // With pack_mu_ held, writer_ empty: storage for the next pack.
  void renew_writer();
  // Hands a finished pack to the uploaders (blocks while the queue is full).
  Status queue_pack(PackWriter::Finished pack);
  void upload_loop();
  Status wait_uploads();
  Status write_pending_index(bool all);
  // Leaves vanished files out (and the hard links of a vanished leader, which
  // have nothing to carry), with the walk's totals.
  Result<std::vector<BlobId>> build_tree(Node& dir, BlobCodec& codec);
  // The parent's entry of the same name, if it is a file.
  static const TreeEntry* parent_file(const TreeEntry& fresh, const std::vector<TreeEntry>* parent);
  // `old` when `fresh` is the same file unchanged (size, mtime, ctime,
  // inode) and all its chunks are in the index and, with its holes, make up
  // its size; else nullptr.
  const TreeEntry* reusable(const TreeEntry& fresh, const TreeEntry* old) const;
  // The chunks of `old` with offsets and sums, for reuse in place by a
  // changed file; empty when `old` has no sums or a chunk is not indexed.
  ParentChunks parent_chunks(const TreeEntry* old) const;

  Repository& repo_;
  const BackupOptions& opts_;
  const Index index_;  // read-only during the run: safe to share
  const Chunker chunker_;
  const ChunkSummer summer_;
  std::shared_ptr<Clock> clock_;
  BackupProgress own_progress_;
  BackupProgress* progress_;

  BoundedQueue<FileJob> jobs_;
  BoundedQueue<ChunkBatch> chunks_;  // chunks of large files, to the encoders
  BoundedQueue<PackWriter::Finished> uploads_;

  std::mutex err_mu_;
  Status first_error_;
  std::atomic<bool> aborted_{false};
  std::mutex warn_mu_;
  std::vector<std::string> warnings_;

  std::mutex dedup_mu_;
  std::unordered_set<BlobId, Hash256Hasher> claimed_;  // blobs this run stores

  std::mutex pack_mu_;
  PackWriter writer_;
  // One pack at a time is named (SHA-256 of ~16 MiB) and queued outside
  // pack_mu_, so producers keep adding to the next pack meanwhile; a full
  // pack waits in writer_ until that one is queued (same memory bound).
  std::condition_variable pack_cv_;
  bool closing_ = false;
  // Pack buffers uploaders are done with (at most one per pack in memory), so
  // pack memory stays at a fixed set of allocations.
  std::mutex spare_mu_;
  std::vector<Bytes> spare_;
  uint64_t new_blobs_ = 0, new_bytes_ = 0, stored_bytes_ = 0;

  std::mutex uploads_mu_;
  std::condition_variable uploads_cv_;
  uint64_t packs_submitted_ = 0, packs_done_ = 0;
  std::vector<IndexPack> pending_index_;

  // Hard-link groups: (dev, inode) of multi-link files → their first node.
  std::map<std::pair<uint64_t, uint64_t>, Node*> links_;
  uint64_t next_link_group_ = 1;
  // Hard-link followers, filled from their leader before trees are built.
  struct Follower {
    Node* node;
    std::string path;              // for messages
    std::vector<std::string> dir;  // its directory, as components below the source
    std::string name;
  };
  std::vector<Follower> followers_;
  // Gives each group whose leader vanished before it was read a new leader:
  // its first follower still there, read now (on the calling thread, after
  // the workers); the group's other followers then take their content from
  // it. A file with several names is left out only when all of them are gone.
  Status lead_orphaned_links(int root_fd);
  uint64_t files_ = 0, dirs_ = 0, bytes_ = 0;
  std::atomic<uint64_t> bytes_matched_{0};
};

const TreeEntry* Pipeline::parent_file(const TreeEntry& fresh, const std::vector<TreeEntry>* parent) {
  if (!parent) return nullptr;
  auto it = std::lower_bound(parent->begin(), parent->end(), fresh.name,
                             [](const TreeEntry& e, const std::string& n) { return e.name < n; });
  if (it == parent->end() || it->name != fresh.name || it->type != NodeType::kFile) return nullptr;
  return &*it;
}

const TreeEntry* Pipeline::reusable(const TreeEntry& fresh, const TreeEntry* old) const {
  if (!old || old->size != fresh.size || old->mtime_ns != fresh.mtime_ns || old->ctime_ns != fresh.ctime_ns ||
      old->inode != fresh.inode) {
    return nullptr;
  }
  // Blobs only in packs that prune marked count as absent (FORMAT.md §8.3).
  // The lengths must add up to the file: a damaged or planted parent entry
  // copied as it is would make every later snapshot unrestorable.
  uint64_t covered = hole_bytes(old->holes);
  for (const auto& c : old->chunks) {
    const auto loc = index_.find(c);
    if (!loc) return nullptr;
    covered += loc->raw_length;
  }
  return covered == fresh.size ? old : nullptr;
}

ParentChunks Pipeline::parent_chunks(const TreeEntry* old) const {
  if (!old || old->chunk_sums.size() != old->chunks.size()) return {};
  std::vector<ParentChunk> chunks;
  chunks.reserve(old->chunks.size());
  uint64_t offset = 0;
  for (size_t i = 0; i < old->chunks.size(); ++i) {
    // The index gives each chunk's length, hence its offset. An unindexed
    // chunk (a damaged repository, or one prune marked) ends the list: the
    // chunks after it would sit at unknown offsets.
    const auto loc = index_.find(old->chunks[i]);
    if (!loc || loc->raw_length == 0) break;
    chunks.push_back({offset, loc->raw_length, old->chunks[i], old->chunk_sums[i]});
    offset += loc->raw_length;
  }
  return ParentChunks(std::move(chunks));
}

void Pipeline::adopt_live_identity(int live_fd, const std::string& name, const struct stat& st, Node& node) {
  if (live_fd < 0) return;
  // A wall-clock step since the copy began voids the ctime argument below.
  const int64_t step = realtime_minus_monotonic_ns() - opts_.identity_clock_offset_ns;
  if (step > kMaxClockStepNs || step < -kMaxClockStepNs) return;
  struct stat live {};
  if (::fstatat(live_fd, name.c_str(), &live, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(live.st_mode)) return;
  // Every write sets ctime to the current time, so an original whose ctime
  // is older than the copy's start has not been written since: the copy
  // holds its content, and its (inode, ctime) stand for that content.
  if (live.st_size != st.st_size || ns_of(live.st_mtim) != ns_of(st.st_mtim) ||
      ns_of(live.st_ctim) >= opts_.identity_before_ns) {
    return;
  }
  node.entry.inode = live.st_ino;
  node.entry.ctime_ns = ns_of(live.st_ctim);
  node.live_identity = true;
}

Status Pipeline::add_node(const std::shared_ptr<const fs_util::Fd>& dir_fd, int live_fd, const std::string& path,
                          const std::string& name, Node& dir, const std::vector<TreeEntry>* parent,
                          std::vector<std::string>& rel, int depth) {
  // Everything is looked up relative to `dirfd` by `name` (never by `full`,
  // which may be longer than PATH_MAX).
  const int dirfd = dir_fd->get();
  const std::string full = path + "/" + name;
  auto vanished = [&] {
    warn("vanished during backup, skipped: " + repo_util::display_name(full));
    return Status::ok();
  };
  struct stat st {};
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return vanished();
    return errno_status(errno, "stat " + repo_util::display_name(full));
  }
  auto node = std::make_unique<Node>();
  TreeEntry& e = node->entry;
  e.name = name;
  e.mode = st.st_mode & 07777;
  e.uid = st.st_uid;
  e.gid = st.st_gid;
  e.mtime_ns = ns_of(st.st_mtim);
  e.ctime_ns = ns_of(st.st_ctim);
  e.inode = st.st_ino;
  // A directory's are read through the descriptor it is walked with, and a
  // file's only if it is not its parent's entry unchanged.
  auto read_xattrs = [&]() -> Status {
    auto xattrs = fs_util::read_xattrs_at(dirfd, name);
    if (!xattrs.is_ok()) return xattrs.status();
    e.xattrs = std::move(xattrs).value();
    return Status::ok();
  };
  if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
    Status s = read_xattrs();
    if (s.code() == Code::kNotFound) return vanished();
    STOWAGE_RETURN_IF_ERROR(s.with_context(repo_util::display_name(full)));
  }
  switch (st.st_mode & S_IFMT) {
    case S_IFREG: {
      e.type = NodeType::kFile;
      e.size = static_cast<uint64_t>(st.st_size);
      const auto key = std::make_pair(uint64_t{st.st_dev}, uint64_t{st.st_ino});
      Node* leader = nullptr;
      if (st.st_nlink > 1) {
        auto it = links_.find(key);
        if (it != links_.end()) leader = it->second;
      }
      const TreeEntry* old = nullptr;
      bool unchanged = false;
      if (leader) {
        e.xattrs = leader->entry.xattrs;  // the same inode
      } else {
        adopt_live_identity(live_fd, name, st, *node);
        old = parent_file(e, parent);
        unchanged = reusable(e, old) != nullptr;
        if (unchanged) {
          // Setting or removing an xattr sets ctime, which is unchanged: the
          // parent's are still the file's (one syscall less per such file).
          e.xattrs = old->xattrs;
        } else if (Status s = read_xattrs(); !s.is_ok()) {
          if (s.code() == Code::kNotFound) return vanished();
          return s.with_context(repo_util::display_name(full));
        }
      }
      ++files_;
      bytes_ += e.size;
      progress_->files_total += 1;
      progress_->bytes_total += e.size;
      if (leader) {
        if (leader->entry.hardlink == 0) leader->entry.hardlink = next_link_group_++;
        e.hardlink = leader->entry.hardlink;
        node->link_leader = leader;
        followers_.push_back({node.get(), full, rel, name});
        progress_->files_done += 1;
        progress_->bytes_done += e.size;
        break;
      }
      if (st.st_nlink > 1) links_.emplace(key, node.get());
      if (unchanged) {
        e.chunks = old->chunks;
        e.chunk_sums = old->chunk_sums;
        e.holes = old->holes;
        progress_->files_done += 1;
        progress_->bytes_done += e.size;
      } else if (e.size == 0) {
        progress_->files_done += 1;  // nothing to read
      } else if (!jobs_.push(FileJob{full, dir_fd, name, node.get(), parent_chunks(old)})) {
        return first_error();
      }
      break;
    }
    case S_IFDIR: {
      e.type = NodeType::kDir;
      if (depth + 1 > kMaxDepth) return Status::invalid_argument("directory nesting deeper than 4096: " + full);
      const int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      // Gone, or replaced by a symlink or a non-directory since the stat.
      if (fd < 0 && (errno == ENOENT || errno == ELOOP || errno == ENOTDIR)) return vanished();
      if (fd < 0) return errno_status(errno, "open directory " + repo_util::display_name(full));
      const auto sub = std::make_shared<const fs_util::Fd>(fd);
      auto xattrs = fs_util::read_xattrs(fd, repo_util::display_name(full));
      if (!xattrs.is_ok()) return xattrs.status();
      e.xattrs = std::move(xattrs).value();
      ++dirs_;
      std::vector<TreeEntry> sub_parent;
      bool have_parent = false;
      if (parent) {
        auto it = std::lower_bound(parent->begin(), parent->end(), name,
                                   [](const TreeEntry& x, const std::string& n) { return x.name < n; });
        if (it != parent->end() && it->name == name && it->type == NodeType::kDir) {
          BlobCodec codec;
          auto loaded = repo_util::load_dir(repo_, index_, codec, it->subtree);
          if (loaded.is_ok()) {
            sub_parent = std::move(loaded).value();
            have_parent = true;
          }
        }
      }
      // The original's directory of the same name, one component at a time
      // and never through a symlink (it may have changed since the copy).
      const int live_sub =
          live_fd < 0 ? -1 : ::openat(live_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      rel.push_back(name);
      Status s = walk_dir(sub, live_sub, full, *node, have_parent ? &sub_parent : nullptr, rel, depth + 1);
      rel.pop_back();
      if (live_sub >= 0) ::close(live_sub);
      STOWAGE_RETURN_IF_ERROR(s);
      break;
    }
    case S_IFLNK: {
      e.type = NodeType::kSymlink;
      auto target = fs_util::read_link_at(dirfd, name);
      if (target.status().code() == Code::kNotFound) return vanished();
      if (!target.is_ok()) return target.status().with_context(repo_util::display_name(full));
      e.target = std::move(target).value();
      break;
    }
    case S_IFIFO:
      e.type = NodeType::kFifo;
      break;
    case S_IFCHR:
      e.type = NodeType::kCharDev;
      e.rdev = st.st_rdev;
      break;
    case S_IFBLK:
      e.type = NodeType::kBlockDev;
      e.rdev = st.st_rdev;
      break;
    default:
      // A socket is only meaningful with the process that listens on it.
      warn("socket not backed up: " + repo_util::display_name(full));
      return Status::ok();
  }
  dir.children.push_back(std::move(node));
  return Status::ok();
}

Status Pipeline::walk_dir(const std::shared_ptr<const fs_util::Fd>& dirfd, int live_fd, const std::string& path,
                          Node& dir, const std::vector<TreeEntry>* parent, std::vector<std::string>& rel, int depth) {
  STOWAGE_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_util::list_dir(dirfd->get()));
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    if (aborted_) return first_error();
    STOWAGE_RETURN_IF_ERROR(add_node(dirfd, live_fd, path, name, dir, parent, rel, depth));
  }
  return Status::ok();
}

bool Pipeline::claim(const BlobId& id) {
  if (index_.contains(id)) return false;
  std::lock_guard lk(dedup_mu_);
  return claimed_.insert(id).second;
}

Status Pipeline::add_blob(const EncodedBlobView& blob) {
  std::unique_lock lk(pack_mu_);
  return add_blob_locked(blob, lk);
}

Status Pipeline::add_staged(StagedBlobs& staged) {
  if (staged.blobs.empty()) return Status::ok();
  Status s;
  {
    std::unique_lock lk(pack_mu_);
    for (const auto& b : staged.blobs) {
      s = add_blob_locked({b.id, BlobType::kData, b.compression, b.raw_length,
                           std::string_view(staged.bytes).substr(b.at, b.size)},
                          lk);
      if (!s.is_ok()) break;
    }
  }
  staged.bytes.clear();
  staged.blobs.clear();
  return s;
}

Status Pipeline::add_blob_locked(const EncodedBlobView& blob, std::unique_lock<std::mutex>& lk) {
  // A full pack waits here for its closer (back-pressure on producers).
  pack_cv_.wait(lk, [&] { return aborted_ || writer_.blob_bytes() < repo_.config().pack_size; });
  if (aborted_) {
    return stop_reason("backup aborted");
  }
  STOWAGE_RETURN_IF_ERROR(writer_.add(blob));
  ++new_blobs_;
  new_bytes_ += blob.raw_length;
  stored_bytes_ += blob.stored.size();
  if (writer_.blob_bytes() >= repo_.config().pack_size) return close_full_pack(lk);
  return Status::ok();
}

Status Pipeline::close_full_pack(std::unique_lock<std::mutex>& lk) {
  pack_cv_.wait(lk, [&] { return aborted_ || !closing_; });
  if (aborted_) {
    return stop_reason("backup aborted");
  }
  PackWriter full = std::move(writer_);
  writer_ = PackWriter();
  renew_writer();
  closing_ = true;
  lk.unlock();
  pack_cv_.notify_all();  // producers waiting on the full pack go on with the new one
  Status s = [&]() -> Status {
    STOWAGE_ASSIGN_OR_RETURN(PackWriter::Finished pack, full.finish());
    return queue_pack(std::move(pack));
  }();
  lk.lock();
  closing_ = false;
  pack_cv_.notify_all();
  return s;
}

// Called with pack_mu_ held: blocking here is the back-pressure on producers.
Status Pipeline::finish_pack() {
  if (writer_.empty()) return Status::ok();
  STOWAGE_ASSIGN_OR_RETURN(PackWriter::Finished pack, writer_.finish());
  renew_writer();
  return queue_pack(std::move(pack));
}

void Pipeline::renew_writer() {
  {
    // Reuse a buffer an uploader is done with; else allocate the target size
    // + the blob that crosses it + a header of small blobs, once.
    std::lock_guard lk(spare_mu_);
    if (!spare_.empty()) {
      writer_.recycle(std::move(spare_.back()));
      spare_.pop_back();
    }
  }
  writer_.reserve(repo_.config().pack_size + chunker_.params().max_size + (1u << 20));
}

Status Pipeline::queue_pack(PackWriter::Finished pack) {
  {
    std::lock_guard lk(uploads_mu_);
    ++packs_submitted_;
  }
  if (!uploads_.push(std::move(pack))) {
    return stop_reason("upload queue closed");
  }
  return Status::ok();
}

void Pipeline::upload_loop() {
  PackWriter::Finished pack;
  while (uploads_.pop(pack)) {
    Status s = aborted_ ? Status::ok() : repo_.save_pack(pack);
    if (!s.is_ok()) {
      fail(s.with_context("upload pack " + pack.id.hex()));
    } else if (!aborted_) {
      progress_->bytes_uploaded += pack.data.size();
      std::lock_guard lk(uploads_mu_);
      pending_index_.push_back({pack.id, static_cast<uint32_t>(pack.data.size()), std::move(pack.blobs)});
    }
    {
      std::lock_guard lk(spare_mu_);
      spare_.push_back(std::move(pack.data));
    }
    if (!aborted_) {
      s = write_pending_index(false);
      if (!s.is_ok()) fail(s);
    }
    std::lock_guard lk(uploads_mu_);
    ++packs_done_;
    uploads_cv_.notify_all();
  }
}

Status Pipeline::write_pending_index(bool all) {
  IndexFile file;
  {
    std::lock_guard lk(uploads_mu_);
    if (pending_index_.empty() || (!all && pending_index_.size() < kPacksPerIndexFile)) return Status::ok();
    file.packs.swap(pending_index_);
  }
  // Only packs already stored are listed (FORMAT.md §8.2 step 3).
  auto id = repo_.save_index(file);
  return id.is_ok() ? Status::ok() : id.status().with_context("write index");
}

Status Pipeline::wait_uploads() {
  std::unique_lock lk(uploads_mu_);
  uploads_cv_.wait(lk, [&] { return aborted_ || packs_done_ == packs_submitted_; });
  lk.unlock();
  return first_error();
}

FileReaderOptions Pipeline::reader_options() const {
  FileReaderOptions ro;
  ro.chunk_size = kReadSize;
  ro.queue_depth = 4;
  ro.direct_min_size = kDirectMinSize;
  ro.lend_buffers = kLendBuffers;
  if (opts_.log) ro.log = opts_.log;
  return ro;
}

void Pipeline::worker_loop() {
  auto reader = FileReader::create(reader_options());
  if (!reader.is_ok()) {
    fail(reader.status().with_context("file reader"));
    return;
  }
  Sha256 sha;
  BlobCodec codec(level());
  FileJob job;
  while (jobs_.pop(job)) {
    if (aborted_) continue;
    Status s = process_file(job, **reader, sha, codec);
    if (!s.is_ok()) fail(s.with_context("back up " + repo_util::display_name(job.path)));
  }
}

Status Pipeline::stage_chunk(const BlobId& id, std::string_view chunk, BlobCodec& codec, StagedBlobs& staged) {
  if (!claim(id)) return Status::ok();
  STOWAGE_ASSIGN_OR_RETURN(const EncodedBlobView enc, codec.encode_view(BlobType::kData, id, chunk));
  staged.blobs.push_back({id, enc.compression, enc.raw_length, staged.bytes.size(), enc.stored.size()});
  staged.bytes.append(enc.stored);
  return Status::ok();
}

Status Pipeline::offload_chunk(FileChunks& file, ChunkBatch& batch, std::string_view chunk) {
  batch.file = &file;
  const auto at = reinterpret_cast<uintptr_t>(chunk.data());
  const auto lent = reinterpret_cast<uintptr_t>(batch.lent.data());
  if (!batch.lent.empty() && at >= lent && at + chunk.size() <= lent + batch.lent.size()) {
    batch.pieces.push_back({false, at - lent, chunk.size()});
    return Status::ok();
  }
  batch.pieces.push_back({true, batch.owned.size(), chunk.size()});
  batch.owned.append(chunk);
  if (batch.owned.size() >= kBatchBytes) return flush_batch(batch);
  return Status::ok();
}

void Pipeline::offload_reused(FileChunks& file, ChunkBatch& batch, const BlobId& id) {
  batch.file = &file;
  batch.pieces.push_back({false, 0, 0, &id});
}

Status Pipeline::flush_batch(ChunkBatch& batch) {
  ChunkBatch out = std::exchange(batch, ChunkBatch{});
  if (out.pieces.empty()) return Status::ok();
  FileChunks& file = *out.file;
  const size_t n = out.pieces.size();
  if (std::all_of(out.pieces.begin(), out.pieces.end(), [](const ChunkBatch::Piece& p) { return p.reused; })) {
    // Nothing to encode: the ids go straight into their slots, and the
    // worker reads on instead of queueing behind batches being encoded.
    std::lock_guard lk(file.mu);
    for (const auto& p : out.pieces) file.ids.push_back(*p.reused);
    return Status::ok();
  }
  {
    std::lock_guard lk(file.mu);
    for (size_t i = 0; i < n; ++i) out.ids.push_back(&file.ids.emplace_back());
    file.pending += n;
  }
  if (chunks_.push(std::move(out))) return Status::ok();
  {
    std::lock_guard lk(file.mu);
    file.pending -= n;
  }
  return stop_reason("chunk queue closed");
}

void Pipeline::encoder_loop() {
  Sha256 sha;
  BlobCodec codec(level());
  ChunkBatch batch;
  std::vector<BlobId> ids;
  StagedBlobs staged;
  while (chunks_.pop(batch)) {
    const size_t n = batch.pieces.size();
    ids.assign(n, BlobId{});
    for (size_t i = 0; i < n && !aborted_; ++i) {
      if (const BlobId* reused = batch.pieces[i].reused) {
        ids[i] = *reused;
        continue;
      }
      const std::string_view chunk = batch.chunk(i);
      ids[i] = sha.digest(chunk);
      Status s = stage_chunk(ids[i], chunk, codec, staged);
      if (!s.is_ok()) fail(s.with_context("back up " + repo_util::display_name(*batch.file->path)));
    }
    if (Status s = add_staged(staged); !s.is_ok() && !aborted_) {
      fail(s.with_context("back up " + repo_util::display_name(*batch.file->path)));
    }
    FileChunks& file = *batch.file;
    const std::vector<BlobId*> slots = std::move(batch.ids);
    // Drops the hold on the reader's buffer before pending can reach 0: the
    // worker's reader, which owns that buffer, may go away after that.
    batch = ChunkBatch{};
    // Notified under the lock: the worker may destroy `file` once it sees
    // pending == 0, which it cannot before this unlock.
    std::lock_guard lk(file.mu);
    for (size_t i = 0; i < n; ++i) *slots[i] = ids[i];
    file.pending -= n;
    if (file.pending == 0) file.done.notify_all();
  }
}

Status Pipeline::process_file(FileJob& job, FileReader& reader, Sha256& sha, BlobCodec& codec) {
  TreeEntry& e = job.node->entry;
  if (opts_.before_read) opts_.before_read(job.path);
  auto mapped = fs_util::map_data(job.dir->get(), job.name);
  if (mapped.status().code() == Code::kNotFound) {
    // Like a file gone between listing and stat: the snapshot is what the
    // walk saw minus this file, never an entry without its content.
    warn("vanished during backup, skipped: " + repo_util::display_name(job.path) + " (" +
         mapped.status().message() + ")");
    job.node->vanished = true;
    progress_->files_done += 1;
    return Status::ok();
  }
  STOWAGE_ASSIGN_OR_RETURN(fs_util::DataMap map, std::move(mapped));
  // A large file's chunks are hashed and encoded by the encoders (in file
  // order of their slots); a small file's right here.
  const bool offload = map.size >= kOffloadMinSize;
  FileChunks file;
  file.path = &job.path;
  ChunkBatch batch;
  StagedBlobs staged;  // a small file's blobs
  // Reused chunks are read but neither cut, hashed nor compressed.
  uint64_t matched = 0;
  auto emit = [&](const FedChunk& c) -> Status {
    e.chunk_sums.push_back(c.sum);
    if (c.reused) {
      matched += c.length;
      if (offload) {
        offload_reused(file, batch, c.reused->id);
        return Status::ok();
      }
      e.chunks.push_back(c.reused->id);
      return Status::ok();
    }
    if (offload) return offload_chunk(file, batch, c.data);
    const BlobId id = sha.digest(c.data);
    e.chunks.push_back(id);
    STOWAGE_RETURN_IF_ERROR(stage_chunk(id, c.data, codec, staged));
    return staged.bytes.size() >= kStageBytes ? add_staged(staged) : Status::ok();
  };
  ChunkFeeder feeder(chunker_, summer_, emit, &job.parent);
  if (job.node->live_identity && (map.size != e.size || map.mtime_ns != e.mtime_ns)) {
    job.node->live_identity = false;  // the copy changed after all: its own identity
  }
  if (!job.node->live_identity) {
    // Replaced between walk and read: record what is read now.
    e.inode = map.inode;
    e.mtime_ns = map.mtime_ns;
    e.ctime_ns = map.ctime_ns;
  }
  Status read;
  if (map.holes.empty() && offload) {
    // The encoders use the chunks in the reader's buffer itself, which they
    // keep until they are done with it (each buffer is one batch).
    auto n = reader.read_open_lending(
        map.fd.get(), job.path, [&](uint64_t, std::span<const std::byte> data, const BufferHold& hold) -> Status {
          if (aborted_) return Status::failed_precondition("backup aborted");
          progress_->bytes_read += data.size();
          batch.lent = std::string_view(reinterpret_cast<const char*>(data.data()), data.size());
          batch.hold = hold;
          Status s = feeder.feed(batch.lent);
          if (s.is_ok()) return flush_batch(batch);
          batch = ChunkBatch{};
          return s;
        });
    read = n.status();
    if (n.is_ok()) e.size = *n;
  } else if (map.holes.empty()) {
    auto n = reader.read_open(map.fd.get(), job.path, [&](uint64_t, std::span<const std::byte> data) -> Status {
      if (aborted_) return Status::failed_precondition("backup aborted");
      progress_->bytes_read += data.size();
      return feeder.feed(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
    });
    read = n.status();
    if (n.is_ok()) e.size = *n;
  } else {
    // Sparse: only the data ranges are read; holes are recorded, not stored.
    auto n = fs_util::read_ranges(map, kReadSize, [&](std::string_view data) -> Status {
      if (aborted_) return Status::failed_precondition("backup aborted");
      progress_->bytes_read += data.size();
      return feeder.feed(data);
    });
    read = n.status();
    if (n.is_ok()) {
      e.size = *n;
      e.holes = fs_util::holes_within(map.holes, *n);
    }
  }
  if (read.is_ok()) read = feeder.finish();
  if (read.is_ok()) read = flush_batch(batch);
  if (read.is_ok()) read = add_staged(staged);
  if (offload) {
    // Whatever happened, the encoders still hold pointers into `file`.
    std::unique_lock lk(file.mu);
    file.done.wait(lk, [&] { return file.pending == 0; });
    if (read.is_ok() && aborted_) read = first_error();
    if (read.is_ok()) e.chunks.assign(file.ids.begin(), file.ids.end());
  }
  STOWAGE_RETURN_IF_ERROR(read);
  bytes_matched_ += matched;
  progress_->files_done += 1;
  progress_->bytes_done += e.size;
  return Status::ok();
}

Status Pipeline::lead_orphaned_links(int root_fd) {
  std::unique_ptr<FileReader> reader;
  Sha256 sha;
  BlobCodec codec(level());
  std::map<uint64_t, Node*> new_leaders;  // by link group
  for (auto& f : followers_) {
    Node* old = f.node->link_leader;
    if (!old->vanished) continue;
    const uint64_t group = old->entry.hardlink;
    if (auto it = new_leaders.find(group); it != new_leaders.end()) {
      f.node->link_leader = it->second;
      continue;
    }
    // Its directory, one component at a time and never through a symlink.
    auto dir = std::make_shared<const fs_util::Fd>(::dup(root_fd));
    for (const auto& c : f.dir) {
      if (dir->get() < 0) break;
      dir = std::make_shared<const fs_util::Fd>(
          ::openat(dir->get(), c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    }
    if (dir->get() < 0) continue;  // gone too: the next follower may still be there
    if (!reader) {
      STOWAGE_ASSIGN_OR_RETURN(reader, FileReader::create(reader_options()));
    }
    f.node->link_leader = nullptr;
    // The walk counted it as done; process_file() counts it again.
    progress_->files_done -= 1;
    progress_->bytes_done -= f.node->entry.size;
    FileJob job{f.path, dir, f.name, f.node, ParentChunks()};
    STOWAGE_RETURN_IF_ERROR(process_file(job, *reader, sha, codec).with_context("back up " + repo_util::display_name(f.path)));
    if (f.node->vanished) {
      f.node->link_leader = old;  // gone as well: skipped with the group's others
      f.node->vanished = false;
      continue;
    }
    new_leaders.emplace(group, f.node);
  }
  return Status::ok();
}

Result<std::vector<BlobId>> Pipeline::build_tree(Node& dir, BlobCodec& codec) {
  std::vector<BlobId> ids;
  Tree tree;
  auto flush = [&]() -> Status {
    STOWAGE_ASSIGN_OR_RETURN(const std::string bytes, serialize_tree(tree));
    STOWAGE_ASSIGN_OR_RETURN(EncodedBlob enc, codec.encode(BlobType::kTree, bytes));
    ids.push_back(enc.id);
    if (claim(enc.id)) STOWAGE_RETURN_IF_ERROR(add_blob(enc.view()));
    tree.entries.clear();
    return Status::ok();
  };
  for (auto& child : dir.children) {
    if (child->vanished) {
      --files_;
      bytes_ -= child->entry.size;
      continue;
    }
    if (child->entry.type == NodeType::kDir) {
      STOWAGE_ASSIGN_OR_RETURN(child->entry.subtree, build_tree(*child, codec));
    }
    tree.entries.push_back(std::move(child->entry));
    child->children.clear();
    if (tree.entries.size() == kMaxTreeEntries) STOWAGE_RETURN_IF_ERROR(flush());
  }
  // An empty directory is one empty tree blob, so every dir has a subtree.
  if (!tree.entries.empty() || ids.empty()) STOWAGE_RETURN_IF_ERROR(flush());
  return ids;
}

Result<BackupResult> Pipeline::run() {
  const int root_fd = ::open(opts_.source.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) return errno_status(errno, "open source directory " + opts_.source);
  auto root_dir = std::make_shared<const fs_util::Fd>(root_fd);
  // The directory's own metadata goes into the manifest (FORMAT.md §6.1).
  RootMeta root_meta;
  {
    struct stat st {};
    if (::fstat(root_fd, &st) != 0) return errno_status(errno, "stat source directory " + opts_.source);
    root_meta.mode = st.st_mode & 07777;
    root_meta.uid = st.st_uid;
    root_meta.gid = st.st_gid;
    root_meta.mtime_ns = ns_of(st.st_mtim);
    STOWAGE_ASSIGN_OR_RETURN(root_meta.xattrs, fs_util::read_xattrs(root_fd, opts_.source));
  }

  // Parent snapshot: the newest of the same source and host, unless given.
  std::optional<Hash256> parent_id;
  std::vector<TreeEntry> parent_root;
  bool have_parent = false;
  if (opts_.use_parent) {
    if (opts_.parent) {
      parent_id = opts_.parent;
    } else {
      // The parent only saves reading: a damaged manifest (which check and
      // ls report) is passed over, not a reason to refuse the backup.
      auto all = repo_util::scan_snapshots(repo_);
      if (!all.is_ok()) return all.status();
      for (const auto& u : all->unreadable) {
        warn("not considered as parent, unreadable: " + u.problem.to_string());
      }
      for (auto it = all->readable.rbegin(); it != all->readable.rend(); ++it) {
        if (it->manifest.volume == opts_.name && it->manifest.hostname == opts_.hostname) {
          parent_id = it->id;
          break;
        }
      }
    }
    if (parent_id) {
      auto bytes = repo_.load_snapshot(*parent_id);
      auto m = bytes.is_ok() ? parse_snapshot(*bytes) : Result<SnapshotManifest>(bytes.status());
      BlobCodec codec;
      auto root = m.is_ok() ? repo_util::load_dir(repo_, index_, codec, m->tree) : Result<std::vector<TreeEntry>>(m.status());
      if (root.is_ok()) {
        parent_root = std::move(root).value();
        have_parent = true;
      } else {
        warn("parent snapshot " + parent_id->hex() + " unusable, reading every file: " + root.status().to_string());
        parent_id.reset();
      }
    }
  }

  writer_.reserve(repo_.config().pack_size + chunker_.params().max_size + (1u << 20));
  std::vector<std::thread> uploaders, workers;
  for (unsigned i = 0; i < std::max(1u, opts_.uploads_in_flight); ++i) uploaders.emplace_back([this] { upload_loop(); });
  std::vector<std::thread> encoders;
  for (unsigned i = 0; i < encoder_count(); ++i) encoders.emplace_back([this] { encoder_loop(); });
  for (unsigned i = 0; i < worker_count(); ++i) workers.emplace_back([this] { worker_loop(); });

  Node root;
  root.entry.type = NodeType::kDir;
  std::vector<std::string> rel;
  int live_root = -1;
  if (!opts_.identity_root.empty()) {
    live_root = ::open(opts_.identity_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (live_root < 0) warn("originals not readable, every file is read: " + opts_.identity_root + ": " + std::strerror(errno));
  }
  Status walked = walk_dir(root_dir, live_root, opts_.source, root, have_parent ? &parent_root : nullptr, rel, 0);
  if (live_root >= 0) ::close(live_root);
  progress_->walk_done = true;
  if (!walked.is_ok()) fail(walked);
  jobs_.close();
  for (auto& t : workers) t.join();
  if (first_error().is_ok()) {
    if (Status led = lead_orphaned_links(root_dir->get()); !led.is_ok()) fail(led);
  }
  root_dir.reset();
  // Every worker waited for its file's chunks: the encoders are idle.
  chunks_.close();
  for (auto& t : encoders) t.join();

  auto finish_uploads = [&]() {
    uploads_.close();
    for (auto& t : uploaders) t.join();
  };
  Status s = first_error();
  if (s.is_ok()) {
    std::lock_guard lk(pack_mu_);
    s = finish_pack();
  }
  if (s.is_ok()) s = wait_uploads();
  if (s.is_ok() && opts_.after_data_uploaded) s = opts_.after_data_uploaded();
  std::vector<BlobId> root_tree;
  if (s.is_ok()) {
    // Every node is still alive here; build_tree() moves entries out.
    for (const auto& [f, path, dir, name] : followers_) {
      if (!f->link_leader) continue;  // leads its group now (lead_orphaned_links)
      if (f->link_leader->vanished) {
        // Every name of the group was gone by the time it was read.
        warn("hard link to a file that vanished during backup, skipped: " + repo_util::display_name(path));
        f->vanished = true;
        continue;
      }
      const TreeEntry& l = f->link_leader->entry;
      f->entry.size = l.size;
      f->entry.chunks = l.chunks;
      f->entry.chunk_sums = l.chunk_sums;
      f->entry.holes = l.holes;
      f->entry.hardlink = l.hardlink;
      f->entry.mtime_ns = l.mtime_ns;
      f->entry.ctime_ns = l.ctime_ns;
    }
    BlobCodec codec(level());
    auto t = build_tree(root, codec);
    if (t.is_ok()) {
      root_tree = std::move(t).value();
      std::lock_guard lk(pack_mu_);
      s = finish_pack();
    } else {
      s = t.status();
    }
  }
  if (s.is_ok()) s = wait_uploads();
  if (!s.is_ok()) fail(s);
  finish_uploads();
  STOWAGE_RETURN_IF_ERROR(first_error());
  // Index files before the manifest: FORMAT.md §8.2 steps 3 and 4.
  STOWAGE_RETURN_IF_ERROR(write_pending_index(true));

  BackupResult result;
  SnapshotManifest& m = result.manifest;
  m.volume = opts_.name;
  m.hostname = opts_.hostname;
  m.time_ns = clock_->now_ns();
  m.parent = parent_id;
  m.tree = root_tree;
  m.root = std::move(root_meta);
  m.tags = opts_.tags;
  m.stats.files = files_;
  m.stats.dirs = dirs_;
  m.stats.bytes = bytes_;
  m.stats.new_blobs = new_blobs_;
  m.stats.new_bytes = new_bytes_;
  m.stats.stored_bytes = stored_bytes_;
  m.stats.bytes_read = progress_->bytes_read;
  m.stats.bytes_matched = bytes_matched_;
  m.program = "stowage 0.1.0";
  m.source_path = opts_.source;
  m.lease_generation = opts_.lease_generation;
  STOWAGE_ASSIGN_OR_RETURN(const std::string json, serialize_snapshot(m));
  if (opts_.before_commit) STOWAGE_RETURN_IF_ERROR(opts_.before_commit());
  STOWAGE_ASSIGN_OR_RETURN(result.snapshot_id, repo_.save_snapshot(json));
  result.warnings = warnings_;
  return result;
}

}  // namespace

std::shared_ptr<Clock> system_clock() { return std::make_shared<SystemClock>(); }

int64_t realtime_minus_monotonic_ns() {
  timespec r{}, m{};
  ::clock_gettime(CLOCK_MONOTONIC, &m);
  ::clock_gettime(CLOCK_REALTIME, &r);
  return ns_of(r) - ns_of(m);
}

std::string default_source_name(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const auto slash = p.rfind('/');
  std::string base = slash == std::string::npos ? p : p.substr(slash + 1);
  for (char& c : base) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '.' || c == '-';
    if (!ok) c = '_';
  }
  if (base.empty() || base == "." || base == "..") return "root";
  if (base.size() > 255) base.resize(255);
  if (!((base[0] >= 'A' && base[0] <= 'Z') || (base[0] >= 'a' && base[0] <= 'z') || (base[0] >= '0' && base[0] <= '9'))) {
    base[0] = 'x';
  }
  return base;
}

Result<BackupResult> run_backup(Repository& repo, const BackupOptions& in) {
  BackupOptions opts = in;
  if (!valid_volume_name(opts.name)) {
    return Status::invalid_argument("source name '" + opts.name + "' is not valid ([A-Za-z0-9][A-Za-z0-9_.-]*)");
  }
  if (!opts.source.empty() && opts.source[0] != '/') {
    // Recorded in the manifest: make it mean something on a later day.
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd)) opts.source = std::string(cwd) + "/" + opts.source;
  }
  if (opts.hostname.empty()) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) return errno_status(errno, "gethostname");
    opts.hostname = host;
  }
  auto chunker = Chunker::create(repo.config().chunker);
  if (!chunker.is_ok()) return chunker.status();
  STOWAGE_ASSIGN_OR_RETURN(Index index, repo_util::load_index_for_backup(repo));
  Pipeline pipeline(repo, opts, std::move(index), std::move(chunker).value());
  return pipeline.run();
}

}  // namespace stowage
