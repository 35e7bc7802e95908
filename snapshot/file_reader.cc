#include "stowage/file_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <utility>
#include <vector>

#include "copy_internal.h"
#include "uring_ring.h"

namespace stowage {
namespace {

using copy_internal::UniqueFd;

constexpr size_t kAlign = 4096;

// Checks that `fd` is something to read and hints sequential reading.
Status prepare_for_reading(int fd, const std::string& name, struct stat* st_out) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return errno_status(errno, "stat '" + name + "'");
  if (st_out) *st_out = st;
  if (S_ISDIR(st.st_mode)) return Status::invalid_argument("read '" + name + "': is a directory");
  // Doubles the kernel's readahead window: our queue plus its own.
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return Status::ok();
}

Result<UniqueFd> open_for_reading(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno_status(errno, "read '" + path + "'");
  return fd;
}

// A second descriptor of the file open at `fd` with O_DIRECT, or an invalid
// one when the file system refuses it or /proc is not there. Reopening
// through /proc/self/fd gives the same file even if it was renamed, unlinked
// or replaced since `fd` was opened (checked all the same).
UniqueFd open_direct(int fd, const struct stat& st) {
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  UniqueFd dfd(::open(self.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC | O_NOATIME));
  if (!dfd.valid() && errno == EPERM) {  // not the owner
    dfd.reset(::open(self.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
  }
  struct stat again;
  if (!dfd.valid() || ::fstat(dfd.get(), &again) != 0 || again.st_dev != st.st_dev || again.st_ino != st.st_ino) {
    return UniqueFd();
  }
  return dfd;
}

class PreadReader final : public FileReader {
 public:
  explicit PreadReader(size_t chunk) : chunk_(chunk), buf_(std::make_shared<std::vector<std::byte>>(chunk)) {}

  Result<uint64_t> read_open(int fd, const std::string& name, const ChunkCallback& on_chunk) override {
    return read(fd, name, &on_chunk, nullptr);
  }
  Result<uint64_t> read_open_lending(int fd, const std::string& name, const LendingChunkCallback& on_chunk) override {
    return read(fd, name, nullptr, &on_chunk);
  }
  bool uses_io_uring() const override { return false; }

 private:
  Result<uint64_t> read(int fd, const std::string& name, const ChunkCallback* plain,
                        const LendingChunkCallback* lending) {
    STOWAGE_RETURN_IF_ERROR(prepare_for_reading(fd, name, nullptr));
    uint64_t off = 0;
    for (;;) {
      // A buffer a lending callback kept is its own now (only this thread
      // makes holds, so a count of 1 cannot grow behind our back).
      if (buf_.use_count() > 1) buf_ = std::make_shared<std::vector<std::byte>>(chunk_);
      std::vector<std::byte>& buf = *buf_;
      size_t filled = 0;
      while (filled < buf.size()) {
        ssize_t n = ::pread(fd, buf.data() + filled, buf.size() - filled, static_cast<off_t>(off + filled));
        if (n < 0) {
          if (errno == EINTR) continue;
          return errno_status(errno, "read '" + name + "'");
        }
        if (n == 0) break;
        filled += static_cast<size_t>(n);
      }
      if (filled > 0) {
        const std::span<const std::byte> data{buf.data(), filled};
        STOWAGE_RETURN_IF_ERROR(lending ? (*lending)(off, data, BufferHold(buf_, buf.data())) : (*plain)(off, data));
      }
      off += filled;
      if (filled < buf.size()) return off;
    }
  }

  size_t chunk_;
  std::shared_ptr<std::vector<std::byte>> buf_;
};

// The io_uring reader's buffer indices not in use by a read or a hold. Holds
// (BufferHold deleters) give theirs back from any thread, so the pool is
// shared with them and locked.
class BufferPool {
 public:
  explicit BufferPool(unsigned buffers) {
    for (unsigned i = buffers; i > 0; --i) free_.push_back(i - 1);
  }
  // Blocks while every buffer is in use.
  unsigned take() {
    std::unique_lock lk(mu_);
    freed_.wait(lk, [&] { return !free_.empty(); });
    const unsigned i = free_.back();
    free_.pop_back();
    return i;
  }
  void give_back(unsigned i) {
    {
      std::lock_guard lk(mu_);
      free_.push_back(i);
    }
    freed_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable freed_;
  std::vector<unsigned> free_;
};

// Chunk c lives in slot c % depth. Reads for chunks [next_deliver,
// next_deliver + depth) are in flight or done; chunks are delivered strictly in
// order, and a slot is refilled with chunk c + depth right after delivery.
class UringReader final : public FileReader {
 public:
  UringReader(std::unique_ptr<uring::Ring> ring, size_t chunk, unsigned depth, uint64_t direct_min)
      : ring_(std::move(ring)),
        chunk_(chunk),
        depth_(depth),
        direct_min_(direct_min),
        pool_(std::make_shared<BufferPool>(ring_->buffers())) {}

  Result<uint64_t> read_open(int fd, const std::string& name, const ChunkCallback& on_chunk) override {
    return read(fd, name, &on_chunk, nullptr);
  }
  Result<uint64_t> read_open_lending(int fd, const std::string& name, const LendingChunkCallback& on_chunk) override {
    return read(fd, name, nullptr, &on_chunk);
  }
  bool uses_io_uring() const override { return true; }
  uint64_t direct_bytes() const override { return direct_bytes_; }

 private:
  static constexpr unsigned kNoBuffer = ~0u;

  // Each slot reads into a buffer taken from pool_ and gives it back when the
  // read is over, unless it was delivered to a lending callback: then a hold
  // gives it back when dropped, and the slot takes another.
  Result<uint64_t> read(int fd, const std::string& name, const ChunkCallback* plain,
                        const LendingChunkCallback* lending) {
    struct stat st;
    STOWAGE_RETURN_IF_ERROR(prepare_for_reading(fd, name, &st));
    UniqueFd dfd;
    if (direct_min_ > 0 && static_cast<uint64_t>(st.st_size) >= direct_min_) dfd = open_direct(fd, st);
    struct Slot {
      uint64_t chunk = 0;
      size_t filled = 0;
      bool busy = false;    // a read is in flight
      bool direct = false;  // ... through dfd
      uint64_t direct_bytes = 0;
      unsigned buf = kNoBuffer;  // ring buffer index
    };
    std::vector<Slot> slots(depth_);
    // Whatever happens, the slots' buffers go back (no read is in flight on
    // any path out of the loop below: it reaps every completion).
    struct GiveBack {
      std::vector<Slot>& slots;
      BufferPool& pool;
      ~GiveBack() {
        for (Slot& s : slots) {
          if (s.buf != kNoBuffer) pool.give_back(s.buf);
        }
      }
    } give_back{slots, *pool_};
    unsigned in_flight = 0;
    Status error;
    auto issue = [&](unsigned k) {
      Slot& s = slots[k];
      io_uring_sqe* sqe = ring_->sqe();
      // Buffers and chunk_ are 4 KiB aligned: only the rest of a short read
      // can be unaligned (the end of the file); it goes through the page cache.
      s.direct = dfd.valid() && s.filled % kAlign == 0;
      ring_->prep_read(sqe, s.direct ? dfd.get() : fd, s.buf, s.filled, static_cast<unsigned>(chunk_ - s.filled),
                       s.chunk * chunk_ + s.filled);
      io_uring_sqe_set_data64(sqe, k);
      s.busy = true;
      in_flight++;
    };
    for (unsigned k = 0; k < depth_; ++k) {
      slots[k].chunk = k;
      slots[k].buf = pool_->take();
      issue(k);
    }
    uint64_t next = 0;  // next chunk to deliver
    uint64_t delivered = 0;
    bool done = false;
    while (in_flight > 0) {
      auto c = ring_->next();
      if (!c.is_ok()) return c.status();  // ring unusable; nothing left to reap
      in_flight--;
      Slot& s = slots[c->user_data];
      s.busy = false;
      if (c->res == -EINVAL && s.direct && error.is_ok() && !done) {
        // The file system took O_DIRECT at open but refuses the read (e.g. a
        // larger logical block size): read this file buffered from here on.
        dfd.reset();
        issue(static_cast<unsigned>(c->user_data));
      } else if (c->res < 0) {
        if (error.is_ok()) error = errno_status(-c->res, "read '" + name + "'");
      } else if (c->res > 0) {  // 0 is EOF: the slot stays short and ends the file
        s.filled += static_cast<size_t>(c->res);
        if (s.direct) s.direct_bytes += static_cast<uint64_t>(c->res);
        // Short: EOF or an interrupted read; the next read tells which.
        if (s.filled < chunk_ && error.is_ok() && !done) issue(static_cast<unsigned>(c->user_data));
      }
      // Deliver every chunk that is complete, in order.
      while (error.is_ok() && !done) {
        Slot& head = slots[next % depth_];
        if (head.busy || head.chunk != next) break;
        if (head.filled > 0) {
          const std::span<const std::byte> data{ring_->buffer(head.buf), head.filled};
          Status st;
          if (lending) {
            // From here on the buffer is the hold's: back to the pool when
            // the last copy is dropped (now, unless the callback kept one).
            const unsigned b = std::exchange(head.buf, kNoBuffer);
            std::shared_ptr<BufferPool> pool = pool_;
            st = (*lending)(next * chunk_, data, BufferHold(data.data(), [pool, b](const void*) { pool->give_back(b); }));
          } else {
            st = (*plain)(next * chunk_, data);
          }
          if (!st.is_ok()) {
            error = st;
            break;
          }
          delivered += head.filled;
          direct_bytes_ += head.direct_bytes;
        }
        if (head.filled < chunk_) {
          done = true;  // end of file
          break;
        }
        const unsigned buf = head.buf != kNoBuffer ? head.buf : pool_->take();
        head = Slot{next + depth_, 0, false};
        head.buf = buf;
        next++;
        issue(static_cast<unsigned>((next - 1) % depth_));
      }
      if (in_flight > 0) {
        Status st = ring_->submit();
        if (!st.is_ok() && error.is_ok()) error = st;
      }
    }
    STOWAGE_RETURN_IF_ERROR(error);
    return delivered;
  }

  std::unique_ptr<uring::Ring> ring_;
  size_t chunk_;
  unsigned depth_;
  uint64_t direct_min_;
  uint64_t direct_bytes_ = 0;
  std::shared_ptr<BufferPool> pool_;
};

}  // namespace

Result<uint64_t> FileReader::read_file(const std::string& path, const ChunkCallback& on_chunk) {
  STOWAGE_ASSIGN_OR_RETURN(UniqueFd fd, open_for_reading(path));
  return read_open(fd.get(), path, on_chunk);
}

Result<uint64_t> FileReader::read_file_lending(const std::string& path, const LendingChunkCallback& on_chunk) {
  STOWAGE_ASSIGN_OR_RETURN(UniqueFd fd, open_for_reading(path));
  return read_open_lending(fd.get(), path, on_chunk);
}

Result<std::unique_ptr<FileReader>> FileReader::create(FileReaderOptions opts) {
  if (opts.chunk_size == 0) return Status::invalid_argument("file reader: chunk_size must be > 0");
  if (opts.queue_depth < 1 || opts.queue_depth > 64) {
    return Status::invalid_argument("file reader: queue_depth must be in 1..64");
  }
  if (opts.lend_buffers > 64) return Status::invalid_argument("file reader: lend_buffers must be in 0..64");
  const size_t chunk = (opts.chunk_size + kAlign - 1) / kAlign * kAlign;
  if (opts.force_portable) return std::unique_ptr<FileReader>(new PreadReader(chunk));
  if (!opts.log) opts.log = stderr_log_sink();
  IoUringAvailability u = decide_io_uring(opts.io_uring_probe, opts.log, "file_reader");
  if (u.usable) {
    auto ring = uring::Ring::create(opts.queue_depth * 2, opts.queue_depth + opts.lend_buffers, chunk);
    if (ring.is_ok()) {
      return std::unique_ptr<FileReader>(new UringReader(std::move(ring).value(), chunk, opts.queue_depth,
                                                               opts.direct_min_size));
    }
    opts.log("level=warn msg=\"io_uring ring setup failed, using portable I/O\" component=file_reader err=\"" +
             ring.status().message() + "\"");
  }
  return std::unique_ptr<FileReader>(new PreadReader(chunk));
}

}  // namespace stowage
