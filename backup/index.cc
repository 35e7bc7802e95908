#include "stowage/index.h"

#include <algorithm>
#include <cstring>

#include "wire.h"

namespace stowage {

namespace {

constexpr size_t kBlockRecords = 1024;  // 48 KiB: little slack in the last block
constexpr size_t kInitialSlots = 1024;
constexpr uint32_t kPackNumberBits = 28;
constexpr uint32_t kMaxPacks = 1u << kPackNumberBits;

Status corrupt_index(std::string_view why) { return Status::corruption("index file: " + std::string(why)); }

// A cursor over untrusted bytes: every read is bounds-checked.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  size_t remaining() const { return data_.size() - pos_; }
  bool u32(uint32_t& v) {
    if (remaining() < 4) return false;
    v = wire::get_u32(data_.data() + pos_);
    pos_ += 4;
    return true;
  }
  const char* take(size_t n) {
    if (remaining() < n) return nullptr;
    const char* p = data_.data() + pos_;
    pos_ += n;
    return p;
  }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

}  // namespace

// The packed form that keeps an entry at 48 bytes: type and compression live
// in the top bits of the pack number.
struct Index::Record {
  uint8_t id[32];
  uint32_t pack_and_flags;  // pack number (28 bits) | type << 28 | compression << 30
  uint32_t offset;
  uint32_t stored_length;
  uint32_t raw_length;
};

std::string index_key(const Hash256& id) { return "index/" + id.hex(); }

Bytes serialize_index_file(const IndexFile& file) {
  Bytes out;
  size_t entries = 0;
  for (const auto& p : file.packs) entries += p.blobs.size();
  out.reserve(24 + 32 * file.supersedes.size() + 40 * file.packs.size() + kPackEntrySize * entries + 32);
  out.append(kIndexMagic);
  wire::put_u32(out, kIndexVersion);
  wire::put_u32(out, 0);  // flags: no encryption
  wire::put_u32(out, static_cast<uint32_t>(file.supersedes.size()));
  for (const auto& id : file.supersedes) out.append(id.raw());
  wire::put_u32(out, static_cast<uint32_t>(file.packs.size()));
  for (const auto& p : file.packs) {
    out.append(p.id.raw());
    wire::put_u32(out, p.length);
    wire::put_u32(out, static_cast<uint32_t>(p.blobs.size()));
    for (const auto& b : p.blobs) append_pack_entry(out, b);
  }
  out.append(sha256(out).raw());
  return out;
}

Result<IndexFile> parse_index_file(std::string_view data) {
  if (data.size() < kIndexMagic.size() + 16 + 32) return corrupt_index("too short (" + std::to_string(data.size()) + " bytes)");
  const std::string_view body = data.substr(0, data.size() - 32);
  if (sha256(body).raw() != data.substr(data.size() - 32)) return corrupt_index("checksum mismatch");
  if (body.substr(0, kIndexMagic.size()) != kIndexMagic) return corrupt_index("bad magic");
  Reader r(body.substr(kIndexMagic.size()));
  uint32_t version = 0, flags = 0, supersedes = 0, packs = 0;
  if (!r.u32(version) || !r.u32(flags)) return corrupt_index("truncated header");
  if (version != kIndexVersion) return corrupt_index("unsupported version " + std::to_string(version));
  if (flags != 0) return corrupt_index("unsupported flags " + std::to_string(flags) + " (encrypted?)");
  if (!r.u32(supersedes) || supersedes > r.remaining() / 32) return corrupt_index("bad supersedes count");
  IndexFile file;
  file.supersedes.reserve(supersedes);
  for (uint32_t i = 0; i < supersedes; ++i) file.supersedes.push_back(Hash256::from_raw(r.take(32)));
  constexpr size_t kMinPackRecord = 32 + 4 + 4;
  if (!r.u32(packs) || packs > r.remaining() / kMinPackRecord) return corrupt_index("bad pack count");
  file.packs.reserve(packs);
  for (uint32_t i = 0; i < packs; ++i) {
    IndexPack p;
    const char* id = r.take(32);
    uint32_t count = 0;
    if (id == nullptr || !r.u32(p.length) || !r.u32(count)) return corrupt_index("truncated pack record");
    p.id = Hash256::from_raw(id);
    const std::string what = "index file, pack " + p.id.hex();
    if (p.length < kPackTrailerSize + kPackHeaderFixedSize) return corrupt_index(what + ": length too small");
    if (count > r.remaining() / kPackEntrySize) return corrupt_index(what + ": entry count exceeds the file");
    const uint64_t data_end = p.length - kPackTrailerSize;
    p.blobs.reserve(count);
    for (uint32_t j = 0; j < count; ++j) {
      STOWAGE_ASSIGN_OR_RETURN(PackBlob b, parse_pack_entry(r.take(kPackEntrySize), what));
      if (uint64_t{b.offset} + b.stored_length > data_end) {
        return corrupt_index(what + ": blob " + b.id.hex() + " lies outside the pack");
      }
      p.blobs.push_back(b);
    }
    file.packs.push_back(std::move(p));
  }
  if (r.remaining() != 0) return corrupt_index(std::to_string(r.remaining()) + " trailing bytes");
  return file;
}

Index::Index() : slots_(kInitialSlots, 0) {
  static_assert(sizeof(Record) == 48, "FORMAT.md §9 promises 48-byte records");
}
Index::~Index() = default;
Index::Index(Index&&) noexcept = default;
Index& Index::operator=(Index&&) noexcept = default;

Index::Record& Index::record(uint32_t n) const { return blocks_[n / kBlockRecords][n % kBlockRecords]; }

uint32_t Index::find_slot(const BlobId& id) const {
  // Keyed over all 32 bytes: an index file's writer chooses its ids.
  const size_t mask = slots_.size() - 1;
  size_t s = Hash256Hasher{}(id) & mask;
  while (slots_[s] != 0 && std::memcmp(record(slots_[s] - 1).id, id.bytes.data(), 32) != 0) s = (s + 1) & mask;
  return static_cast<uint32_t>(s);
}

void Index::grow() {
  std::vector<uint32_t> old;
  old.swap(slots_);
  slots_.assign(old.size() * 2, 0);
  for (uint32_t v : old) {
    if (v != 0) slots_[find_slot(Hash256::from_raw(record(v - 1).id))] = v;
  }
}

Result<bool> Index::add(const PackId& pack, uint32_t pack_length, const PackBlob& blob) {
  const uint32_t slot = find_slot(blob.id);
  if (slots_[slot] != 0) return false;
  if (count_ >= 0xFFFFFFFEull) return Status::resource_exhausted("index holds 2^32 - 1 blobs");
  auto [it, inserted] = pack_numbers_.try_emplace(pack, static_cast<uint32_t>(packs_.size()));
  if (inserted) {
    if (packs_.size() >= kMaxPacks) {
      pack_numbers_.erase(it);
      return Status::resource_exhausted("index holds 2^28 packs");
    }
    packs_.push_back({pack, pack_length});
  }
  const auto n = static_cast<uint32_t>(count_);
  if (n % kBlockRecords == 0) blocks_.push_back(std::make_unique<Record[]>(kBlockRecords));
  Record& r = record(n);
  std::memcpy(r.id, blob.id.bytes.data(), 32);
  r.pack_and_flags = it->second | static_cast<uint32_t>(blob.type) << 28 | static_cast<uint32_t>(blob.compression) << 30;
  r.offset = blob.offset;
  r.stored_length = blob.stored_length;
  r.raw_length = blob.raw_length;
  slots_[slot] = n + 1;
  ++count_;
  if (count_ * 4 > slots_.size() * 3) grow();
  return true;
}

Status Index::add_pack(const IndexPack& pack) {
  for (const auto& b : pack.blobs) {
    auto r = add(pack.id, pack.length, b);
    if (!r.is_ok()) return r.status();
  }
  return Status::ok();
}

Status Index::merge(const IndexFile& file) {
  for (const auto& p : file.packs) STOWAGE_RETURN_IF_ERROR(add_pack(p));
  return Status::ok();
}

std::optional<BlobLocation> Index::find(const BlobId& id) const {
  const uint32_t v = slots_[find_slot(id)];
  if (v == 0) return std::nullopt;
  const Record& r = record(v - 1);
  const PackRef& p = packs_[r.pack_and_flags & (kMaxPacks - 1)];
  BlobLocation loc;
  loc.pack = p.id;
  loc.pack_length = p.length;
  loc.type = static_cast<BlobType>(r.pack_and_flags >> 28 & 3);
  loc.compression = static_cast<Compression>(r.pack_and_flags >> 30 & 3);
  loc.offset = r.offset;
  loc.stored_length = r.stored_length;
  loc.raw_length = r.raw_length;
  return loc;
}

bool Index::contains(const BlobId& id) const { return slots_[find_slot(id)] != 0; }

size_t Index::memory_bytes() const {
  // unordered_map: one bucket pointer per bucket, one node (key, value, next
  // pointer, cached hash) per pack.
  constexpr size_t kMapNode = sizeof(void*) + sizeof(PackId) + sizeof(uint32_t) + sizeof(size_t) + 4;
  return blocks_.size() * kBlockRecords * sizeof(Record) + blocks_.capacity() * sizeof(void*) +
         slots_.capacity() * sizeof(uint32_t) + packs_.capacity() * sizeof(PackRef) +
         pack_numbers_.bucket_count() * sizeof(void*) + pack_numbers_.size() * kMapNode;
}

IndexFile Index::to_file() const {
  IndexFile file;
  file.packs.resize(packs_.size());
  for (size_t i = 0; i < packs_.size(); ++i) {
    file.packs[i].id = packs_[i].id;
    file.packs[i].length = packs_[i].length;
  }
  for (uint32_t n = 0; n < count_; ++n) {
    const Record& r = record(n);
    PackBlob b;
    b.id = Hash256::from_raw(r.id);
    b.type = static_cast<BlobType>(r.pack_and_flags >> 28 & 3);
    b.compression = static_cast<Compression>(r.pack_and_flags >> 30 & 3);
    b.offset = r.offset;
    b.stored_length = r.stored_length;
    b.raw_length = r.raw_length;
    file.packs[r.pack_and_flags & (kMaxPacks - 1)].blobs.push_back(b);
  }
  for (auto& p : file.packs) {
    std::sort(p.blobs.begin(), p.blobs.end(), [](const PackBlob& a, const PackBlob& b) { return a.offset < b.offset; });
  }
  return file;
}

}  // namespace stowage
