#include "stowage/chunker.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <numeric>
#include <random>
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

// The straightforward byte-at-a-time reading of FORMAT.md §3.1, kept here as
// the reference the optimised Chunker::cut (two bytes per step) must match.
size_t reference_cut(const ChunkerParams& p, std::string_view data) {
  const size_t n = data.size();
  if (n <= p.min_size) return n;
  const auto gear = make_gear_table(p.gear_seed);
  const auto bits = static_cast<uint32_t>(std::countr_zero(p.avg_size));
  const uint64_t mask_s = ~uint64_t{0} << (64 - (bits + p.normalization));
  const uint64_t mask_l = ~uint64_t{0} << (64 - (bits - p.normalization));
  const size_t limit = std::min<size_t>(n, p.max_size);
  const size_t normal = std::min<size_t>(p.avg_size, limit);
  uint64_t fp = 0;
  for (size_t i = p.min_size; i < limit; ++i) {
    fp = (fp << 1) + gear[static_cast<uint8_t>(data[i])];
    if ((fp & (i < normal ? mask_s : mask_l)) == 0) return i + 1;
  }
  return limit;
}

std::vector<size_t> reference_split(const ChunkerParams& p, std::string_view data) {
  std::vector<size_t> out;
  while (!data.empty()) {
    out.push_back(reference_cut(p, data));
    data.remove_prefix(out.back());
  }
  return out;
}

// Bytes from a small alphabet cut at every kind of position (early, late,
// forced at max_size) far more often than uniform noise does.
std::string low_entropy_bytes(size_t n, uint64_t seed, unsigned symbols) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>('a' + rng() % symbols);
  return s;
}

TEST(ChunkerGolden, SameBoundariesAsByteWiseReferenceOnRandomData) {
  std::vector<ChunkerParams> params;
  for (uint32_t avg : {256u, 1024u, 4096u, 65536u}) {
    for (uint32_t norm = 1; norm <= 4; ++norm) {
      if (std::countr_zero(avg) <= static_cast<int>(norm)) continue;
      ChunkerParams p = ChunkerParams::with_average(avg);
      p.normalization = norm;
      params.push_back(p);
      p.min_size = avg / 4 + 1;  // odd: the two-byte steps start on the other parity
      params.push_back(p);
      p.min_size = 64;
      p.max_size = avg + 1;  // the second scan is one byte long
      params.push_back(p);
    }
  }
  ChunkerParams seeded = ChunkerParams::with_average(4096);
  seeded.gear_seed = 12345;
  params.push_back(seeded);
  uint64_t seed = 1;
  for (const auto& p : params) {
    ASSERT_TRUE(p.validate().is_ok()) << p.min_size << "/" << p.avg_size << "/" << p.max_size;
    const auto c = make(p);
    const size_t n = std::min<size_t>(size_t{p.max_size} * 40, 1u << 20) + (seed % 7);
    for (const std::string& data : {random_bytes(n, seed), low_entropy_bytes(n, seed, 2),
                                    low_entropy_bytes(n, seed, 16), std::string(n, 'z')}) {
      ASSERT_EQ(c.split(data), reference_split(p, data))
          << "avg=" << p.avg_size << " min=" << p.min_size << " max=" << p.max_size << " norm=" << p.normalization;
    }
    ++seed;
  }
}

TEST(ChunkerGolden, EveryInputLengthAroundTheThresholds) {
  // Inputs shorter than max_size (the end of a stream) of every length near
  // min_size, avg_size and max_size, at both parities.
  const ChunkerParams p = ChunkerParams::with_average(1024);
  const auto c = make(p);
  const std::string data = low_entropy_bytes(p.max_size + 8, 99, 3);
  for (size_t mid : {size_t{p.min_size}, size_t{p.avg_size}, size_t{p.max_size}}) {
    for (size_t n = mid - 5; n <= mid + 5; ++n) {
      for (size_t start = 0; start < 4; ++start) {
        const std::string_view in = std::string_view(data).substr(start, n);
        EXPECT_EQ(c.cut(in), reference_cut(p, in)) << "n=" << n << " start=" << start;
      }
    }
  }
}

// The repository defaults (FORMAT.md §2: 16/64/256 KiB, seed "STOWAGE1") on
// 2 MiB of SplitMix64 words from seed 7 (the same construction as
// GoldenBoundaries); the lengths come from an independent byte-wise Python
// implementation of FORMAT.md §3.1. Every repository made by `repo init` is
// chunked with these parameters: if this fails, new backups stop
// deduplicating against existing ones.
TEST(Chunker, GoldenBoundariesOfTheDefaultParameters) {
  const auto c = make(ChunkerParams{});
  std::string data;
  for (int block = 0; block < 1024; ++block) {
    const auto words = make_gear_table(7 + uint64_t(block) * 256 * 0x9E3779B97F4A7C15ULL);
    for (uint64_t w : words) {
      for (int b = 0; b < 8; ++b) data.push_back(static_cast<char>(w >> (8 * b)));
    }
  }
  ASSERT_EQ(data.size(), 2u << 20);
  EXPECT_EQ(c.split(data),
            (std::vector<size_t>{44597, 93990, 27136, 29703, 17195, 71890, 65771, 77167, 101016, 120365,
                                 82109, 92089, 68338, 97707, 85022, 65690, 76869, 67810, 70259, 76883,
                                 70641, 88751, 72470, 77007, 80862, 81097, 71515, 44748, 67659, 10796}));
}

// cut(head, tail) is cut() of the concatenation, wherever the input is split:
// before, at and after min_size, avg_size and max_size, at both parities, in
// inputs longer than max_size and at the end of a stream.
TEST(ChunkerGolden, CutOfTwoPiecesEqualsCutOfTheConcatenation) {
  for (const ChunkerParams& p : {small_params(), ChunkerParams{}}) {
    const auto c = make(p);
    std::mt19937_64 rng(p.avg_size);
    for (const size_t total : {size_t{p.max_size} + 4097, size_t{p.max_size}, size_t{p.avg_size} + 3,
                               size_t{p.min_size} + 1, size_t{p.min_size}, size_t{100}}) {
      for (const std::string& whole : {random_bytes(total, total), low_entropy_bytes(total, total, 2),
                                       low_entropy_bytes(total, total, 16), std::string(total, 'z')}) {
        const size_t want = c.cut(whole);
        ASSERT_EQ(want, reference_cut(p, whole));
        std::vector<size_t> splits = {0, 1, 2, 3, total - 1, total};
        for (size_t mid : {size_t{p.min_size}, size_t{p.avg_size}, size_t{p.max_size}, want}) {
          for (size_t d = 0; d <= 6; ++d) splits.push_back(mid + d - 3);
        }
        for (int i = 0; i < 40; ++i) splits.push_back(rng() % (total + 1));
        for (const size_t at : splits) {
          if (at > total) continue;
          const std::string_view w(whole);
          EXPECT_EQ(c.cut(w.substr(0, at), w.substr(at)), want) << "total=" << total << " split=" << at;
        }
      }
    }
  }
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
