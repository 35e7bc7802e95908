#include "stowage/index.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>

#include "backup/test_data.h"

namespace stowage {
namespace {

PackBlob blob_at(uint64_t seed, uint32_t offset, uint32_t len) {
  PackBlob b;
  b.id = sha256(std::to_string(seed));
  b.type = seed % 3 == 0 ? BlobType::kTree : BlobType::kData;
  b.compression = seed % 2 == 0 ? Compression::kZstd : Compression::kRaw;
  b.offset = offset;
  b.stored_length = len;
  b.raw_length = b.compression == Compression::kRaw ? len : len * 3;
  return b;
}

// `packs` packs of `per_pack` blobs with ids derived from `seed`.
IndexFile make_file(int packs, int per_pack, uint64_t seed) {
  IndexFile f;
  for (int p = 0; p < packs; ++p) {
    IndexPack pack;
    pack.id = sha256("pack" + std::to_string(seed) + "/" + std::to_string(p));
    uint32_t off = 0;
    for (int i = 0; i < per_pack; ++i) {
      pack.blobs.push_back(blob_at(seed * 1'000'000 + static_cast<uint64_t>(p) * 1000 + static_cast<uint64_t>(i), off, 100 + static_cast<uint32_t>(i)));
      off += 100 + static_cast<uint32_t>(i);
    }
    pack.length = off + kPackHeaderFixedSize + static_cast<uint32_t>(per_pack * kPackEntrySize + kPackTrailerSize);
    f.packs.push_back(std::move(pack));
  }
  return f;
}

TEST(IndexFile, RoundTripAndLayout) {
  IndexFile f = make_file(3, 5, 1);
  f.supersedes = {sha256("old1"), sha256("old2")};
  const Bytes data = serialize_index_file(f);
  EXPECT_EQ(data.substr(0, 8), "STOWIDX1");
  EXPECT_EQ(data.size(), 8 + 4 + 4 + 4 + 2 * 32 + 4 + 3 * (32 + 4 + 4 + 5 * kPackEntrySize) + 32);
  EXPECT_EQ(data.substr(data.size() - 32), sha256(data.substr(0, data.size() - 32)).raw());
  auto parsed = parse_index_file(data);
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  EXPECT_EQ(*parsed, f);
  EXPECT_EQ(index_key(sha256(data)), "index/" + sha256(data).hex());

  auto empty = parse_index_file(serialize_index_file(IndexFile{}));
  ASSERT_TRUE(empty.is_ok());
  EXPECT_TRUE(empty->packs.empty());
}

// Re-signs a damaged body so that the checks behind the checksum are reached.
std::string resign(std::string body) { return body + std::string(sha256(body).raw()); }

void expect_corrupt(const std::string& data, const std::string& fragment) {
  auto r = parse_index_file(data);
  ASSERT_FALSE(r.is_ok()) << "accepted: " << fragment;
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
}

TEST(IndexFile, RejectsDamage) {
  const Bytes good = serialize_index_file(make_file(2, 3, 2));
  const std::string body = good.substr(0, good.size() - 32);
  expect_corrupt(good.substr(0, 10), "too short");
  std::string flipped = good;
  flipped[50] ^= 1;
  expect_corrupt(flipped, "checksum");
  expect_corrupt(good + "x", "checksum");
  std::string b = body;
  b[0] = 'X';
  expect_corrupt(resign(b), "magic");
  b = body;
  b[8] = 2;
  expect_corrupt(resign(b), "version");
  b = body;
  b[12] = 1;
  expect_corrupt(resign(b), "flags");
  b = body;
  b[16] = static_cast<char>(0xff);  // supersedes count
  expect_corrupt(resign(b), "supersedes");
  b = body;
  b[20] = static_cast<char>(0xff);  // pack count
  expect_corrupt(resign(b), "pack count");
  b = body;
  b[24 + 32 + 4] = static_cast<char>(0xff);  // entry count of pack 0
  expect_corrupt(resign(b), "entry count");
  b = body;
  b[24 + 32] = 10;  // pack length too small
  b[24 + 33] = b[24 + 34] = b[24 + 35] = 0;
  expect_corrupt(resign(b), "length too small");
  b = body;
  b[24 + 40 + 32 + 4] = static_cast<char>(0xf0);  // first entry: stored length far beyond the pack
  b[24 + 40 + 32 + 5] = static_cast<char>(0xff);
  expect_corrupt(resign(b), "outside the pack");
  b = body;
  b[24 + 40 + 44] = 7;  // first entry: unknown type
  expect_corrupt(resign(b), "unknown type");
  expect_corrupt(resign(body + "zz"), "trailing");
  // A compressed blob longer than zstd ever makes of kMaxBlobSize bytes, in a
  // pack claimed long enough to hold it: a reader would fetch gigabytes.
  IndexFile huge = make_file(1, 1, 2);
  ASSERT_EQ(huge.packs[0].blobs[0].compression, Compression::kZstd);
  huge.packs[0].length = 0xFFFFFFFFu;
  huge.packs[0].blobs[0].stored_length = 0xF0000000u;
  expect_corrupt(serialize_index_file(huge), "stored length");
}

TEST(IndexFile, RandomCorruptionNeverCrashes) {
  const Bytes good = serialize_index_file(make_file(4, 10, 3));
  const std::string body = good.substr(0, good.size() - 32);
  std::mt19937_64 rng(77);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string b = body;
    for (int k = 0; k < 1 + static_cast<int>(rng() % 4); ++k) b[rng() % b.size()] = static_cast<char>(rng());
    if (rng() % 4 == 0) b.resize(rng() % b.size());
    // Re-signed so that the structural checks, not just the checksum, are hit.
    auto r = parse_index_file(resign(b));
    if (r.is_ok()) {
      // Damage confined to ids or to self-consistent values: must re-serialise
      // to the very same bytes (nothing read out of bounds or invented).
      EXPECT_EQ(serialize_index_file(*r), resign(b));
    } else {
      EXPECT_EQ(r.status().code(), Code::kCorruption);
    }
  }
}

TEST(Index, AddFindContainsAndFirstLocationWins) {
  Index index;
  const IndexFile f = make_file(3, 50, 4);
  ASSERT_TRUE(index.merge(f).is_ok());
  EXPECT_EQ(index.size(), 150u);
  EXPECT_EQ(index.pack_count(), 3u);
  for (const auto& p : f.packs) {
    for (const auto& b : p.blobs) {
      auto loc = index.find(b.id);
      ASSERT_TRUE(loc.has_value());
      EXPECT_EQ(loc->pack, p.id);
      EXPECT_EQ(loc->pack_length, p.length);
      EXPECT_EQ(loc->type, b.type);
      EXPECT_EQ(loc->compression, b.compression);
      EXPECT_EQ(loc->offset, b.offset);
      EXPECT_EQ(loc->stored_length, b.stored_length);
      EXPECT_EQ(loc->raw_length, b.raw_length);
      EXPECT_TRUE(index.contains(b.id));
    }
  }
  EXPECT_FALSE(index.contains(sha256("absent")));
  EXPECT_FALSE(index.find(sha256("absent")).has_value());

  // The same blob in another pack (two backups uploaded it): first one stays.
  const PackBlob dup = f.packs[0].blobs[0];
  auto added = index.add(sha256("another pack"), 12345, dup);
  ASSERT_TRUE(added.is_ok());
  EXPECT_FALSE(*added);
  EXPECT_EQ(index.find(dup.id)->pack, f.packs[0].id);
  EXPECT_EQ(index.size(), 150u);
}

TEST(Index, MergeOfSeveralFilesAndToFileRoundTrip) {
  Index index;
  const IndexFile a = make_file(2, 20, 5), b = make_file(3, 7, 6);
  ASSERT_TRUE(index.merge(a).is_ok());
  ASSERT_TRUE(index.merge(b).is_ok());
  ASSERT_TRUE(index.merge(a).is_ok());  // overlapping merge adds nothing
  EXPECT_EQ(index.size(), 40u + 21u);
  EXPECT_EQ(index.pack_count(), 5u);
  IndexFile expected;
  expected.packs = a.packs;
  expected.packs.insert(expected.packs.end(), b.packs.begin(), b.packs.end());
  EXPECT_EQ(index.to_file(), expected);
  auto reparsed = parse_index_file(serialize_index_file(index.to_file()));
  ASSERT_TRUE(reparsed.is_ok());
  EXPECT_EQ(*reparsed, expected);
}

// FORMAT.md §9 / DESIGN.md §8: the in-memory index stays within 64 bytes per
// blob. 200k blobs in 16 MiB packs of 64 KiB chunks (256 per pack).
TEST(Index, MemoryPerBlobWithinBudget) {
  Index index;
  const int kPacks = 800, kPerPack = 256;
  for (int p = 0; p < kPacks; ++p) {
    const PackId pack = sha256("p" + std::to_string(p));
    for (int i = 0; i < kPerPack; ++i) {
      PackBlob b = blob_at(static_cast<uint64_t>(p) * kPerPack + static_cast<uint64_t>(i), static_cast<uint32_t>(i) * 65536, 65536);
      b.compression = Compression::kRaw;
      b.raw_length = b.stored_length;
      auto r = index.add(pack, 16u << 20, b);
      ASSERT_TRUE(r.is_ok() && *r);
    }
    // Check at every pack boundary, i.e. just before and after table growth.
    if (index.size() >= 20000) {
      const double per_blob = static_cast<double>(index.memory_bytes()) / static_cast<double>(index.size());
      ASSERT_LE(per_blob, 64.0) << "at " << index.size() << " blobs";
    }
  }
  const double per_blob = static_cast<double>(index.memory_bytes()) / static_cast<double>(index.size());
  std::printf("index: %zu blobs, %zu packs, %.1f bytes per blob\n", index.size(), index.pack_count(), per_blob);
  EXPECT_EQ(index.size(), size_t{kPacks} * kPerPack);
  for (int k = 0; k < 1000; ++k) EXPECT_TRUE(index.contains(sha256(std::to_string(k * 97))));
}

// A repository's writer chooses the ids in its index files and trees (they
// are checked against content only when a blob is read), so ids made to agree
// in the bytes a hash looks at must still spread over a table's buckets;
// otherwise loading such an index takes quadratic time.
TEST(Index, IdsChosenToShareBytesStillSpreadOverBuckets) {
  const size_t kIds = 4096, kBuckets = 4096;
  // Each family varies two bytes of otherwise equal ids: the tail, the high
  // bytes of the first word, the second word's low bytes.
  for (size_t first : {30u, 6u, 8u}) {
    std::set<size_t> buckets;
    for (size_t i = 0; i < kIds; ++i) {
      Hash256 id = sha256("shared");
      id.bytes[first] = static_cast<uint8_t>(i);
      id.bytes[first + 1] = static_cast<uint8_t>(i >> 8);
      buckets.insert(Hash256Hasher{}(id) % kBuckets);
    }
    // Uniform hashing fills 1 - 1/e of them, about 2589 (sd ≈ 25).
    EXPECT_GT(buckets.size(), 2400u) << "ids varying in bytes " << first << ".." << first + 1;
  }
  // And the index itself keeps them apart.
  Index index;
  const PackId pack = sha256("pack");
  for (uint32_t i = 0; i < 20000; ++i) {
    PackBlob b = blob_at(i, i * 100, 100);
    b.id = sha256("shared");
    std::memcpy(b.id.bytes.data() + 28, &i, sizeof i);
    auto r = index.add(pack, 16u << 20, b);
    ASSERT_TRUE(r.is_ok() && *r) << i;
  }
  EXPECT_EQ(index.size(), 20000u);
  Hash256 probe = sha256("shared");
  uint32_t k = 12345;
  std::memcpy(probe.bytes.data() + 28, &k, sizeof k);
  ASSERT_TRUE(index.find(probe).has_value());
  EXPECT_EQ(index.find(probe)->offset, 12345u * 100);
  k = 20000;
  std::memcpy(probe.bytes.data() + 28, &k, sizeof k);
  EXPECT_FALSE(index.contains(probe));
}

}  // namespace
}  // namespace stowage
