// Sequential whole-file reader for the backup pipeline: keeps a queue of reads in
// flight (io_uring, fixed buffers) so the disk never waits for the chunker, with
// a pread fallback when io_uring is refused. Chunks arrive in order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "stowage/io_uring_probe.h"
#include "stowage/status.h"

namespace stowage {

struct FileReaderOptions {
  size_t chunk_size = 1 << 20;  // bytes per read; > 0, rounded up to 4096
  unsigned queue_depth = 8;     // reads in flight (1..64)
  IoUringProbe io_uring_probe = {};  // empty = probe_io_uring(); see io_uring_probe.h
  LogSink log = {};             // empty = stderr_log_sink()
  bool force_portable = false;  // use pread even when io_uring works
  // Files of at least this many bytes are read with O_DIRECT where the file
  // system allows it (0 = never): the device writes straight into the reader's
  // buffers, so the kernel's copy out of the page cache — about a quarter of a
  // cold backup's CPU — is skipped, and a backup does not evict the page cache.
  // io_uring only. Any refusal (open or a read failing with EINVAL) falls back
  // to buffered reads of the same file; the unaligned tail after a short read
  // is read buffered. Dirty cached pages are written back by the kernel before
  // a direct read, so the bytes are the same as a buffered read's.
  uint64_t direct_min_size = 0;
  // Extra buffers (0..64) for read_file_lending(): while the callback keeps
  // some, the io_uring reader goes on reading into these.
  unsigned lend_buffers = 0;
};

// Called once per chunk, in file order. `data` is valid only during the call;
// every chunk is chunk_size bytes except the last. A non-OK return stops the
// read and read_file returns that status.
using ChunkCallback = std::function<Status(uint64_t offset, std::span<const std::byte> data)>;

// A read buffer kept past its callback (read_file_lending()): the bytes the
// callback got stay valid and unchanged until every copy of the hold is
// dropped, which may happen on any thread.
using BufferHold = std::shared_ptr<const void>;
// As ChunkCallback; copying `hold` keeps `data` valid beyond the call.
using LendingChunkCallback =
    std::function<Status(uint64_t offset, std::span<const std::byte> data, const BufferHold& hold)>;

// Not thread-safe: one reader per thread (it owns a ring and its buffers).
class FileReader {
 public:
  virtual ~FileReader() = default;

  // Probes io_uring once; on refusal logs one warn line and reads with pread.
  // kInvalidArgument for a zero chunk_size or an out-of-range queue_depth.
  [[nodiscard]] static Result<std::unique_ptr<FileReader>> create(FileReaderOptions opts = {});

  // Reads `path` from offset 0 to the end seen at EOF (a file growing during the
  // read is read until a read returns 0). Returns the number of bytes delivered.
  // Errors: kNotFound if missing, kInvalidArgument for a directory, the
  // callback's status if it stops the read, I/O errors as errno_status().
  [[nodiscard]] Result<uint64_t> read_file(const std::string& path, const ChunkCallback& on_chunk);

  // As read_file(), but the callback may keep the buffer it is given by
  // copying `hold` (so a consumer on another thread can use the bytes without
  // a copy). The io_uring reader then reads into its other buffers
  // (queue_depth + lend_buffers in all) and, when every one is held, waits
  // until a hold is dropped on another thread; the pread reader allocates a
  // new buffer. Every hold must be dropped before the reader is destroyed.
  [[nodiscard]] Result<uint64_t> read_file_lending(const std::string& path, const LendingChunkCallback& on_chunk);

  // As read_file() and read_file_lending(), of the file the caller has open
  // at `fd` (read from offset 0 with positioned reads; neither closed nor
  // moved). Nothing is looked up by name, so what is read is the file the
  // caller opened, wherever it is now (a backup opens it relative to a
  // directory descriptor). `name` is only for error messages. O_DIRECT reads
  // go through a second descriptor reopened from /proc/self/fd/<fd>; without
  // /proc the file is read buffered.
  [[nodiscard]] virtual Result<uint64_t> read_open(int fd, const std::string& name,
                                                   const ChunkCallback& on_chunk) = 0;
  [[nodiscard]] virtual Result<uint64_t> read_open_lending(int fd, const std::string& name,
                                                           const LendingChunkCallback& on_chunk) = 0;

  // True when reads go through io_uring.
  virtual bool uses_io_uring() const = 0;

  // Bytes delivered so far that were read with O_DIRECT (see direct_min_size).
  virtual uint64_t direct_bytes() const { return 0; }
};

}  // namespace stowage
