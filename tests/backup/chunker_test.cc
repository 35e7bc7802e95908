#include "stowage/chunker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <string>

#include "backup/test_data.h"

namespace stowage {
namespace {

using test::random_bytes;

ChunkerParams small_params() {
  // Small sizes keep the ASan run fast while exercising every code path.
  return ChunkerParams::with_average(4096);
}

Chunker make(const ChunkerParams& p) {
  auto c = Chunker::create(p);
  EXPECT_TRUE(c.is_ok()) << c.status().to_string();
  return std::move(c).value();
}

std::set<std::string> chunk_set(const Chunker& c, const std::string& data) {
  std::set<std::string> out;
  size_t off = 0;
  for (size_t len : c.split(data)) {
    out.insert(data.substr(off, len));
    off += len;
  }
  return out;
}

TEST(ChunkerParams, DefaultsAreValidAndMatchFormatDoc) {
  ChunkerParams p;
  EXPECT_TRUE(p.validate().is_ok());
  EXPECT_EQ(p.min_size, 16u * 1024);
  EXPECT_EQ(p.avg_size, 64u * 1024);
  EXPECT_EQ(p.max_size, 256u * 1024);
  EXPECT_EQ(p.gear_seed, 6004511439367652657ULL);  // "STOWAGE1"
  EXPECT_EQ(ChunkerParams::with_average(1 << 20).max_size, 4u << 20);
}

TEST(ChunkerParams, RejectsBadParameters) {
  auto p = small_params();
  p.avg_size = 5000;  // not a power of two
  EXPECT_EQ(p.validate().code(), Code::kInvalidArgument);
  p = small_params();
  p.min_size = p.avg_size;
  EXPECT_EQ(p.validate().code(), Code::kInvalidArgument);
  p = small_params();
  p.max_size = p.avg_size;
  EXPECT_EQ(p.validate().code(), Code::kInvalidArgument);
  p = small_params();
  p.min_size = 32;
  EXPECT_EQ(p.validate().code(), Code::kInvalidArgument);
  p = small_params();
  p.normalization = 0;
  EXPECT_EQ(p.validate().code(), Code::kInvalidArgument);
  p = ChunkerParams::with_average(32u << 20);
  EXPECT_FALSE(Chunker::create(p).is_ok());
}

// Golden values: these pin the on-disk chunking algorithm (docs/FORMAT.md
// §3.1). If this test fails, existing repositories would stop deduplicating.
TEST(Chunker, GearTableIsSplitMix64OfSeed) {
  const auto gear = make_gear_table(kDefaultGearSeed);
  // SplitMix64 reference values, computed independently (Python) from the
  // algorithm text in FORMAT.md.
  EXPECT_EQ(gear[0], 0xb2dcb77e9671bcccULL);
  EXPECT_EQ(gear[255], 0x1b23a4d19b439d7eULL);
  std::set<uint64_t> distinct(gear.begin(), gear.end());
  EXPECT_EQ(distinct.size(), 256u);
}

TEST(Chunker, GoldenBoundaries) {
  const auto c = make(small_params());
  // Input: SplitMix64 words from seed 42, little-endian; expected lengths come
  // from an independent Python implementation of FORMAT.md §3.1.
  std::string data;
  for (int block = 0; block < 32; ++block) {
    // make_gear_table yields 256 SplitMix64 words; starting the next block at
    // seed + 256·k·gamma continues the same sequence.
    const auto words = make_gear_table(42 + uint64_t(block) * 256 * 0x9E3779B97F4A7C15ULL);
    for (uint64_t w : words) {
      for (int b = 0; b < 8; ++b) data.push_back(static_cast<char>(w >> (8 * b)));
    }
  }
  ASSERT_EQ(data.size(), 64u * 1024);
  const auto lengths = c.split(data);
  EXPECT_EQ(lengths.size(), 15u);
  std::vector<size_t> first(lengths.begin(), lengths.begin() + std::min<size_t>(8, lengths.size()));
  EXPECT_EQ(first, (std::vector<size_t>{4179, 4247, 5689, 4778, 5645, 1528, 4279, 5180}));
}

TEST(Chunker, DeterministicAndBounded) {
  const auto p = small_params();
  const auto c = make(p);
  const std::string data = random_bytes(4 << 20, 7);
  const auto a = c.split(data);
  const auto b = make(p).split(data);
  EXPECT_EQ(a, b);
  ASSERT_GT(a.size(), 100u);
  EXPECT_EQ(std::accumulate(a.begin(), a.end(), size_t{0}), data.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_LE(a[i], p.max_size);
    if (i + 1 < a.size()) {
      EXPECT_GE(a[i], p.min_size) << "chunk " << i;
    }
  }
  // Normalised chunking keeps the mean near avg_size on random input.
  const double mean = static_cast<double>(data.size()) / static_cast<double>(a.size());
  EXPECT_GT(mean, p.avg_size * 0.75);
  EXPECT_LT(mean, p.avg_size * 1.5);
}

TEST(Chunker, ConstantDataIsCutAtBoundsAndShortInputsAreOneChunk) {
  const auto p = small_params();
  const auto c = make(p);
  const std::string zeros(100000, '\0');
  for (size_t len : c.split(zeros)) EXPECT_LE(len, p.max_size);
  EXPECT_EQ(c.cut(""), 0u);
  EXPECT_EQ(c.cut(std::string(p.min_size, 'x')), p.min_size);
  EXPECT_EQ(c.split(std::string(10, 'x')), std::vector<size_t>{10});
}

TEST(Chunker, DifferentSeedsCutDifferently) {
  auto p = small_params();
  const std::string data = random_bytes(1 << 20, 3);
  const auto a = make(p).split(data);
  p.gear_seed = 1;
  EXPECT_NE(a, make(p).split(data));
}

TEST(Chunker, InsertionAtFrontKeepsMostChunks) {
  const auto c = make(small_params());
  const std::string original = random_bytes(4 << 20, 11);
  const std::string shifted = random_bytes(100, 12) + original;
  const auto before = chunk_set(c, original);
  const auto after = chunk_set(c, shifted);
  size_t shared = 0;
  for (const auto& chunk : after) shared += before.count(chunk);
  // Only the chunk(s) around the insertion may differ.
  EXPECT_GE(shared + 3, after.size()) << shared << " of " << after.size();
}

TEST(Chunker, ModificationInTheMiddleChangesFewChunks) {
  const auto c = make(small_params());
  std::string data = random_bytes(4 << 20, 13);
  const auto before = chunk_set(c, data);
  for (size_t i = 0; i < 50; ++i) data[2'000'000 + i] ^= 0x5a;
  const auto after = chunk_set(c, data);
  size_t fresh = 0;
  for (const auto& chunk : after) fresh += before.count(chunk) == 0 ? 1 : 0;
  EXPECT_GE(fresh, 1u);
  EXPECT_LE(fresh, 3u);
}

TEST(StreamChunker, SameBoundariesAsSplitForAnyReadSize) {
  const auto p = small_params();
  const auto c = make(p);
  const std::string data = random_bytes((1 << 20) + 333, 5);
  const auto expected = c.split(data);
  for (size_t read_size : {size_t{1} << 20, size_t{4096}, size_t{777}, size_t{1}}) {
    size_t pos = 0;
    StreamChunker stream(c, [&](char* buf, size_t len) -> Result<size_t> {
      const size_t n = std::min({len, read_size, data.size() - pos});
      std::copy_n(data.data() + pos, n, buf);
      pos += n;
      return n;
    });
    std::vector<size_t> got;
    std::string joined;
    while (true) {
      auto next = stream.next();
      ASSERT_TRUE(next.is_ok()) << next.status().to_string();
      if (!next->has_value()) break;
      got.push_back((*next)->size());
      joined += **next;
    }
    EXPECT_EQ(got, expected) << "read size " << read_size;
    EXPECT_EQ(joined, data);
  }
}

TEST(StreamChunker, PropagatesReadErrorsAndHandlesEmptyInput) {
  const auto c = make(small_params());
  StreamChunker failing(c, [](char*, size_t) -> Result<size_t> { return Status::io_error("disk on fire"); });
  auto r = failing.next();
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kIOError);

  StreamChunker empty(c, [](char*, size_t) -> Result<size_t> { return size_t{0}; });
  auto e = empty.next();
  ASSERT_TRUE(e.is_ok());
  EXPECT_FALSE(e->has_value());
}

}  // namespace
}  // namespace stowage
