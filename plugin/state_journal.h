// StateJournal: the daemon's write-ahead log. Each state change (a volume's
// full new record, or its deletion) is appended as one checksummed frame, and
// commit() returns once the frame is on disk. Concurrent commits share one
// fdatasync (group commit): with many clients, one disk flush acknowledges a
// whole batch instead of two or three flushes per call.
//
// Files live in <state root>/journal/ as <generation, 16 hex digits>.log. The
// volume manager rotates to a new generation, writes the changed records to
// their volume.json files, and then deletes the old generation (checkpoint).
//
// Frame: u32 payload length (little endian) | 8 bytes of SHA-256(payload) | payload.
// A crash can leave a torn last frame; reading stops at the first frame that
// does not check out, unless the frame its length field points to checks out
// (Generation::damaged). Every frame before a flushed one is flushed too (one
// fdatasync covers the whole file), so a host crash can only lose frames
// committed with Durability::kProcess after the last flush.
//
// Preallocation: create() can fill a new generation with zeros and flush it
// first. Frames are then written over the zeros, so the file's size does not
// change and a commit's fdatasync flushes only the frame's data block, not the
// inode (and, on a journalling filesystem, no metadata transaction). Past the
// preallocated size, frames extend the file as before. A zero length field can
// never start a frame (its checksum would be that of an empty payload), so
// reading stops at the zero tail; a tail of zeros is not reported as torn.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "stowage/status.h"

namespace stowage {

class StateJournal {
 public:
  struct Generation {
    uint64_t number = 0;
    std::string path;
    std::vector<std::string> payloads;  // intact frames, in order
    bool torn_tail = false;             // bytes after the last intact frame were ignored
    // Offsets of frames that did not check out although the frame their
    // length field points to does: damage in the middle of the file (or, after
    // a host crash, an unflushed frame that reached the disk before an earlier
    // one). Reading goes on after each; `payloads` lacks the damaged frames.
    std::vector<uint64_t> damaged;
  };

  // Every generation in `dir`, oldest first. A missing directory is empty.
  [[nodiscard]] static Result<std::vector<Generation>> read_all(const std::string& dir);

  // Like read_all() without reading the files: only `number` and `path` are set.
  [[nodiscard]] static Result<std::vector<Generation>> list(const std::string& dir);

  // What commit() and create()'s preallocation flush with: fdatasync(2)
  // unless a test puts a failing one in its place (returns -1 with errno
  // set, as fdatasync does).
  using SyncFn = std::function<int(int fd)>;

  // Creates generation `number` in `dir` (which must exist) and makes its
  // directory entry durable. kAlreadyExists if that generation exists. With
  // `preallocate_bytes` > 0 the file is first filled with that many zero bytes
  // and flushed (see above).
  [[nodiscard]] static Result<std::unique_ptr<StateJournal>> create(const std::string& dir, uint64_t number,
                                                                    uint64_t preallocate_bytes = 0,
                                                                    SyncFn sync = {});

  ~StateJournal();

  // How much of a crash a committed frame survives.
  enum class Durability {
    kDisk,     // flushed to the disk with every earlier frame: survives a host crash
    kProcess,  // written to the file (the page cache): survives the daemon's crash, not
               // the host's. For changes a reboot voids anyway; a later kDisk commit
               // flushes it along with its own frame.
  };

  // Appends `payload`; with kDisk, waits until it and every earlier frame are
  // flushed. Thread-safe. A write that fails (ENOSPC: kResourceExhausted)
  // fails this commit only; once space is freed the next commit works. After
  // a failed flush every later commit fails too: the file's state is unknown,
  // and the daemon must not acknowledge anything more in this generation.
  // `*appended` (if given) tells a failed commit whose frame was written,
  // and so may reach the disk and be replayed, from one that wrote nothing.
  [[nodiscard]] Status commit(std::string_view payload, Durability durability = Durability::kDisk,
                              bool* appended = nullptr);

  uint64_t number() const { return number_; }
  const std::string& path() const { return path_; }
  // Bytes of frames committed (not the preallocated size).
  uint64_t bytes() const;
  // fdatasync calls made by commit() (concurrent kDisk commits share one).
  uint64_t flushes() const;

 private:
  StateJournal(int fd, uint64_t number, std::string path, uint64_t preallocated, SyncFn sync)
      : fd_(fd), number_(number), path_(std::move(path)), preallocated_(preallocated), sync_(std::move(sync)) {}

  int fd_;
  uint64_t number_;
  std::string path_;
  uint64_t preallocated_;  // bytes of zeros the file started with
  SyncFn sync_;            // fdatasync unless a test gave another
  mutable std::mutex mu_;
  std::condition_variable flushed_;
  uint64_t appended_ = 0;  // frames written to the file
  uint64_t durable_ = 0;   // frames known flushed
  uint64_t bytes_ = 0;
  uint64_t flushes_ = 0;
  bool flushing_ = false;
  Status failed_;  // sticky: set by a failed flush
};

// "<dir>/<16 hex digits>.log"
std::string journal_path(const std::string& dir, uint64_t number);

}  // namespace stowage
