// SHA-256 ids: every blob, pack, index file and snapshot in a repository is
// named by the SHA-256 of its bytes (docs/FORMAT.md §1). Hashing goes through
// OpenSSL EVP so that SHA-NI / ARMv8 crypto extensions are used when present.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "stowage/status.h"

namespace stowage {

// A 32-byte SHA-256 digest. Value type; ordered by bytes.
struct Hash256 {
  std::array<uint8_t, 32> bytes{};

  // 64 lowercase hex characters.
  std::string hex() const;
  // Parses 64 lowercase hex characters; anything else is kInvalidArgument.
  [[nodiscard]] static Result<Hash256> from_hex(std::string_view hex);
  // Takes exactly 32 raw bytes from `p` (the caller checked the length).
  static Hash256 from_raw(const void* p) {
    Hash256 h;
    std::memcpy(h.bytes.data(), p, h.bytes.size());
    return h;
  }
  std::string_view raw() const { return {reinterpret_cast<const char*>(bytes.data()), bytes.size()}; }

  auto operator<=>(const Hash256&) const = default;
  bool operator==(const Hash256&) const = default;
};

using BlobId = Hash256;
using PackId = Hash256;

namespace detail {
// Drawn once per process from std::random_device (hash.cc).
extern const uint64_t kHash256Key;
// A bijective 64-bit finalizer (MurmurHash3's fmix64): every input bit
// reaches every output bit.
constexpr uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}
}  // namespace detail

// For unordered containers and the index's table. An id is a digest only once
// its blob has been read and checked; ids in index files and trees are
// whatever the repository holds, and its writer can choose them to share
// their first bytes, turning every table into one long probe sequence. So all
// 32 bytes are mixed with a per-process random key: colliding ids cannot be
// chosen without it. Not cryptographic; a few nanoseconds per call.
struct Hash256Hasher {
  size_t operator()(const Hash256& h) const noexcept {
    uint64_t v = detail::kHash256Key;
    for (size_t i = 0; i < h.bytes.size(); i += 8) {
      uint64_t w;
      std::memcpy(&w, h.bytes.data() + i, sizeof w);
      v = detail::mix64(v ^ w);
    }
    return static_cast<size_t>(v);
  }
};

// A reusable SHA-256 hasher (keeps its EVP context and fetched algorithm, which
// matters with OpenSSL 3 where each implicit fetch takes a lock). Not
// thread-safe: use one per thread.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  Hash256 digest(std::string_view data);

 private:
  struct Impl;
  Impl* impl_;
};

// One-shot convenience; slower than reusing a Sha256 for many small inputs.
Hash256 sha256(std::string_view data);

// The "chunk sum" a tree entry records for each chunk (FORMAT.md §6.2
// `chunk_xxh128`): XXH3-128 (xxHash 0.8) keyed with a secret derived from
// the repository id, so that the next backup of a changed file can tell
// which of its parent's chunks are still there, byte for byte, at ≈ 20× the
// speed of cutting and SHA-256 hashing them (docs/BACKUP.md, changed
// files). Not an id: nothing is named by it, and it is only ever compared
// with the sum of the same file's parent chunk at the same offset.
struct ChunkSum {
  uint64_t high = 0;
  uint64_t low = 0;

  // 32 lowercase hex digits: the canonical (big-endian) form, high half first.
  std::string hex() const;
  // Parses 32 lowercase hex digits; anything else is kInvalidArgument.
  [[nodiscard]] static Result<ChunkSum> from_hex(std::string_view hex);

  bool operator==(const ChunkSum&) const = default;
};

// Computes chunk sums for one repository. The key matters: XXH3 with its
// public default secret is not collision resistant, and someone who writes
// into a file (a tenant's rows in a shared database file) could craft a
// page that makes a changed chunk sum like the old one, so the backup would
// keep the old bytes. With a secret they cannot know, they cannot aim.
// Immutable; share freely between threads.
class ChunkSummer {
 public:
  // The secret: SHA-256("stowage chunk_xxh128 v1" || id || i) for i = 0…5,
  // concatenated (192 bytes; FORMAT.md §6.2).
  explicit ChunkSummer(const Hash256& repository_id);

  ChunkSum operator()(std::string_view data) const;
  // The sum of the first `len` bytes of head + tail (len <= their total
  // size), without joining them.
  ChunkSum operator()(std::string_view head, std::string_view tail, size_t len) const;

  const std::array<uint8_t, 192>& secret() const { return secret_; }

 private:
  std::array<uint8_t, 192> secret_{};
};

}  // namespace stowage
