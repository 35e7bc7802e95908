// Packs (docs/FORMAT.md §4): many encoded blobs in one object, followed by a
// header listing them and a fixed 48-byte trailer, so a pack's contents can be
// learned from one ranged read of its tail and the index can be rebuilt from
// packs alone.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "stowage/blob.h"
#include "stowage/hash.h"
#include "stowage/object_store.h"
#include "stowage/status.h"

namespace stowage {

inline constexpr size_t kPackEntrySize = 48;
inline constexpr size_t kPackHeaderFixedSize = 8;
inline constexpr size_t kPackTrailerSize = 48;
inline constexpr uint8_t kPackVersion = 1;
inline constexpr std::string_view kPackMagic = "STOWPACK";
// How much of a pack's tail to fetch first; holds the header of a 16 MiB pack
// of chunks down to 4 KiB on average.
inline constexpr size_t kPackTailGuess = 64 * 1024;
inline constexpr uint32_t kDefaultPackSize = 16u << 20;
// Offsets are u32, so a pack must stay below 4 GiB.
inline constexpr uint64_t kMaxPackLength = 0xFFFFFFFFull;

// One entry of a pack header (and of an index file's pack record).
struct PackBlob {
  BlobId id;
  BlobType type = BlobType::kData;
  Compression compression = Compression::kRaw;
  uint32_t offset = 0;         // where the stored bytes start in the pack
  uint32_t stored_length = 0;  // bytes in the pack
  uint32_t raw_length = 0;     // plaintext bytes
  bool operator==(const PackBlob&) const = default;
};

// The 48-byte wire form of an entry (FORMAT.md §4), shared with index files.
void append_pack_entry(std::string& out, const PackBlob& blob);
// Parses one entry from exactly kPackEntrySize bytes at `p` and checks the
// per-entry rules (known codes, zero reserved bytes, raw_length limit, raw
// blobs have stored == raw). kCorruption otherwise; `what` names the source.
[[nodiscard]] Result<PackBlob> parse_pack_entry(const char* p, std::string_view what);

// "data/xx/<64 hex>".
std::string pack_key(const PackId& id);

// Builds one pack in memory. Not thread-safe.
class PackWriter {
 public:
  struct Finished {
    PackId id;                    // SHA-256 of `data`
    Bytes data;                   // the whole object
    std::vector<PackBlob> blobs;  // its header entries
  };

  // Appends an encoded blob. kResourceExhausted if the pack would reach
  // kMaxPackLength (callers finish packs long before: see blob_bytes()).
  [[nodiscard]] Status add(const EncodedBlobView& blob);
  [[nodiscard]] Status add(const EncodedBlob& blob) { return add(blob.view()); }

  // Stored bytes added so far (excluding header and trailer): compare with
  // the configured pack size to decide when to finish.
  size_t blob_bytes() const { return data_.size(); }
  // Pre-allocates room for `bytes` of pack (blobs, header and trailer), so a
  // pack closed near its target size holds one allocation of about that
  // size instead of a doubled string (which would double pack memory).
  void reserve(size_t bytes) { data_.reserve(bytes); }
  // Takes `buffer` (a finished pack's data, no longer needed) as the storage
  // of the next pack when the writer is empty, so a pipeline can cycle a
  // fixed set of pack buffers instead of allocating one per pack.
  void recycle(Bytes buffer) {
    if (!data_.empty() || buffer.capacity() <= data_.capacity()) return;
    buffer.clear();
    data_ = std::move(buffer);
  }
  size_t blob_count() const { return blobs_.size(); }
  bool empty() const { return blobs_.empty(); }

  // Appends header and trailer and returns the pack; the writer is empty
  // again afterwards. kFailedPrecondition if no blob was added (an empty pack
  // is invalid).
  [[nodiscard]] Result<Finished> finish();

 private:
  Bytes data_;
  std::vector<PackBlob> blobs_;
};

// Given the last bytes of a pack (`tail`, at least kPackTrailerSize of them,
// ending at the end of the pack) and the pack's total length, returns how many
// bytes from the end are needed to parse the header (header + trailer).
// kCorruption if the trailer is invalid.
[[nodiscard]] Result<uint64_t> pack_tail_length(std::string_view tail, uint64_t pack_length);

// Parses and validates a pack's header (every rule of FORMAT.md §4) from
// `tail`, the last bytes of the pack, of which there must be at least
// pack_tail_length(). Passing the whole pack is fine. kCorruption on any
// violation; never reads outside `tail`.
[[nodiscard]] Result<std::vector<PackBlob>> parse_pack_tail(std::string_view tail, uint64_t pack_length);

// Reads the header of the pack stored at `key` with ranged GETs: head, then
// the last kPackTailGuess bytes, then (rarely) the rest of a large header.
[[nodiscard]] Result<std::vector<PackBlob>> read_pack_header(ObjectStore& store, std::string_view key);

}  // namespace stowage
