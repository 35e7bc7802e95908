// Blob encoding (docs/FORMAT.md §3.3): a blob is a chunk of file data or a
// tree; its id is SHA-256 of the plaintext; it is stored as a zstd frame when
// that is strictly smaller, raw otherwise. Decoding verifies the id, so a
// corrupted pack or a lying index is always reported as kCorruption.
#pragma once

#include <cstdint>
#include <string_view>

#include "stowage/hash.h"
#include "stowage/object_store.h"
#include "stowage/status.h"

namespace stowage {

enum class BlobType : uint8_t { kData = 0, kTree = 1 };
enum class Compression : uint8_t { kRaw = 0, kZstd = 1 };

// Largest plaintext a blob may have; bounds what a hostile header can make a
// reader allocate.
inline constexpr uint32_t kMaxBlobSize = 64u << 20;
// Level 1, not zstd's default 3: on a 3.2 GB PostgreSQL + small-files backup
// it halved compression CPU (12.3 s vs 22.0 s user) for 0.7 % more stored
// bytes (docs/FORMAT.md §3.3).
inline constexpr int kDefaultZstdLevel = 1;

std::string_view blob_type_name(BlobType type);

// An encoded blob whose stored bytes are borrowed, for a caller that copies
// them straight into a pack (BlobCodec::encode_view, PackWriter::add).
struct EncodedBlobView {
  BlobId id;
  BlobType type = BlobType::kData;
  Compression compression = Compression::kRaw;
  uint32_t raw_length = 0;
  std::string_view stored;  // the bytes that go into a pack
};

struct EncodedBlob {
  BlobId id;
  BlobType type = BlobType::kData;
  Compression compression = Compression::kRaw;
  uint32_t raw_length = 0;
  Bytes stored;  // the bytes that go into a pack

  // Valid while this blob lives and is not modified.
  EncodedBlobView view() const { return {id, type, compression, raw_length, stored}; }
};

// Encodes and decodes blobs. Keeps its zstd and SHA-256 contexts between calls
// (allocating them per blob costs more than compressing a small one). Not
// thread-safe: use one per worker thread.
class BlobCodec {
 public:
  // `zstd_level` is clamped to zstd's supported range.
  explicit BlobCodec(int zstd_level = kDefaultZstdLevel);
  ~BlobCodec();
  BlobCodec(const BlobCodec&) = delete;
  BlobCodec& operator=(const BlobCodec&) = delete;

  // Hashes and compresses `plaintext`. kInvalidArgument if it is larger than
  // kMaxBlobSize; kInternal if zstd fails (a bug or out of memory).
  [[nodiscard]] Result<EncodedBlob> encode(BlobType type, std::string_view plaintext);
  // As encode(), for a caller that already hashed the plaintext to dedup it:
  // `id` must be SHA-256(plaintext) (not checked: the backup pipeline would
  // otherwise hash every new chunk twice).
  [[nodiscard]] Result<EncodedBlob> encode_hashed(BlobType type, const BlobId& id, std::string_view plaintext);
  // As encode_hashed(), without copying the result: `stored` points into a
  // buffer this codec owns (compressed) or into `plaintext` (stored raw), and
  // is valid until the next call on this codec and while `plaintext` lives.
  // The codec's buffer is grown as needed and never zero-filled, so a chunk
  // costs neither an allocation nor a memset of its size.
  [[nodiscard]] Result<EncodedBlobView> encode_view(BlobType type, const BlobId& id, std::string_view plaintext);

  // Returns the plaintext of a stored blob, checking that it has `raw_length`
  // bytes and hashes to `id`. Any mismatch or undecodable input is
  // kCorruption with a message naming the blob id.
  [[nodiscard]] Result<Bytes> decode(const BlobId& id, Compression compression, uint32_t raw_length,
                                     std::string_view stored);

  int level() const { return level_; }

 private:
  struct Impl;
  Impl* impl_;
  int level_;
};

}  // namespace stowage
