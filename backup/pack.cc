#include "stowage/pack.h"

#include <zstd.h>

#include <cstring>
#include <string>

#include "wire.h"

namespace stowage {

namespace {

Status corrupt_pack(std::string_view why) { return Status::corruption("pack: " + std::string(why)); }

}  // namespace

void append_pack_entry(std::string& out, const PackBlob& blob) {
  out.append(blob.id.raw());
  wire::put_u32(out, blob.offset);
  wire::put_u32(out, blob.stored_length);
  wire::put_u32(out, blob.raw_length);
  out.push_back(static_cast<char>(blob.type));
  out.push_back(static_cast<char>(blob.compression));
  out.append(2, '\0');
}

Result<PackBlob> parse_pack_entry(const char* p, std::string_view what) {
  PackBlob b;
  b.id = Hash256::from_raw(p);
  b.offset = wire::get_u32(p + 32);
  b.stored_length = wire::get_u32(p + 36);
  b.raw_length = wire::get_u32(p + 40);
  const auto type = static_cast<uint8_t>(p[44]);
  const auto compression = static_cast<uint8_t>(p[45]);
  auto bad = [&](const std::string& why) {
    return Status::corruption(std::string(what) + ": entry for blob " + b.id.hex() + ": " + why);
  };
  if (type > static_cast<uint8_t>(BlobType::kTree)) return bad("unknown type " + std::to_string(type));
  if (compression > static_cast<uint8_t>(Compression::kZstd)) {
    return bad("unknown compression " + std::to_string(compression));
  }
  if (p[46] != 0 || p[47] != 0) return bad("reserved bytes are not zero");
  if (b.raw_length > kMaxBlobSize) return bad("raw length " + std::to_string(b.raw_length) + " exceeds the limit");
  b.type = static_cast<BlobType>(type);
  b.compression = static_cast<Compression>(compression);
  if (b.compression == Compression::kRaw && b.stored_length != b.raw_length) {
    return bad("raw blob with stored length " + std::to_string(b.stored_length) + " != raw length " +
               std::to_string(b.raw_length));
  }
  // Readers fetch and allocate stored_length bytes: bound it by what zstd can
  // make of the largest blob.
  if (b.compression == Compression::kZstd && b.stored_length > ZSTD_COMPRESSBOUND(kMaxBlobSize)) {
    return bad("stored length " + std::to_string(b.stored_length) + " exceeds what zstd makes of " +
               std::to_string(kMaxBlobSize) + " bytes");
  }
  return b;
}

std::string pack_key(const PackId& id) {
  const std::string hex = id.hex();
  return "data/" + hex.substr(0, 2) + "/" + hex;
}

Status PackWriter::add(const EncodedBlobView& blob) {
  const uint64_t header_after = kPackHeaderFixedSize + kPackEntrySize * (blobs_.size() + 1) + kPackTrailerSize;
  if (data_.size() + blob.stored.size() + header_after > kMaxPackLength) {
    return Status::resource_exhausted("pack would exceed " + std::to_string(kMaxPackLength) + " bytes");
  }
  if (blob.raw_length > kMaxBlobSize) return Status::invalid_argument("blob exceeds kMaxBlobSize");
  // Readers reject such an entry (FORMAT.md §4); refuse to write one.
  if (blob.compression == Compression::kRaw && blob.stored.size() != blob.raw_length) {
    return Status::invalid_argument("raw blob " + blob.id.hex() + " with stored length != raw length");
  }
  PackBlob entry;
  entry.id = blob.id;
  entry.type = blob.type;
  entry.compression = blob.compression;
  entry.offset = static_cast<uint32_t>(data_.size());
  entry.stored_length = static_cast<uint32_t>(blob.stored.size());
  entry.raw_length = blob.raw_length;
  data_.append(blob.stored);
  blobs_.push_back(entry);
  return Status::ok();
}

Result<PackWriter::Finished> PackWriter::finish() {
  if (blobs_.empty()) return Status::failed_precondition("cannot finish an empty pack");
  std::string header;
  header.reserve(kPackHeaderFixedSize + kPackEntrySize * blobs_.size());
  header.push_back(static_cast<char>(kPackVersion));
  header.append(3, '\0');
  wire::put_u32(header, static_cast<uint32_t>(blobs_.size()));
  for (const auto& b : blobs_) append_pack_entry(header, b);

  Finished out;
  out.data = std::move(data_);
  out.data.append(header);
  out.data.append(sha256(header).raw());
  wire::put_u32(out.data, static_cast<uint32_t>(header.size()));
  wire::put_u32(out.data, 0);  // flags: no encryption
  out.data.append(kPackMagic);
  out.id = sha256(out.data);
  out.blobs = std::move(blobs_);
  data_.clear();
  blobs_.clear();
  return out;
}

Result<uint64_t> pack_tail_length(std::string_view tail, uint64_t pack_length) {
  if (pack_length < kPackTrailerSize) {
    return corrupt_pack("length " + std::to_string(pack_length) + " is shorter than the trailer");
  }
  if (pack_length > kMaxPackLength) return corrupt_pack("length " + std::to_string(pack_length) + " exceeds 4 GiB");
  if (tail.size() < kPackTrailerSize || tail.size() > pack_length) {
    return Status::invalid_argument("pack tail of " + std::to_string(tail.size()) + " bytes for a pack of " +
                                    std::to_string(pack_length));
  }
  const char* t = tail.data() + tail.size() - kPackTrailerSize;
  if (std::string_view(t + 40, 8) != kPackMagic) return corrupt_pack("bad magic (not a pack or truncated)");
  const uint32_t header_length = wire::get_u32(t + 32);
  const uint32_t flags = wire::get_u32(t + 36);
  if (flags != 0) return corrupt_pack("unsupported flags " + std::to_string(flags) + " (encrypted?)");
  if (header_length < kPackHeaderFixedSize || header_length + kPackTrailerSize > pack_length) {
    return corrupt_pack("header length " + std::to_string(header_length) + " does not fit a pack of " +
                        std::to_string(pack_length) + " bytes");
  }
  return uint64_t{header_length} + kPackTrailerSize;
}

Result<std::vector<PackBlob>> parse_pack_tail(std::string_view tail, uint64_t pack_length) {
  STOWAGE_ASSIGN_OR_RETURN(const uint64_t need, pack_tail_length(tail, pack_length));
  if (tail.size() < need) {
    return Status::invalid_argument("pack tail of " + std::to_string(tail.size()) + " bytes, header needs " +
                                    std::to_string(need));
  }
  const size_t header_length = need - kPackTrailerSize;
  const std::string_view header = tail.substr(tail.size() - need, header_length);
  const std::string_view trailer = tail.substr(tail.size() - kPackTrailerSize);
  if (sha256(header).raw() != trailer.substr(0, 32)) return corrupt_pack("header checksum mismatch");
  if (static_cast<uint8_t>(header[0]) != kPackVersion) {
    return corrupt_pack("unsupported header version " + std::to_string(static_cast<uint8_t>(header[0])));
  }
  if (header[1] != 0 || header[2] != 0 || header[3] != 0) return corrupt_pack("reserved header bytes are not zero");
  const uint32_t count = wire::get_u32(header.data() + 4);
  if (count == 0) return corrupt_pack("no blobs");
  if ((header_length - kPackHeaderFixedSize) / kPackEntrySize != count ||
      (header_length - kPackHeaderFixedSize) % kPackEntrySize != 0) {
    return corrupt_pack("header length " + std::to_string(header_length) + " does not match " +
                        std::to_string(count) + " entries");
  }
  const uint64_t data_end = pack_length - need;
  std::vector<PackBlob> blobs;
  blobs.reserve(count);
  uint64_t expected_offset = 0;
  for (uint32_t i = 0; i < count; ++i) {
    STOWAGE_ASSIGN_OR_RETURN(PackBlob b, parse_pack_entry(header.data() + kPackHeaderFixedSize + i * kPackEntrySize,
                                                          "pack header"));
    if (b.offset != expected_offset) {
      return corrupt_pack("blob " + std::to_string(i) + " starts at " + std::to_string(b.offset) + ", expected " +
                          std::to_string(expected_offset));
    }
    expected_offset += b.stored_length;
    if (expected_offset > data_end) return corrupt_pack("blob " + std::to_string(i) + " runs into the header");
    blobs.push_back(b);
  }
  if (expected_offset != data_end) {
    return corrupt_pack("blobs end at " + std::to_string(expected_offset) + " but the header starts at " +
                        std::to_string(data_end));
  }
  return blobs;
}

Result<std::vector<PackBlob>> read_pack_header(ObjectStore& store, std::string_view key) {
  auto with_key = [&](const Status& s) { return s.with_context("read pack header " + std::string(key)); };
  auto info = store.head(key);
  if (!info.is_ok()) return with_key(info.status());
  const uint64_t length = info->size;
  if (length < kPackTrailerSize) return with_key(corrupt_pack("object of " + std::to_string(length) + " bytes"));
  const uint64_t first = std::min<uint64_t>(length, kPackTailGuess);
  auto tail = store.get(key, length - first, first);
  if (!tail.is_ok()) return with_key(tail.status());
  if (tail->size() != first) return with_key(corrupt_pack("object shrank while reading"));
  auto need = pack_tail_length(*tail, length);
  if (!need.is_ok()) return with_key(need.status());
  if (*need > tail->size()) {
    const uint64_t missing = *need - tail->size();
    auto more = store.get(key, length - *need, missing);
    if (!more.is_ok()) return with_key(more.status());
    if (more->size() != missing) return with_key(corrupt_pack("object shrank while reading"));
    *tail = *more + *tail;
  }
  auto blobs = parse_pack_tail(*tail, length);
  if (!blobs.is_ok()) return with_key(blobs.status());
  return blobs;
}

}  // namespace stowage
