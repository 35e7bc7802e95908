// ChunkFeeder must cut exactly where Chunker::split() cuts the whole stream,
// whatever the sizes of the pieces the stream arrives in, and whichever of a
// previous version's chunks it reuses.
#include "chunk_feeder.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <xxhash.h>

#include "backup/test_data.h"

namespace stowage {
namespace {

const ChunkSummer& summer() {
  static const ChunkSummer s(sha256("chunk feeder test repository"));
  return s;
}

TEST(ChunkFeeder, CutsLikeSplitForAnyPieceSizes) {
  auto chunker = Chunker::create(ChunkerParams::with_average(4096));
  ASSERT_TRUE(chunker.is_ok());
  const size_t max = chunker->params().max_size;
  std::mt19937_64 rng(17);
  for (int round = 0; round < 40; ++round) {
    const size_t n = rng() % (12 * max);
    const std::string data = round % 2 ? test::random_bytes(n, round) : test::compressible_bytes(n, round);
    const auto want = chunker->split(data);
    std::vector<std::string> got;
    ChunkFeeder feeder(*chunker, summer(), [&](const FedChunk& c) {
      EXPECT_EQ(c.reused, nullptr);
      EXPECT_EQ(c.length, c.data.size());
      EXPECT_EQ(c.sum, summer()(c.data));
      got.emplace_back(c.data);
      return Status::ok();
    });
    // Piece sizes from 0 bytes to several max_size, mixed.
    for (size_t off = 0; off < n;) {
      const size_t kinds[] = {0, 1, rng() % 100, rng() % max, max, max + 1, rng() % (3 * max)};
      const size_t len = std::min(n - off, kinds[rng() % 7]);
      ASSERT_TRUE(feeder.feed(std::string_view(data).substr(off, len)).is_ok());
      off += len;
    }
    ASSERT_TRUE(feeder.finish().is_ok());
    ASSERT_EQ(got.size(), want.size()) << "round " << round;
    size_t off = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(got[i], data.substr(off, want[i])) << "round " << round << " chunk " << i;
      off += want[i];
    }
  }
}

// Feeds `data` in pieces of random sizes (0 bytes to several max_size).
void feed_in_pieces(ChunkFeeder& feeder, std::string_view data, size_t max, std::mt19937_64& rng) {
  for (size_t off = 0; off < data.size();) {
    const size_t kinds[] = {0, 1, rng() % 100, rng() % max, max, max + 1, rng() % (3 * max), 1u << 20};
    const size_t len = std::min(data.size() - off, kinds[rng() % 8]);
    ASSERT_TRUE(feeder.feed(data.substr(off, len)).is_ok());
    off += len;
  }
  ASSERT_TRUE(feeder.finish().is_ok());
}

std::vector<ParentChunk> chunks_of(const Chunker& chunker, std::string_view data) {
  std::vector<ParentChunk> out;
  uint64_t off = 0;
  for (size_t len : chunker.split(data)) {
    const std::string_view c = data.substr(off, len);
    out.push_back({off, static_cast<uint32_t>(len), sha256(c), summer()(c)});
    off += len;
  }
  return out;
}

// A new version of `old`: the edits a backup meets between two snapshots.
std::string edited(const std::string& old, int how, std::mt19937_64& rng, size_t max) {
  std::string s = old;
  const size_t at = s.empty() ? 0 : rng() % s.size();
  switch (how) {
    case 0:  // unchanged
      break;
    case 1:  // a few pages overwritten in place, like a database's
      for (int i = 0; i < 3 && !s.empty(); ++i) {
        const size_t p = rng() % s.size();
        const std::string page = test::random_bytes(std::min<size_t>(8192, s.size() - p), rng());
        s.replace(p, page.size(), page);
      }
      break;
    case 2:  // one byte flipped
      if (!s.empty()) s[at] = static_cast<char>(s[at] ^ 0x5a);
      break;
    case 3:  // appended to
      s += test::random_bytes(rng() % (2 * max) + 1, rng());
      break;
    case 4:  // truncated
      s.resize(at);
      break;
    case 5:  // bytes inserted in the middle: everything after moves
      s.insert(at, test::random_bytes(rng() % 1000 + 1, rng()));
      break;
    case 6:  // a range deleted
      s.erase(at, rng() % (max + 1));
      break;
    case 7:  // the same bytes and one more at the end: the parent's last chunk must not be taken whole
      s.push_back('x');
      break;
  }
  return s;
}

// The chunks of the new version are exactly split()'s; those reused are the
// parent's chunks at the same offset with the same bytes, and an unchanged
// stream is reused whole.
TEST(ChunkFeeder, ReusesParentChunksInPlaceAndStillCutsLikeSplit) {
  auto chunker = Chunker::create(ChunkerParams::with_average(4096));
  ASSERT_TRUE(chunker.is_ok());
  const size_t max = chunker->params().max_size;
  std::mt19937_64 rng(23);
  uint64_t reused_total = 0, fed_total = 0;
  for (int round = 0; round < 450; ++round) {
    const int how = round % 9;
    const size_t n = rng() % (16 * max);
    const std::string old = round % 3 ? test::random_bytes(n, round) : test::compressible_bytes(n, round);
    std::vector<ParentChunk> old_chunks = chunks_of(*chunker, old);
    std::string now;
    if (how == 8) {
      // Cut short exactly where a parent chunk ends: that chunk, not the
      // parent's last, becomes the new stream's last and is still reused.
      const size_t k = old_chunks.empty() ? 0 : rng() % old_chunks.size();
      now = old.substr(0, old_chunks.empty() ? 0 : old_chunks[k].offset + old_chunks[k].length);
    } else {
      now = edited(old, how, rng, max);
    }
    ParentChunks parent(std::move(old_chunks));
    const auto want = chunker->split(now);
    size_t i = 0;
    uint64_t off = 0, reused = 0;
    ChunkFeeder feeder(
        *chunker, summer(),
        [&](const FedChunk& c) {
          EXPECT_LT(i, want.size());
          if (i >= want.size()) return Status::internal("too many chunks");
          EXPECT_EQ(c.length, want[i]) << "round " << round << " chunk " << i;
          const std::string_view bytes = std::string_view(now).substr(off, c.length);
          EXPECT_EQ(c.sum, summer()(bytes));
          if (c.reused) {
            EXPECT_EQ(c.reused->offset, off);
            EXPECT_EQ(std::string_view(old).substr(c.reused->offset, c.reused->length), bytes);
            EXPECT_TRUE(c.data.empty());
            reused += c.length;
          } else {
            EXPECT_EQ(c.data, bytes);
          }
          off += c.length;
          ++i;
          return Status::ok();
        },
        &parent);
    feed_in_pieces(feeder, now, max, rng);
    EXPECT_EQ(i, want.size()) << "round " << round;
    EXPECT_EQ(off, now.size());
    if (how == 0 || how == 8) {
      EXPECT_EQ(reused, now.size()) << "round " << round;
    }
    if ((how == 1 || how == 2) && n > 8 * max) {
      EXPECT_GT(reused, 0u) << "round " << round;
    }
    reused_total += reused;
    fed_total += now.size();
  }
  // Most bytes of lightly edited streams are found in place.
  EXPECT_GT(reused_total, fed_total / 2);
}

// A chunk whose bytes changed but whose length and place did not is cut and
// hashed afresh, not taken from the parent.
TEST(ChunkFeeder, AChangedChunkIsNeverTakenFromTheParent) {
  auto chunker = Chunker::create(ChunkerParams::with_average(4096));
  ASSERT_TRUE(chunker.is_ok());
  const std::string old = test::random_bytes(200000, 5);
  std::vector<ParentChunk> chunks = chunks_of(*chunker, old);
  ASSERT_GT(chunks.size(), 4u);
  std::string now = old;
  const ParentChunk third = chunks[2];
  now[third.offset + third.length / 2] ^= 1;  // inside the third chunk, away from its cut point
  ParentChunks parent(std::move(chunks));
  std::vector<const ParentChunk*> reused;
  ChunkFeeder feeder(
      *chunker, summer(),
      [&](const FedChunk& c) {
        reused.push_back(c.reused);
        return Status::ok();
      },
      &parent);
  ASSERT_TRUE(feeder.feed(now).is_ok());
  ASSERT_TRUE(feeder.finish().is_ok());
  ASSERT_GE(reused.size(), 3u);
  EXPECT_NE(reused[0], nullptr);
  EXPECT_NE(reused[1], nullptr);
  EXPECT_EQ(reused[2], nullptr);
}

TEST(ChunkSum, KeyedXxh3OfTheDocumentedSecretPiecesEqualTheWhole) {
  // FORMAT.md §6.2: the secret is SHA-256("stowage chunk_xxh128 v1" || id ||
  // i) for i = 0..5, and the sum XXH3-128 with that secret, high half first.
  const Hash256 id = sha256("some repository");
  std::string secret;
  for (char i = 0; i < 6; ++i) secret += sha256("stowage chunk_xxh128 v1" + std::string(id.raw()) + i).raw();
  const ChunkSummer sum(id);
  ASSERT_EQ(std::string(reinterpret_cast<const char*>(sum.secret().data()), sum.secret().size()), secret);
  const std::string data = test::random_bytes(300000, 9);
  for (size_t len : {size_t{0}, size_t{1}, size_t{240}, size_t{300000}}) {
    const XXH128_hash_t h = XXH3_128bits_withSecret(data.data(), len, secret.data(), secret.size());
    char want[33];
    std::snprintf(want, sizeof want, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                  static_cast<unsigned long long>(h.low64));
    EXPECT_EQ(sum(std::string_view(data).substr(0, len)).hex(), want) << len;
  }
  // Keyed: another repository's sums differ.
  EXPECT_NE(ChunkSummer(sha256("another repository"))(data), sum(data));
  for (size_t cut : {size_t{0}, size_t{1}, size_t{4096}, size_t{299999}, size_t{300000}}) {
    for (size_t len : {size_t{0}, cut, size_t{300000}}) {
      if (len < cut) continue;
      EXPECT_EQ(sum(std::string_view(data).substr(0, cut), std::string_view(data).substr(cut), len),
                sum(std::string_view(data).substr(0, len)))
          << cut << " " << len;
    }
  }
  const ChunkSum s = sum(data);
  auto back = ChunkSum::from_hex(s.hex());
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(*back, s);
  for (const char* bad : {"", "99aa06d3014798d86001c324468d497", "99AA06D3014798D86001C324468D497F",
                          "99aa06d3014798d86001c324468d497g", "99aa06d3014798d86001c324468d497f0"}) {
    EXPECT_EQ(ChunkSum::from_hex(bad).status().code(), Code::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace stowage
