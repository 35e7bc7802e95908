#include "stowage/file_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include "copy_internal.h"
#include "uring_ring.h"

namespace stowage {
namespace {

using copy_internal::UniqueFd;

constexpr size_t kAlign = 4096;

Result<UniqueFd> open_for_reading(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno_status(errno, "read '" + path + "'");
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return errno_status(errno, "stat '" + path + "'");
  if (S_ISDIR(st.st_mode)) return Status::invalid_argument("read '" + path + "': is a directory");
  // Doubles the kernel's readahead window: our queue plus its own.
  (void)::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  return fd;
}

class PreadReader final : public FileReader {
 public:
  explicit PreadReader(size_t chunk) : buf_(chunk) {}

  Result<uint64_t> read_file(const std::string& path, const ChunkCallback& on_chunk) override {
    STOWAGE_ASSIGN_OR_RETURN(UniqueFd fd, open_for_reading(path));
    uint64_t off = 0;
    for (;;) {
      size_t filled = 0;
      while (filled < buf_.size()) {
        ssize_t n = ::pread(fd.get(), buf_.data() + filled, buf_.size() - filled,
                            static_cast<off_t>(off + filled));
        if (n < 0) {
          if (errno == EINTR) continue;
          return errno_status(errno, "read '" + path + "'");
        }
        if (n == 0) break;
        filled += static_cast<size_t>(n);
      }
      if (filled > 0) STOWAGE_RETURN_IF_ERROR(on_chunk(off, {buf_.data(), filled}));
      off += filled;
      if (filled < buf_.size()) return off;
    }
  }
  bool uses_io_uring() const override { return false; }

 private:
  std::vector<std::byte> buf_;
};

// Chunk c lives in slot c % depth. Reads for chunks [next_deliver,
// next_deliver + depth) are in flight or done; chunks are delivered strictly in
// order, and a slot is refilled with chunk c + depth right after delivery.
class UringReader final : public FileReader {
 public:
  UringReader(std::unique_ptr<uring::Ring> ring, size_t chunk, unsigned depth)
      : ring_(std::move(ring)), chunk_(chunk), depth_(depth) {}

  Result<uint64_t> read_file(const std::string& path, const ChunkCallback& on_chunk) override {
    STOWAGE_ASSIGN_OR_RETURN(UniqueFd fd, open_for_reading(path));
    struct Slot {
      uint64_t chunk = 0;
      size_t filled = 0;
      bool busy = false;  // a read is in flight
    };
    std::vector<Slot> slots(depth_);
    unsigned in_flight = 0;
    Status error;
    auto issue = [&](unsigned k) {
      Slot& s = slots[k];
      io_uring_sqe* sqe = ring_->sqe();
      ring_->prep_read(sqe, fd.get(), k, s.filled, static_cast<unsigned>(chunk_ - s.filled),
                       s.chunk * chunk_ + s.filled);
      io_uring_sqe_set_data64(sqe, k);
      s.busy = true;
      in_flight++;
    };
    for (unsigned k = 0; k < depth_; ++k) {
      slots[k].chunk = k;
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
      if (c->res < 0) {
        if (error.is_ok()) error = errno_status(-c->res, "read '" + path + "'");
      } else if (c->res > 0) {  // 0 is EOF: the slot stays short and ends the file
        s.filled += static_cast<size_t>(c->res);
        // Short: EOF or an interrupted read; the next read tells which.
        if (s.filled < chunk_ && error.is_ok() && !done) issue(static_cast<unsigned>(c->user_data));
      }
      // Deliver every chunk that is complete, in order.
      while (error.is_ok() && !done) {
        Slot& head = slots[next % depth_];
        if (head.busy || head.chunk != next) break;
        if (head.filled > 0) {
          Status st = on_chunk(next * chunk_, {ring_->buffer(static_cast<unsigned>(next % depth_)), head.filled});
          if (!st.is_ok()) {
            error = st;
            break;
          }
          delivered += head.filled;
        }
        if (head.filled < chunk_) {
          done = true;  // end of file
          break;
        }
        head = Slot{next + depth_, 0, false};
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
  bool uses_io_uring() const override { return true; }

 private:
  std::unique_ptr<uring::Ring> ring_;
  size_t chunk_;
  unsigned depth_;
};

}  // namespace

Result<std::unique_ptr<FileReader>> FileReader::create(FileReaderOptions opts) {
  if (opts.chunk_size == 0) return Status::invalid_argument("file reader: chunk_size must be > 0");
  if (opts.queue_depth < 1 || opts.queue_depth > 64) {
    return Status::invalid_argument("file reader: queue_depth must be in 1..64");
  }
  const size_t chunk = (opts.chunk_size + kAlign - 1) / kAlign * kAlign;
  if (opts.force_portable) return std::unique_ptr<FileReader>(new PreadReader(chunk));
  if (!opts.log) opts.log = stderr_log_sink();
  IoUringAvailability u = decide_io_uring(opts.io_uring_probe, opts.log, "file_reader");
  if (u.usable) {
    auto ring = uring::Ring::create(opts.queue_depth * 2, opts.queue_depth, chunk);
    if (ring.is_ok()) {
      return std::unique_ptr<FileReader>(new UringReader(std::move(ring).value(), chunk, opts.queue_depth));
    }
    opts.log("level=warn msg=\"io_uring ring setup failed, using portable I/O\" component=file_reader err=\"" +
             ring.status().message() + "\"");
  }
  return std::unique_ptr<FileReader>(new PreadReader(chunk));
}

}  // namespace stowage
