// ChunkFeeder must cut exactly where Chunker::split() cuts the whole stream,
// whatever the sizes of the pieces the stream arrives in.
#include "chunk_feeder.h"

#include <gtest/gtest.h>

#include <random>

#include "backup/test_data.h"

namespace stowage {
namespace {

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
    ChunkFeeder feeder(*chunker, [&](std::string_view c) {
      got.emplace_back(c);
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

}  // namespace
}  // namespace stowage
