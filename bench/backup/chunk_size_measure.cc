// chunk_size_measure V1 V2 AVG...: for each average chunk size, chunks every
// regular file of two versions of a directory tree and prints how many bytes
// of V2 live in chunks that V1 does not have (what an incremental backup of V2
// on top of V1 uploads before compression), the zstd-compressed size of those
// bytes, chunk counts and chunking+hashing throughput. Used by
// pg_chunk_size.sh to choose the default (docs/FORMAT.md §3.2).
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <unordered_set>
#include <vector>

#include "stowage/blob.h"
#include "stowage/chunker.h"
#include "stowage/hash.h"

namespace fs = std::filesystem;
using namespace stowage;

namespace {

struct Totals {
  uint64_t files = 0, bytes = 0, chunks = 0, new_chunks = 0, new_bytes = 0, new_stored = 0;
  double seconds = 0;
};

// Chunks every regular file under `root`. Each chunk id not in `known` is
// added to it and counted as new.
Totals scan(const fs::path& root, const Chunker& chunker, std::unordered_set<Hash256, Hash256Hasher>& known,
            BlobCodec* codec) {
  Totals t;
  Sha256 hasher;
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_regular_file() && !e.is_symlink()) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  const auto start = std::chrono::steady_clock::now();
  for (const auto& path : files) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      std::perror(path.c_str());
      std::exit(1);
    }
    StreamChunker stream(chunker, [fd](char* buf, size_t len) -> Result<size_t> {
      const ssize_t n = ::read(fd, buf, len);
      if (n < 0) return errno_status(errno, "read");
      return static_cast<size_t>(n);
    });
    ++t.files;
    while (true) {
      auto next = stream.next();
      if (!next.is_ok()) {
        std::fprintf(stderr, "%s: %s\n", path.c_str(), next.status().to_string().c_str());
        std::exit(1);
      }
      if (!next->has_value()) break;
      const std::string_view chunk = **next;
      ++t.chunks;
      t.bytes += chunk.size();
      if (known.insert(hasher.digest(chunk)).second) {
        ++t.new_chunks;
        t.new_bytes += chunk.size();
        if (codec != nullptr) {
          auto enc = codec->encode(BlobType::kData, chunk);
          if (enc.is_ok()) t.new_stored += enc->stored.size();
        }
      }
    }
    ::close(fd);
  }
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s V1_DIR V2_DIR AVG_SIZE...\n", argv[0]);
    return 2;
  }
  std::printf("%-9s %10s %10s %10s %12s %12s %14s %10s\n", "avg", "v1_chunks", "v2_chunks", "new_chunks",
              "new_MiB", "new_zstd_MiB", "new_%_of_v2", "MB/s");
  for (int i = 3; i < argc; ++i) {
    const auto avg = static_cast<uint32_t>(std::strtoul(argv[i], nullptr, 10));
    auto chunker = Chunker::create(ChunkerParams::with_average(avg));
    if (!chunker.is_ok()) {
      std::fprintf(stderr, "%s\n", chunker.status().to_string().c_str());
      return 2;
    }
    std::unordered_set<Hash256, Hash256Hasher> known;
    BlobCodec codec(3);
    const Totals v1 = scan(argv[1], *chunker, known, nullptr);
    const Totals v2 = scan(argv[2], *chunker, known, &codec);
    std::printf("%-9u %10llu %10llu %10llu %12.1f %12.1f %13.2f%% %10.0f\n", avg,
                static_cast<unsigned long long>(v1.chunks), static_cast<unsigned long long>(v2.chunks),
                static_cast<unsigned long long>(v2.new_chunks), v2.new_bytes / 1048576.0,
                v2.new_stored / 1048576.0, 100.0 * static_cast<double>(v2.new_bytes) / static_cast<double>(v2.bytes),
                static_cast<double>(v1.bytes) / 1e6 / v1.seconds);
    std::fflush(stdout);
  }
  return 0;
}
