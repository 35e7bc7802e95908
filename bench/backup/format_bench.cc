// format_bench: throughput of the backup format's building blocks on this
// machine (FastCDC chunking, SHA-256, zstd blob encoding, pack building) and
// the in-memory index's bytes per blob and lookup rate. Prints numbers; asserts
// nothing. Build in Release for meaningful results:
//   cmake -B build/rel -DCMAKE_BUILD_TYPE=Release && cmake --build build/rel --target format_bench
//   build/rel/bin/format_bench [MiB=256] [index_blobs=4000000]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "stowage/blob.h"
#include "stowage/chunker.h"
#include "stowage/hash.h"
#include "stowage/index.h"
#include "stowage/pack.h"

using namespace stowage;

namespace {

std::string noise_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(s.data() + i, &v, 8);
  }
  return s;
}

// Half random, half text: roughly what a database page mix compresses like.
std::string mixed_bytes(size_t n, uint64_t seed) {
  std::string s = noise_bytes(n, seed);
  static constexpr char kText[] = "INSERT INTO accounts VALUES (42, 'stowage', 0.00, '                    ');\n";
  for (size_t i = 0; i < n; i += 8192) {
    for (size_t j = i; j < std::min(n, i + 4096); ++j) s[j] = kText[j % (sizeof kText - 1)];
  }
  return s;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

void bench_chunk_hash_encode(const char* label, const std::string& data) {
  const auto chunker = Chunker::create(ChunkerParams{});
  const double mb = static_cast<double>(data.size()) / 1e6;
  auto t = std::chrono::steady_clock::now();
  const auto lengths = chunker->split(data);
  const double chunk_s = seconds_since(t);

  Sha256 sha;
  t = std::chrono::steady_clock::now();
  size_t off = 0;
  uint8_t sink = 0;
  for (size_t len : lengths) {
    sink ^= sha.digest(std::string_view(data).substr(off, len)).bytes[0];
    off += len;
  }
  const double sha_s = seconds_since(t);

  BlobCodec codec;
  PackWriter writer;
  size_t stored = 0, packs = 0, zstd_blobs = 0;
  t = std::chrono::steady_clock::now();
  off = 0;
  for (size_t len : lengths) {
    auto enc = codec.encode(BlobType::kData, std::string_view(data).substr(off, len));
    off += len;
    if (!enc.is_ok() || !writer.add(*enc).is_ok()) std::abort();
    zstd_blobs += enc->compression == Compression::kZstd;
    if (writer.blob_bytes() >= kDefaultPackSize) {
      auto p = writer.finish();
      if (!p.is_ok()) std::abort();
      stored += p->data.size();
      ++packs;
    }
  }
  if (!writer.empty()) {
    auto p = writer.finish();
    if (!p.is_ok()) std::abort();
    stored += p->data.size();
    ++packs;
  }
  const double enc_s = seconds_since(t);
  std::printf("%-8s %7.0f MB: %zu chunks (avg %.0f B)  chunk %6.0f MB/s  sha256 %6.0f MB/s  "
              "encode+hash+pack %6.0f MB/s  (%zu/%zu zstd, %zu packs, stored %.1f%%)%s\n",
              label, mb, lengths.size(), static_cast<double>(data.size()) / static_cast<double>(lengths.size()),
              mb / chunk_s, mb / sha_s, mb / enc_s, zstd_blobs, lengths.size(), packs,
              100.0 * static_cast<double>(stored) / static_cast<double>(data.size()), sink == 255 ? " " : "");
}

void bench_index(size_t blobs) {
  Index index;
  const size_t per_pack = 256;  // 16 MiB packs of 64 KiB chunks
  Sha256 sha;
  auto t = std::chrono::steady_clock::now();
  PackId pack;
  for (size_t i = 0; i < blobs; ++i) {
    if (i % per_pack == 0) pack = sha.digest("pack" + std::to_string(i / per_pack));
    PackBlob b;
    b.id = sha.digest(std::to_string(i));
    b.offset = static_cast<uint32_t>((i % per_pack) * 65536);
    b.stored_length = b.raw_length = 65536;
    if (!index.add(pack, 16u << 20, b).is_ok()) std::abort();
  }
  const double add_s = seconds_since(t);
  t = std::chrono::steady_clock::now();
  size_t hits = 0;
  const size_t lookups = 2'000'000;
  for (size_t i = 0; i < lookups; ++i) hits += index.contains(sha.digest(std::to_string(i * 7919 % (2 * blobs))));
  const double find_s = seconds_since(t);
  std::printf("index: %zu blobs in %zu packs: %.1f bytes/blob (%.1f MiB), add %.2f M/s (incl. sha), "
              "lookup %.2f M/s (incl. sha, %zu hits)\n",
              index.size(), index.pack_count(), static_cast<double>(index.memory_bytes()) / static_cast<double>(blobs),
              static_cast<double>(index.memory_bytes()) / 1048576.0, static_cast<double>(blobs) / add_s / 1e6,
              static_cast<double>(lookups) / find_s / 1e6, hits);
}

}  // namespace

int main(int argc, char** argv) {
  const size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 256;
  const size_t blobs = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 4'000'000;
  bench_chunk_hash_encode("random", noise_bytes(mib << 20, 1));
  bench_chunk_hash_encode("mixed", mixed_bytes(mib << 20, 2));
  bench_index(blobs);
  return 0;
}
