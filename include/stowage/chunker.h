// Content-defined chunking for backups: FastCDC (gear rolling hash, normalised
// chunking with two masks), exactly as specified in docs/FORMAT.md §3.1. The
// parameters live in the repository config; chunking the same bytes with the
// same parameters always yields the same boundaries, on every host and version.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "stowage/status.h"

namespace stowage {

// "STOWAGE1" in ASCII: the default gear table seed (docs/FORMAT.md §3.1).
inline constexpr uint64_t kDefaultGearSeed = 0x53544F5741474531ULL;
inline constexpr uint32_t kDefaultAvgChunkSize = 64 * 1024;  // measured: docs/FORMAT.md §3.2

struct ChunkerParams {
  uint32_t min_size = kDefaultAvgChunkSize / 4;
  uint32_t avg_size = kDefaultAvgChunkSize;
  uint32_t max_size = kDefaultAvgChunkSize * 4;
  uint64_t gear_seed = kDefaultGearSeed;
  uint32_t normalization = 2;  // FastCDC normalisation level

  // The repository defaults around `avg`: min = avg/4, max = 4·avg.
  static ChunkerParams with_average(uint32_t avg);

  // kInvalidArgument unless 64 <= min < avg < max <= 64 MiB, avg is a power of
  // two in [256, 16 MiB] and 1 <= normalization <= 4.
  [[nodiscard]] Status validate() const;

  bool operator==(const ChunkerParams&) const = default;
};

// The 256-entry gear table, SplitMix64 from `seed` (docs/FORMAT.md §3.1).
std::array<uint64_t, 256> make_gear_table(uint64_t seed);

// Finds chunk boundaries. Immutable after creation, so one instance may be
// shared by any number of threads.
class Chunker {
 public:
  // kInvalidArgument if params.validate() fails.
  [[nodiscard]] static Result<Chunker> create(const ChunkerParams& params);

  // Length of the chunk that starts at data[0]. `data` must hold either at
  // least max_size bytes or everything up to the end of the input; then the
  // result is in [1, min(max_size, data.size())] (0 only for empty data) and at
  // least min_size unless data.size() < min_size.
  size_t cut(std::string_view data) const;
  // As cut() on the concatenation of `head` and `tail`, without making it:
  // for a stream consumer holding the start of a chunk from an earlier read
  // buffer (ChunkFeeder), which then copies only the chunk, not a max_size
  // window. The same length as cut(head + tail), under the same condition on
  // the total size.
  size_t cut(std::string_view head, std::string_view tail) const;

  // Convenience for whole in-memory inputs: the lengths of all chunks of
  // `data`, in order; they sum to data.size().
  std::vector<size_t> split(std::string_view data) const;

  const ChunkerParams& params() const { return params_; }

 private:
  explicit Chunker(const ChunkerParams& params);

  ChunkerParams params_;
  uint64_t mask_s_ = 0;  // before avg_size: more one-bits, harder to cut
  uint64_t mask_l_ = 0;  // after avg_size: fewer one-bits, easier to cut
  std::array<uint64_t, 256> gear_{};
  std::array<uint64_t, 256> gear2_{};  // gear_[b] << 1: two bytes per step in cut()
};

// Chunks a byte stream read through `read` with a buffer of 2·max_size bytes.
// `chunker` must outlive it. Not thread-safe; one per stream.
class StreamChunker {
 public:
  // Fills up to `len` bytes at `buf`; returns the count, 0 only at end of input.
  using ReadFn = std::function<Result<size_t>(char* buf, size_t len)>;

  StreamChunker(const Chunker& chunker, ReadFn read);

  // The next chunk, or std::nullopt at end of input. The view stays valid
  // until the next call. Read errors are returned as they are.
  [[nodiscard]] Result<std::optional<std::string_view>> next();

 private:
  const Chunker& chunker_;
  ReadFn read_;
  std::vector<char> buf_;
  size_t begin_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
};

}  // namespace stowage
