// The io_uring strategy. Small dense files are copied in batches of kBatch with
// three ring round trips per batch (open both ends; read+write linked; close),
// so a batch of 64 files costs a handful of syscalls plus per-file metadata
// calls io_uring has no opcode for (fchown, fchmod, futimens, xattrs). Large or
// sparse files go through a pipeline of kLargeDepth fixed buffers: every data
// extent is read chunk by chunk and each chunk's write is issued as soon as its
// read completes, so reads and writes overlap.
#include <algorithm>
#include <deque>

#include "copy_internal.h"
#include "uring_ring.h"

namespace stowage::copy_internal {
namespace {

constexpr unsigned kRingEntries = 256;
constexpr unsigned kBatch = 64;                // files per small-file batch
constexpr size_t kSmallMax = 64 << 10;         // larger files use the pipeline
constexpr unsigned kLargeDepth = 8;            // chunks in flight per large file
constexpr size_t kLargeChunk = 512 << 10;      // a multiple of kSmallMax
// The arena in kSmallMax units: a batch uses one per file, the pipeline
// kLargeChunk / kSmallMax consecutive ones per chunk.
constexpr unsigned kArenaSlots = std::max<unsigned>(kBatch, kLargeDepth * (kLargeChunk / kSmallMax));
constexpr unsigned kStatBatch = 128;

class UringCopier final : public FileCopier {
 public:
  UringCopier(const CopyOptions& opts, mode_t umask_bits, std::unique_ptr<uring::Ring> ring,
              bool kernel_copy_large)
      : opts_(opts), umask_(umask_bits), kernel_copy_large_(kernel_copy_large), ring_(std::move(ring)) {
    pending_.reserve(kBatch);
  }

  Status copy(const FileJob& job, CopyStats* stats) override {
    if (job.meta.size > kSmallMax || may_have_holes(job.meta)) {
      return kernel_copy_large_ ? copy_in_kernel(job, stats) : copy_large(job, stats);
    }
    pending_.push_back(job);
    if (pending_.size() == kBatch) return flush(stats);
    return Status::ok();
  }

  Status flush(CopyStats* stats) override {
    if (pending_.empty()) return Status::ok();
    std::vector<FileJob> jobs;
    jobs.swap(pending_);
    pending_.reserve(kBatch);
    return copy_batch(jobs, stats);
  }

  Result<std::vector<FileMeta>> stat_all(int dir, const std::vector<std::string>& names) override {
    std::vector<FileMeta> out(names.size());
    std::vector<struct statx> stx(std::min<size_t>(names.size(), kStatBatch));
    for (size_t base = 0; base < names.size(); base += kStatBatch) {
      const size_t n = std::min<size_t>(kStatBatch, names.size() - base);
      for (size_t i = 0; i < n; ++i) {
        io_uring_sqe* s = ring_->sqe();
        if (s == nullptr) return Status::internal("io_uring ring full");
        io_uring_prep_statx(s, dir, names[base + i].c_str(),
                            AT_SYMLINK_NOFOLLOW | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, &stx[i]);
        io_uring_sqe_set_data64(s, i);
      }
      STOWAGE_ASSIGN_OR_RETURN(std::vector<int> res, complete(n));
      for (size_t i = 0; i < n; ++i) {
        if (res[i] < 0) return errno_status(-res[i], quoted("stat", names[base + i]));
        out[base + i] = meta_from_statx(stx[i]);
      }
    }
    return out;
  }

 private:
  // Submits what is queued and reaps exactly `n` completions whose user_data
  // are 0..n-1, even after a failure, so no kernel I/O outlives its buffers.
  Result<std::vector<int>> complete(size_t n) {
    std::vector<int> res(n, -ECANCELED);
    for (size_t i = 0; i < n; ++i) {
      STOWAGE_ASSIGN_OR_RETURN(uring::Ring::Completion c, ring_->next());
      if (c.user_data < n) res[c.user_data] = c.res;
    }
    return res;
  }

  Status copy_batch(const std::vector<FileJob>& jobs, CopyStats* stats) {
    const size_t n = jobs.size();
    // Round 1: open every source and create every destination.
    for (size_t i = 0; i < n; ++i) {
      io_uring_sqe* s = ring_->sqe();
      io_uring_prep_openat(s, jobs[i].src_dir, jobs[i].src_name.c_str(),
                           O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
      io_uring_sqe_set_data64(s, 2 * i);
      s = ring_->sqe();
      io_uring_prep_openat(s, jobs[i].dst_dir, jobs[i].name.c_str(),
                           O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                           jobs[i].meta.mode & 07777);
      io_uring_sqe_set_data64(s, 2 * i + 1);
    }
    STOWAGE_ASSIGN_OR_RETURN(std::vector<int> opened, complete(2 * n));
    std::vector<OpenPair> fds(n);
    Status first_error;
    for (size_t i = 0; i < n; ++i) {
      for (int end = 0; end < 2; ++end) {
        int r = opened[2 * i + end];
        if (r >= 0) {
          (end == 0 ? fds[i].src : fds[i].dst).reset(r);
        } else if (first_error.is_ok()) {
          first_error = errno_status(-r, quoted(end == 0 ? "open" : "create", jobs[i].name));
        }
      }
    }
    STOWAGE_RETURN_IF_ERROR(first_error);

    // Round 2: read each file whole into its buffer, linked to the write, so
    // the pair costs no extra wakeup. A short read breaks the link (the write
    // completes with -ECANCELED) and that file is redone below.
    size_t issued = 0;
    std::vector<size_t> index_of(2 * n);
    for (size_t i = 0; i < n; ++i) {
      const auto len = static_cast<unsigned>(jobs[i].meta.size);
      if (len == 0) continue;
      io_uring_sqe* s = ring_->sqe();
      ring_->prep_read(s, fds[i].src.get(), static_cast<unsigned>(i), 0, len, 0);
      s->flags |= IOSQE_IO_LINK;
      io_uring_sqe_set_data64(s, issued);
      index_of[issued++] = 2 * i;
      s = ring_->sqe();
      ring_->prep_write(s, fds[i].dst.get(), static_cast<unsigned>(i), 0, len, 0);
      io_uring_sqe_set_data64(s, issued);
      index_of[issued++] = 2 * i + 1;
    }
    std::vector<int> rw(2 * n, 0);
    if (issued > 0) {
      STOWAGE_ASSIGN_OR_RETURN(std::vector<int> res, complete(issued));
      for (size_t k = 0; k < issued; ++k) rw[index_of[k]] = res[k];
    }
    for (size_t i = 0; i < n; ++i) {
      const FileJob& job = jobs[i];
      const auto len = static_cast<int>(job.meta.size);
      if (len > 0 && (rw[2 * i] != len || rw[2 * i + 1] != len)) {
        if (rw[2 * i] < 0) return errno_status(-rw[2 * i], quoted("read", job.name));
        if (rw[2 * i + 1] < 0 && rw[2 * i + 1] != -ECANCELED) {
          return errno_status(-rw[2 * i + 1], quoted("write", job.name));
        }
        // The file changed size since stat, or a write was short: redo it.
        if (::ftruncate(fds[i].dst.get(), 0) != 0) return errno_status(errno, quoted("truncate", job.name));
        STOWAGE_RETURN_IF_ERROR(
            copy_data_portable(fds[i].src.get(), fds[i].dst.get(), job.meta, &stats->bytes_copied, job.name));
        stats->portable_files++;
      } else {
        stats->bytes_copied += job.meta.size;
        stats->uring_files++;
      }
      STOWAGE_RETURN_IF_ERROR(apply_meta_fd(fds[i].dst.get(), fds[i].src.get(), job.meta, opts_,
                                            {umask_, true, job.is_root}, job.name));
    }

    // Round 3: close everything in one submission. A close error on the
    // destination can carry a deferred write error, so it counts.
    for (size_t i = 0; i < 2 * n; ++i) {
      io_uring_sqe* s = ring_->sqe();
      io_uring_prep_close(s, (i % 2 == 0 ? fds[i / 2].src : fds[i / 2].dst).release());
      io_uring_sqe_set_data64(s, i);
    }
    STOWAGE_ASSIGN_OR_RETURN(std::vector<int> closed, complete(2 * n));
    for (size_t i = 1; i < 2 * n; i += 2) {
      if (closed[i] < 0) return errno_status(-closed[i], quoted("close", jobs[i / 2].name));
    }
    return Status::ok();
  }

  Status copy_large(const FileJob& job, CopyStats* stats) {
    STOWAGE_ASSIGN_OR_RETURN(OpenPair p, open_pair(job));
    // A wider kernel readahead window keeps the disk busy between our reads.
    (void)::posix_fadvise(p.src.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    auto extents = data_extents(p.src.get(), job.meta.size);
    if (!extents.is_ok()) return extents.status().with_context(job.name);
    STOWAGE_RETURN_IF_ERROR(pipeline(p.src.get(), p.dst.get(), *extents, job.name, &stats->bytes_copied));
    const uint64_t data_end = extents->empty() ? 0 : extents->back().offset + extents->back().length;
    if (data_end < job.meta.size && ::ftruncate(p.dst.get(), static_cast<off_t>(job.meta.size)) != 0) {
      return errno_status(errno, quoted("truncate", job.name));
    }
    STOWAGE_RETURN_IF_ERROR(
        apply_meta_fd(p.dst.get(), p.src.get(), job.meta, opts_, {umask_, true, job.is_root}, job.name));
    if (::close(p.dst.release()) != 0) return errno_status(errno, quoted("close", job.name));
    stats->uring_files++;
    return Status::ok();
  }

  Status copy_in_kernel(const FileJob& job, CopyStats* stats) {
    STOWAGE_ASSIGN_OR_RETURN(OpenPair p, open_pair(job));
    STOWAGE_RETURN_IF_ERROR(copy_data_portable(p.src.get(), p.dst.get(), job.meta, &stats->bytes_copied, job.name));
    STOWAGE_RETURN_IF_ERROR(
        apply_meta_fd(p.dst.get(), p.src.get(), job.meta, opts_, {umask_, true, job.is_root}, job.name));
    if (::close(p.dst.release()) != 0) return errno_status(errno, quoted("close", job.name));
    stats->portable_files++;
    return Status::ok();
  }

  // Each slot owns kLargeChunk bytes of the arena (consecutive small buffers).
  struct Slot {
    uint64_t off = 0;
    unsigned len = 0;   // bytes held (after the read)
    unsigned done = 0;  // bytes written so far
  };

  Status pipeline(int src, int dst, const std::vector<Extent>& extents, const std::string& name,
                  uint64_t* copied) {
    constexpr unsigned kPerSlot = kLargeChunk / kSmallMax;
    std::deque<Extent> todo;  // chunks not yet read
    for (const Extent& e : extents) {
      for (uint64_t o = 0; o < e.length; o += kLargeChunk) {
        todo.push_back({e.offset + o, std::min<uint64_t>(kLargeChunk, e.length - o)});
      }
    }
    Slot slots[kLargeDepth];
    unsigned in_flight = 0;
    Status error;
    // user_data: slot * 2 (+1 for a write).
    auto issue_read = [&](unsigned k) {
      Extent c = todo.front();
      todo.pop_front();
      slots[k] = {c.offset, static_cast<unsigned>(c.length), 0};
      io_uring_sqe* s = ring_->sqe();
      ring_->prep_read(s, src, k * kPerSlot, 0, slots[k].len, c.offset);
      io_uring_sqe_set_data64(s, 2 * k);
      in_flight++;
    };
    auto issue_write = [&](unsigned k) {
      Slot& sl = slots[k];
      io_uring_sqe* s = ring_->sqe();
      ring_->prep_write(s, dst, k * kPerSlot, sl.done, sl.len - sl.done, sl.off + sl.done);
      io_uring_sqe_set_data64(s, 2 * k + 1);
      in_flight++;
    };
    for (unsigned k = 0; k < kLargeDepth && !todo.empty(); ++k) issue_read(k);
    while (in_flight > 0) {
      auto c = ring_->next();
      if (!c.is_ok()) return c.status();  // the ring is unusable; nothing more to reap
      in_flight--;
      const auto k = static_cast<unsigned>(c->user_data / 2);
      const bool is_write = c->user_data % 2 == 1;
      if (c->res < 0) {
        if (error.is_ok()) error = errno_status(-c->res, quoted(is_write ? "write" : "read", name));
        continue;
      }
      if (!error.is_ok()) continue;  // draining
      Slot& sl = slots[k];
      if (!is_write) {
        const auto got = static_cast<unsigned>(c->res);
        if (got == 0) continue;  // the file shrank since stat: nothing more here
        if (got < sl.len) todo.push_front({sl.off + got, sl.len - got});  // short read
        sl.len = got;
        issue_write(k);
      } else {
        if (c->res == 0) {
          error = Status::io_error(quoted("write made no progress on", name));
          continue;
        }
        sl.done += static_cast<unsigned>(c->res);
        if (sl.done < sl.len) {
          issue_write(k);
          continue;
        }
        *copied += sl.len;
        if (!todo.empty()) issue_read(k);
      }
      // Each completion needs at most one new SQE; hand them over together.
      if (in_flight > 0) {
        Status st = ring_->submit();
        if (!st.is_ok() && error.is_ok()) error = st;
      }
    }
    return error;
  }

  CopyOptions opts_;
  mode_t umask_;
  bool kernel_copy_large_;
  std::unique_ptr<uring::Ring> ring_;
  std::vector<FileJob> pending_;
};

static_assert(kLargeChunk % kSmallMax == 0);

}  // namespace

Result<std::unique_ptr<FileCopier>> make_uring_copier(const CopyOptions& opts, mode_t umask_bits,
                                                      bool kernel_copy_large) {
  STOWAGE_ASSIGN_OR_RETURN(auto ring, uring::Ring::create(kRingEntries, kArenaSlots, kSmallMax));
  return std::unique_ptr<FileCopier>(new UringCopier(opts, umask_bits, std::move(ring), kernel_copy_large));
}

}  // namespace stowage::copy_internal
