#include "stowage/pack.h"

#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <random>

#include "backup/test_data.h"

namespace stowage {
namespace {

using test::compressible_bytes;
using test::random_bytes;

// A minimal in-memory ObjectStore that counts ranged reads, so the tests can
// check that read_pack_header fetches only the tail.
class MemoryStore : public ObjectStore {
 public:
  Status put(std::string_view key, std::string_view data, PutOptions opts) override {
    std::lock_guard lock(mu_);
    if (opts.create_only && objects_.count(std::string(key))) return Status::already_exists(std::string(key));
    objects_[std::string(key)] = std::string(data);
    return Status::ok();
  }
  Result<Bytes> get(std::string_view key, uint64_t offset, uint64_t length) override {
    std::lock_guard lock(mu_);
    auto it = objects_.find(std::string(key));
    if (it == objects_.end()) return Status::not_found(std::string(key));
    if (offset > it->second.size()) return Status::invalid_argument("range");
    ++gets;
    bytes_read += length == 0 ? it->second.size() - offset : std::min(length, it->second.size() - offset);
    return it->second.substr(offset, length == 0 ? std::string::npos : length);
  }
  Result<ObjectInfo> head(std::string_view key) override {
    std::lock_guard lock(mu_);
    auto it = objects_.find(std::string(key));
    if (it == objects_.end()) return Status::not_found(std::string(key));
    return ObjectInfo{it->first, it->second.size()};
  }
  Result<std::vector<ObjectInfo>> list(std::string_view) override { return Status::unimplemented("list"); }
  Status remove(std::string_view key) override {
    std::lock_guard lock(mu_);
    objects_.erase(std::string(key));
    return Status::ok();
  }
  StoreCaps caps() const override { return {}; }
  std::string describe() const override { return "memory"; }

  int gets = 0;
  uint64_t bytes_read = 0;

 private:
  std::mutex mu_;
  std::map<std::string, std::string, std::less<>> objects_;
};

struct BuiltPack {
  PackWriter::Finished pack;
  std::vector<std::string> plaintexts;
};

BuiltPack build_pack(size_t blobs, uint64_t seed, size_t blob_size = 3000) {
  BlobCodec codec;
  PackWriter writer;
  BuiltPack out;
  for (size_t i = 0; i < blobs; ++i) {
    std::string plain = i % 2 ? random_bytes(blob_size + i, seed + i) : compressible_bytes(blob_size + i, seed + i);
    auto enc = codec.encode(i % 5 == 0 ? BlobType::kTree : BlobType::kData, plain);
    EXPECT_TRUE(enc.is_ok());
    EXPECT_TRUE(writer.add(*enc).is_ok());
    out.plaintexts.push_back(std::move(plain));
  }
  auto finished = writer.finish();
  EXPECT_TRUE(finished.is_ok()) << finished.status().to_string();
  out.pack = std::move(finished).value();
  EXPECT_TRUE(writer.empty());
  return out;
}

TEST(Pack, LayoutMatchesFormatDoc) {
  const auto built = build_pack(3, 1);
  const auto& data = built.pack.data;
  const auto& blobs = built.pack.blobs;
  ASSERT_EQ(blobs.size(), 3u);
  const size_t header_len = kPackHeaderFixedSize + 3 * kPackEntrySize;
  const size_t blob_bytes = blobs.back().offset + blobs.back().stored_length;
  ASSERT_EQ(data.size(), blob_bytes + header_len + kPackTrailerSize);
  EXPECT_EQ(data.substr(data.size() - 8), "STOWPACK");
  EXPECT_EQ(data[blob_bytes], 1);  // version
  EXPECT_EQ(static_cast<uint8_t>(data[blob_bytes + 4]), 3);  // entry_count, little-endian
  EXPECT_EQ(data.substr(blob_bytes + 8, 32), blobs[0].id.raw());
  EXPECT_EQ(static_cast<uint8_t>(data[data.size() - 16]), header_len);  // header_length (LE low byte)
  EXPECT_EQ(data.substr(data.size() - 48, 32), sha256(data.substr(blob_bytes, header_len)).raw());
  EXPECT_EQ(built.pack.id, sha256(data));
  EXPECT_EQ(pack_key(built.pack.id), "data/" + built.pack.id.hex().substr(0, 2) + "/" + built.pack.id.hex());
}

TEST(Pack, RoundTripFromWholePackAndFromTail) {
  const auto built = build_pack(40, 2);
  const auto& data = built.pack.data;
  auto parsed = parse_pack_tail(data, data.size());
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  EXPECT_EQ(*parsed, built.pack.blobs);

  auto need = pack_tail_length(std::string_view(data).substr(data.size() - kPackTrailerSize), data.size());
  ASSERT_TRUE(need.is_ok());
  EXPECT_EQ(*need, kPackHeaderFixedSize + 40 * kPackEntrySize + kPackTrailerSize);
  auto from_tail = parse_pack_tail(std::string_view(data).substr(data.size() - *need), data.size());
  ASSERT_TRUE(from_tail.is_ok()) << from_tail.status().to_string();
  EXPECT_EQ(*from_tail, built.pack.blobs);
  // A tail one byte too short is the caller's error, not corruption.
  auto short_tail = parse_pack_tail(std::string_view(data).substr(data.size() - *need + 1), data.size());
  ASSERT_FALSE(short_tail.is_ok());
  EXPECT_EQ(short_tail.status().code(), Code::kInvalidArgument);

  BlobCodec codec;
  for (size_t i = 0; i < built.pack.blobs.size(); ++i) {
    const PackBlob& b = built.pack.blobs[i];
    auto plain = codec.decode(b.id, b.compression, b.raw_length, std::string_view(data).substr(b.offset, b.stored_length));
    ASSERT_TRUE(plain.is_ok()) << plain.status().to_string();
    EXPECT_EQ(*plain, built.plaintexts[i]);
    EXPECT_EQ(b.type, i % 5 == 0 ? BlobType::kTree : BlobType::kData);
  }
}

TEST(Pack, WriterRefusesWhatReadersWouldReject) {
  PackWriter writer;
  auto r = writer.finish();
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);

  EncodedBlob inconsistent;
  inconsistent.id = sha256("abc");
  inconsistent.compression = Compression::kRaw;
  inconsistent.raw_length = 4;
  inconsistent.stored = "abc";
  EXPECT_EQ(writer.add(inconsistent).code(), Code::kInvalidArgument);
  EXPECT_TRUE(writer.empty());
}

TEST(Pack, ReadHeaderFromStoreUsesRangedReads) {
  MemoryStore store;
  const auto small = build_pack(10, 3);
  ASSERT_TRUE(store.put(pack_key(small.pack.id), small.pack.data, {}).is_ok());
  auto blobs = read_pack_header(store, pack_key(small.pack.id));
  ASSERT_TRUE(blobs.is_ok()) << blobs.status().to_string();
  EXPECT_EQ(*blobs, small.pack.blobs);
  EXPECT_EQ(store.gets, 1);

  // A header larger than kPackTailGuess takes exactly one more read.
  const size_t many = kPackTailGuess / kPackEntrySize + 10;
  const auto big = build_pack(many, 4, 100);
  ASSERT_TRUE(store.put("big", big.pack.data, {}).is_ok());
  store.gets = 0;
  store.bytes_read = 0;
  auto big_blobs = read_pack_header(store, "big");
  ASSERT_TRUE(big_blobs.is_ok()) << big_blobs.status().to_string();
  EXPECT_EQ(big_blobs->size(), many);
  EXPECT_EQ(store.gets, 2);
  EXPECT_EQ(store.bytes_read, kPackHeaderFixedSize + many * kPackEntrySize + kPackTrailerSize);

  auto missing = read_pack_header(store, "nope");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  ASSERT_TRUE(store.put("tiny", "abc", {}).is_ok());
  auto tiny = read_pack_header(store, "tiny");
  ASSERT_FALSE(tiny.is_ok());
  EXPECT_EQ(tiny.status().code(), Code::kCorruption);
  EXPECT_NE(tiny.status().message().find("tiny"), std::string::npos);
}

void expect_corrupt(const std::string& data, const std::string& fragment) {
  auto r = parse_pack_tail(data, data.size());
  ASSERT_FALSE(r.is_ok()) << "accepted: " << fragment;
  EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().to_string();
  EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
}

TEST(Pack, RejectsSpecificDamageWithClearErrors) {
  const auto built = build_pack(4, 5);
  const std::string& good = built.pack.data;
  expect_corrupt(good.substr(0, good.size() - 1), "magic");
  expect_corrupt(good.substr(1), "header");  // truncated at the front: blobs no longer fit
  expect_corrupt(std::string(10, 'x'), "shorter than the trailer");

  std::string bad_flags = good;
  bad_flags[good.size() - 12] = 1;
  expect_corrupt(bad_flags, "flags");

  std::string bad_len = good;
  bad_len[good.size() - 16] = static_cast<char>(bad_len[good.size() - 16] + kPackEntrySize);
  expect_corrupt(bad_len, "checksum");

  std::string huge_len = good;
  huge_len[good.size() - 13] = 0x7f;
  expect_corrupt(huge_len, "does not fit");

  const size_t header_start = good.size() - kPackTrailerSize - (kPackHeaderFixedSize + 4 * kPackEntrySize);
  std::string bad_entry = good;
  bad_entry[header_start + 8 + 32] ^= 1;  // first blob's offset
  expect_corrupt(bad_entry, "checksum");

  std::string blob_flip = good;
  blob_flip[0] ^= 1;  // blob bytes are not covered by the header checksum...
  EXPECT_TRUE(parse_pack_tail(blob_flip, blob_flip.size()).is_ok());
  EXPECT_NE(sha256(blob_flip), built.pack.id);  // ...but by the pack id and each blob id.
}

// Rebuilds a pack with a hand-made header (valid checksum) to reach the checks
// behind the checksum.
std::string repack(const std::string& blob_bytes, std::string header) {
  std::string out = blob_bytes + header + std::string(sha256(header).raw());
  for (uint32_t v : {static_cast<uint32_t>(header.size()), 0u}) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  }
  return out + "STOWPACK";
}

TEST(Pack, RejectsInconsistentHeadersWithValidChecksum) {
  const auto built = build_pack(2, 6);
  const auto& blobs = built.pack.blobs;
  const std::string blob_bytes = built.pack.data.substr(0, blobs[1].offset + blobs[1].stored_length);
  auto header_of = [&](std::vector<PackBlob> entries, uint8_t version = 1) {
    std::string h;
    h.push_back(static_cast<char>(version));
    h.append(3, '\0');
    const auto n = static_cast<uint32_t>(entries.size());
    for (int i = 0; i < 4; ++i) h.push_back(static_cast<char>(n >> (8 * i)));
    for (const auto& e : entries) append_pack_entry(h, e);
    return h;
  };
  const std::string rebuilt = repack(blob_bytes, header_of(blobs));
  ASSERT_EQ(rebuilt, built.pack.data);  // the hand-made encoder agrees with PackWriter
  auto check = [&](const std::string& pack, const std::string& fragment) { expect_corrupt(pack, fragment); };
  check(repack(blob_bytes, header_of(blobs, 2)), "version");
  check(repack(blob_bytes, header_of({})), "no blobs");
  check(repack(blob_bytes, header_of({blobs[1], blobs[0]})), "starts at");
  check(repack(blob_bytes, header_of({blobs[0]})), "header starts at");
  check(repack(blob_bytes + "x", header_of(blobs)), "header starts at");
  auto gap = blobs;
  gap[1].offset += 1;
  check(repack(blob_bytes, header_of(gap)), "starts at");
  auto too_long = blobs;
  too_long[1].stored_length += 1000;
  if (too_long[1].compression == Compression::kRaw) too_long[1].raw_length += 1000;
  check(repack(blob_bytes, header_of(too_long)), "runs into the header");
  std::string h = header_of(blobs);
  h[8 + 44] = 9;
  check(repack(blob_bytes, h), "unknown type");
  h = header_of(blobs);
  h[8 + 45] = 9;
  check(repack(blob_bytes, h), "unknown compression");
  h = header_of(blobs);
  h[8 + 47] = 1;
  check(repack(blob_bytes, h), "reserved");
  h = header_of(blobs);
  h[1] = 1;
  check(repack(blob_bytes, h), "reserved header");
  h = header_of(blobs);
  h.push_back('\0');
  check(repack(blob_bytes, h), "does not match");
}

// Random damage anywhere in the pack's tail: parsing must never crash or read
// out of bounds (ASan), and every damaged header must be rejected (a change in
// the header or trailer always breaks the checksum, magic or a length rule).
TEST(Pack, RandomCorruptionOfTailIsAlwaysAnError) {
  const auto built = build_pack(20, 7, 500);
  const std::string& good = built.pack.data;
  const size_t tail_len = kPackHeaderFixedSize + 20 * kPackEntrySize + kPackTrailerSize;
  std::mt19937_64 rng(1234);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string damaged = good;
    const int kind = static_cast<int>(rng() % 4);
    if (kind == 0) {
      const size_t pos = damaged.size() - 1 - rng() % tail_len;
      damaged[pos] ^= static_cast<char>(1 + rng() % 255);
    } else if (kind == 1) {
      damaged.resize(damaged.size() - 1 - rng() % tail_len);
    } else if (kind == 2) {
      damaged.insert(damaged.size() - 1 - rng() % tail_len, 1 + rng() % 64, static_cast<char>(rng()));
    } else {
      for (int k = 0; k < 8; ++k) damaged[damaged.size() - 1 - rng() % tail_len] = static_cast<char>(rng());
      if (damaged == good) continue;
    }
    // Either the whole object or only a tail of it, as a ranged reader sees it.
    for (size_t keep : {damaged.size(), std::min<size_t>(damaged.size(), tail_len + rng() % 64)}) {
      const std::string_view tail = std::string_view(damaged).substr(damaged.size() - keep);
      auto r = parse_pack_tail(tail, damaged.size());
      ASSERT_FALSE(r.is_ok()) << "iteration " << iter << " kind " << kind;
      EXPECT_TRUE(r.status().code() == Code::kCorruption || r.status().code() == Code::kInvalidArgument)
          << r.status().to_string();
    }
  }
}

}  // namespace
}  // namespace stowage
