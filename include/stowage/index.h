// The repository index (docs/FORMAT.md §5, §9): where every blob lives (pack,
// offset, lengths). Index files are the stored form, one per backup (or prune
// rewrite); Index is the in-memory map used for dedup and restore, laid out to
// stay under 64 bytes per blob.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "stowage/hash.h"
#include "stowage/pack.h"
#include "stowage/status.h"

namespace stowage {

inline constexpr std::string_view kIndexMagic = "STOWIDX1";
inline constexpr uint32_t kIndexVersion = 1;

// One pack's record in an index file: its id, total length and blobs.
struct IndexPack {
  PackId id;
  uint32_t length = 0;
  std::vector<PackBlob> blobs;
  bool operator==(const IndexPack&) const = default;
};

struct IndexFile {
  std::vector<Hash256> supersedes;  // index files this one replaces (prune)
  std::vector<IndexPack> packs;
  bool operator==(const IndexFile&) const = default;
};

// "index/<64 hex>".
std::string index_key(const Hash256& id);

// The stored bytes of `file`; its object id is sha256() of them.
Bytes serialize_index_file(const IndexFile& file);

// Parses and validates an index file (every rule of FORMAT.md §5). Counts are
// checked against the remaining bytes before anything is allocated, so hostile
// input cannot cause large allocations. kCorruption on any violation.
[[nodiscard]] Result<IndexFile> parse_index_file(std::string_view data);

// Where a blob is.
struct BlobLocation {
  PackId pack;
  uint32_t pack_length = 0;
  BlobType type = BlobType::kData;
  Compression compression = Compression::kRaw;
  uint32_t offset = 0;
  uint32_t stored_length = 0;
  uint32_t raw_length = 0;
};

// In-memory map blob id → location. One 48-byte record per blob in blocks of
// 1024, an open-addressing table of u32 record numbers (3/8..3/4 full), one
// entry per pack. Keeps the first location added for an id. Not thread-safe:
// callers that share one across threads must lock (reads may run concurrently
// with each other, not with add).
class Index {
 public:
  Index();
  ~Index();
  Index(Index&&) noexcept;
  Index& operator=(Index&&) noexcept;

  // Records that `blob` is in `pack` (of `pack_length` bytes). Returns true if
  // the id was new, false if it was already known (the old location stays).
  // kResourceExhausted past 2^28 packs or 2^32 - 1 blobs.
  [[nodiscard]] Result<bool> add(const PackId& pack, uint32_t pack_length, const PackBlob& blob);
  // Adds every blob of `pack` / of every pack of `file`.
  [[nodiscard]] Status add_pack(const IndexPack& pack);
  [[nodiscard]] Status merge(const IndexFile& file);

  std::optional<BlobLocation> find(const BlobId& id) const;
  bool contains(const BlobId& id) const;

  size_t size() const { return count_; }
  size_t pack_count() const { return packs_.size(); }
  // Bytes of heap held by this index (records, table, pack list), for the
  // 64-bytes-per-blob budget.
  size_t memory_bytes() const;

  // Every blob, grouped by pack (packs in the order they were first added,
  // blobs by offset), with no supersedes list: the stored form of this index.
  IndexFile to_file() const;

 private:
  struct Record;
  struct PackRef {
    PackId id;
    uint32_t length;
  };

  Record& record(uint32_t n) const;
  uint32_t find_slot(const BlobId& id) const;  // slot holding id, or the empty slot where it would go
  void grow();

  std::vector<std::unique_ptr<Record[]>> blocks_;
  std::vector<uint32_t> slots_;  // 0 = empty, else record number + 1
  std::vector<PackRef> packs_;
  std::unordered_map<PackId, uint32_t, Hash256Hasher> pack_numbers_;
  size_t count_ = 0;
};

}  // namespace stowage
