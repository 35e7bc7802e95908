#include "stowage/blob.h"

#include <gtest/gtest.h>

#include <random>

#include "backup/test_data.h"
#include "stowage/hash.h"

namespace stowage {
namespace {

using test::compressible_bytes;
using test::random_bytes;

TEST(Hash256, KnownVectorsAndHex) {
  EXPECT_EQ(sha256("").hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256("abc").hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 reused;
  EXPECT_EQ(reused.digest("abc"), sha256("abc"));
  EXPECT_EQ(reused.digest("abc"), sha256("abc"));  // context reuse gives the same answer

  const Hash256 h = sha256("x");
  auto parsed = Hash256::from_hex(h.hex());
  ASSERT_TRUE(parsed.is_ok());
  EXPECT_EQ(*parsed, h);
  EXPECT_EQ(Hash256::from_raw(h.raw().data()), h);
}

TEST(Hash256, FromHexRejectsMalformed) {
  const std::string good = sha256("x").hex();
  std::string upper = good;
  for (auto& c : upper) c = static_cast<char>(std::toupper(c));
  for (const std::string& bad : {std::string(), good.substr(1), good + "0", upper, "g" + good.substr(1)}) {
    auto r = Hash256::from_hex(bad);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  }
}

TEST(BlobCodec, CompressibleDataIsStoredAsZstdAndRoundTrips) {
  BlobCodec codec(3);
  const std::string plain = compressible_bytes(200000, 1);
  auto enc = codec.encode(BlobType::kData, plain);
  ASSERT_TRUE(enc.is_ok()) << enc.status().to_string();
  EXPECT_EQ(enc->compression, Compression::kZstd);
  EXPECT_LT(enc->stored.size(), plain.size() / 4);
  EXPECT_EQ(enc->raw_length, plain.size());
  EXPECT_EQ(enc->id, sha256(plain));
  EXPECT_EQ(enc->type, BlobType::kData);
  auto dec = codec.decode(enc->id, enc->compression, enc->raw_length, enc->stored);
  ASSERT_TRUE(dec.is_ok()) << dec.status().to_string();
  EXPECT_EQ(*dec, plain);
}

TEST(BlobCodec, IncompressibleDataIsStoredRaw) {
  BlobCodec codec(19);
  for (size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{100}, size_t{65536}}) {
    const std::string plain = random_bytes(n, n + 1);
    auto enc = codec.encode(BlobType::kTree, plain);
    ASSERT_TRUE(enc.is_ok());
    EXPECT_EQ(enc->compression, Compression::kRaw) << n;
    EXPECT_EQ(enc->stored, plain);
    EXPECT_EQ(enc->type, BlobType::kTree);
    auto dec = codec.decode(enc->id, enc->compression, enc->raw_length, enc->stored);
    ASSERT_TRUE(dec.is_ok()) << dec.status().to_string();
    EXPECT_EQ(*dec, plain);
  }
}

TEST(BlobCodec, IdDoesNotDependOnLevel) {
  const std::string plain = compressible_bytes(50000, 2);
  BlobCodec fast(1), slow(19);
  auto a = fast.encode(BlobType::kData, plain);
  auto b = slow.encode(BlobType::kData, plain);
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  EXPECT_EQ(a->id, b->id);
  auto dec = fast.decode(b->id, b->compression, b->raw_length, b->stored);
  ASSERT_TRUE(dec.is_ok());
  EXPECT_EQ(*dec, plain);
}

// encode_view() reuses one output buffer that is never zero-filled: blobs of
// growing and shrinking sizes, compressible and not, must give exactly what
// encode_hashed() gives, and a raw blob's bytes are the plaintext itself.
TEST(BlobCodec, EncodeViewMatchesEncodeAcrossBufferReuse) {
  BlobCodec viewing(1), copying(1);
  const size_t sizes[] = {2, 100, 70000, 3, 262144, 5000, 1, 0, 131072, 262144};
  for (size_t i = 0; i < std::size(sizes); ++i) {
    const size_t n = sizes[i];
    const std::string plain = i % 2 ? random_bytes(n, i) : compressible_bytes(n, i);
    const BlobId id = sha256(plain);
    auto v = viewing.encode_view(BlobType::kData, id, plain);
    ASSERT_TRUE(v.is_ok()) << v.status().to_string();
    auto e = copying.encode_hashed(BlobType::kData, id, plain);
    ASSERT_TRUE(e.is_ok()) << e.status().to_string();
    EXPECT_EQ(v->id, id);
    EXPECT_EQ(v->raw_length, n);
    EXPECT_EQ(v->compression, e->compression) << n;
    EXPECT_EQ(v->stored, e->stored) << n;
    if (v->compression == Compression::kRaw) {
      EXPECT_EQ(v->stored.data(), plain.data()) << "raw blobs are not copied";
    } else {
      EXPECT_LT(v->stored.size(), n);
    }
    auto dec = viewing.decode(id, v->compression, v->raw_length, v->stored);
    ASSERT_TRUE(dec.is_ok()) << dec.status().to_string();
    EXPECT_EQ(*dec, plain);
  }
  EXPECT_EQ(viewing.encode_view(BlobType::kData, BlobId{}, std::string(kMaxBlobSize + 1, 'a')).status().code(),
            Code::kInvalidArgument);
}

TEST(BlobCodec, RejectsOversizedPlaintext) {
  BlobCodec codec;
  auto r = codec.encode(BlobType::kData, std::string(kMaxBlobSize + 1, 'a'));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

void expect_corruption_naming(const Result<Bytes>& r, const BlobId& id) {
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().to_string();
  EXPECT_NE(r.status().message().find(id.hex()), std::string::npos) << r.status().message();
}

TEST(BlobCodec, DecodeDetectsMismatches) {
  BlobCodec codec;
  const std::string plain = compressible_bytes(10000, 3);
  auto z = codec.encode(BlobType::kData, plain);
  auto raw = codec.encode(BlobType::kData, random_bytes(1000, 4));
  ASSERT_TRUE(z.is_ok() && raw.is_ok());
  ASSERT_EQ(z->compression, Compression::kZstd);
  const BlobId other = sha256("other");

  expect_corruption_naming(codec.decode(other, z->compression, z->raw_length, z->stored), other);
  expect_corruption_naming(codec.decode(z->id, z->compression, z->raw_length + 1, z->stored), z->id);
  expect_corruption_naming(codec.decode(z->id, Compression::kRaw, z->raw_length, z->stored), z->id);
  expect_corruption_naming(codec.decode(z->id, static_cast<Compression>(7), z->raw_length, z->stored), z->id);
  expect_corruption_naming(codec.decode(z->id, z->compression, kMaxBlobSize + 1, z->stored), z->id);
  expect_corruption_naming(codec.decode(raw->id, Compression::kRaw, raw->raw_length, raw->stored.substr(1)),
                           raw->id);
  expect_corruption_naming(codec.decode(raw->id, Compression::kZstd, raw->raw_length, raw->stored), raw->id);
  std::string flipped = raw->stored;
  flipped[500] ^= 1;
  expect_corruption_naming(codec.decode(raw->id, Compression::kRaw, raw->raw_length, flipped), raw->id);
}

// Random damage to a zstd blob: decoding must never crash and must either fail
// with kCorruption or (if the damage hit bytes zstd ignores) return the exact
// original plaintext.
TEST(BlobCodec, RandomCorruptionNeverCrashes) {
  BlobCodec codec;
  const std::string plain = compressible_bytes(30000, 5);
  auto enc = codec.encode(BlobType::kData, plain);
  ASSERT_TRUE(enc.is_ok());
  std::mt19937_64 rng(99);
  int errors = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string damaged = enc->stored;
    switch (rng() % 3) {
      case 0:
        damaged[rng() % damaged.size()] ^= static_cast<char>(1 + rng() % 255);
        break;
      case 1:
        damaged.resize(rng() % damaged.size());
        break;
      default:
        damaged.insert(rng() % damaged.size(), 1, static_cast<char>(rng()));
        break;
    }
    auto r = codec.decode(enc->id, Compression::kZstd, enc->raw_length, damaged);
    if (r.is_ok()) {
      EXPECT_EQ(*r, plain);
    } else {
      EXPECT_EQ(r.status().code(), Code::kCorruption);
      ++errors;
    }
  }
  EXPECT_GT(errors, 1900);
}

}  // namespace
}  // namespace stowage
