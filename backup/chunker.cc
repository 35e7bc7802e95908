// FastCDC as specified in docs/FORMAT.md §3.1. Any change to the arithmetic
// here changes chunk boundaries and breaks dedup with existing repositories:
// the golden-value test in tests/backup/chunker_test.cc guards it.
#include "stowage/chunker.h"

#include <bit>
#include <cstring>
#include <string>

namespace stowage {

namespace {

constexpr uint32_t kMaxChunkerSize = 64u << 20;

uint64_t top_bits_mask(uint32_t bits) { return bits == 0 ? 0 : ~uint64_t{0} << (64 - bits); }

}  // namespace

ChunkerParams ChunkerParams::with_average(uint32_t avg) {
  ChunkerParams p;
  p.min_size = avg / 4;
  p.avg_size = avg;
  p.max_size = avg * 4;
  return p;
}

Status ChunkerParams::validate() const {
  auto bad = [&](const char* why) {
    return Status::invalid_argument("chunker parameters min=" + std::to_string(min_size) +
                                    " avg=" + std::to_string(avg_size) + " max=" + std::to_string(max_size) +
                                    " normalization=" + std::to_string(normalization) + ": " + why);
  };
  if (!std::has_single_bit(avg_size) || avg_size < 256 || avg_size > (16u << 20)) {
    return bad("avg_size must be a power of two in [256, 16 MiB]");
  }
  if (min_size < 64 || min_size >= avg_size) return bad("need 64 <= min_size < avg_size");
  if (max_size <= avg_size || max_size > kMaxChunkerSize) return bad("need avg_size < max_size <= 64 MiB");
  if (normalization < 1 || normalization > 4) return bad("normalization must be in [1, 4]");
  return Status::ok();
}

std::array<uint64_t, 256> make_gear_table(uint64_t seed) {
  std::array<uint64_t, 256> table{};
  uint64_t state = seed;
  for (auto& v : table) {
    state += 0x9E3779B97F4A7C15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    v = z ^ (z >> 31);
  }
  return table;
}

Result<Chunker> Chunker::create(const ChunkerParams& params) {
  STOWAGE_RETURN_IF_ERROR(params.validate());
  return Chunker(params);
}

Chunker::Chunker(const ChunkerParams& params) : params_(params), gear_(make_gear_table(params.gear_seed)) {
  const auto bits = static_cast<uint32_t>(std::countr_zero(params.avg_size));
  mask_s_ = top_bits_mask(bits + params.normalization);
  mask_l_ = top_bits_mask(bits - params.normalization);
  for (size_t b = 0; b < gear_.size(); ++b) gear2_[b] = gear_[b] << 1;
}

namespace {

// Scans p[i, end) for the first position whose fingerprint has no bit of
// `mask` set; returns the cut length (position + 1), or 0 with `fp` updated
// to the fingerprint at end - 1 when there is none. Two bytes per step: the
// fingerprint after bytes x, y is (fp << 2) + (gear[x] << 1) + gear[y]
// (mod 2^64), so the dependency chain through fp is one shift and one add per
// two bytes instead of per byte (measured: docs/BACKUP.md). The fingerprint
// after x alone is still computed, off that chain, and tested, so every
// position is checked exactly as in the byte-wise definition of FORMAT.md
// §3.1 and the boundaries are the same (ChunkerGolden tests compare them with
// a byte-wise reference).
inline size_t scan(const uint8_t* p, size_t i, size_t end, uint64_t& fp, uint64_t mask,
                   const std::array<uint64_t, 256>& gear, const std::array<uint64_t, 256>& gear2) {
  for (; i + 2 <= end; i += 2) {
    const uint64_t g0 = gear[p[i]];
    const uint64_t pair = gear2[p[i]] + gear[p[i + 1]];
    const uint64_t first = (fp << 1) + g0;
    fp = (fp << 2) + pair;
    if (((first & mask) == 0) | ((fp & mask) == 0)) return (first & mask) == 0 ? i + 1 : i + 2;
  }
  if (i < end) {
    fp = (fp << 1) + gear[p[i]];
    if ((fp & mask) == 0) return i + 1;
  }
  return 0;
}

}  // namespace

size_t Chunker::cut(std::string_view data) const {
  const size_t n = data.size();
  if (n <= params_.min_size) return n;
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  const size_t limit = std::min<size_t>(n, params_.max_size);
  const size_t normal = std::min<size_t>(params_.avg_size, limit);
  uint64_t fp = 0;
  // FORMAT.md §3.1: hashing starts at min_size with fp = 0; the bytes before
  // it are never looked at.
  if (const size_t at = scan(p, params_.min_size, normal, fp, mask_s_, gear_, gear2_)) return at;
  if (const size_t at = scan(p, normal, limit, fp, mask_l_, gear_, gear2_)) return at;
  return limit;
}

size_t Chunker::cut(std::string_view head, std::string_view tail) const {
  if (tail.empty()) return cut(head);
  if (head.empty()) return cut(tail);
  const size_t h = head.size();
  const size_t n = h + tail.size();
  if (n <= params_.min_size) return n;
  const auto* ph = reinterpret_cast<const uint8_t*>(head.data());
  const auto* pt = reinterpret_cast<const uint8_t*>(tail.data());
  const size_t limit = std::min<size_t>(n, params_.max_size);
  const size_t normal = std::min<size_t>(params_.avg_size, limit);
  uint64_t fp = 0;
  // cut()'s two scans, each split where head ends; fp carries across.
  const auto scan_both = [&](size_t from, size_t to, uint64_t mask) -> size_t {
    if (from < h) {
      if (const size_t at = scan(ph, from, std::min(to, h), fp, mask, gear_, gear2_)) return at;
    }
    if (to > h) {
      if (const size_t at = scan(pt, std::max(from, h) - h, to - h, fp, mask, gear_, gear2_)) return h + at;
    }
    return 0;
  };
  if (const size_t at = scan_both(params_.min_size, normal, mask_s_)) return at;
  if (const size_t at = scan_both(normal, limit, mask_l_)) return at;
  return limit;
}

std::vector<size_t> Chunker::split(std::string_view data) const {
  std::vector<size_t> lengths;
  while (!data.empty()) {
    const size_t len = cut(data);
    lengths.push_back(len);
    data.remove_prefix(len);
  }
  return lengths;
}

StreamChunker::StreamChunker(const Chunker& chunker, ReadFn read)
    : chunker_(chunker), read_(std::move(read)), buf_(size_t{2} * chunker.params().max_size) {}

Result<std::optional<std::string_view>> StreamChunker::next() {
  const size_t max = chunker_.params().max_size;
  if (end_ - begin_ < max && !eof_) {
    // Slide the unconsumed tail to the front so a whole max-size window fits.
    if (begin_ > 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    while (end_ < buf_.size() && !eof_) {
      STOWAGE_ASSIGN_OR_RETURN(size_t got, read_(buf_.data() + end_, buf_.size() - end_));
      if (got == 0) eof_ = true;
      end_ += got;
    }
  }
  if (begin_ == end_) return std::optional<std::string_view>();
  const std::string_view window(buf_.data() + begin_, end_ - begin_);
  const size_t len = chunker_.cut(window);
  begin_ += len;
  return std::optional<std::string_view>(window.substr(0, len));
}

}  // namespace stowage
