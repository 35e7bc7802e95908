#include "stowage/repository.h"

#include <algorithm>
#include <map>
#include <set>

namespace stowage {

namespace {

constexpr std::string_view kIndexPrefix = "index/";
constexpr std::string_view kSnapshotPrefix = "snapshots/";
constexpr std::string_view kDataPrefix = "data/";

}  // namespace

std::string snapshot_key(const Hash256& id) { return std::string(kSnapshotPrefix) + id.hex(); }

Result<std::unique_ptr<Repository>> Repository::init(std::unique_ptr<ObjectStore> store,
                                                     const RepositoryConfig& config) {
  const Bytes text = serialize_config(config);
  // Refuse to write what open() would refuse to read.
  auto check = parse_config(text);
  if (!check.is_ok()) return Status::invalid_argument("init: " + check.status().message());
  const std::string where = store->describe();
  if (Status s = store->put(kConfigKey, text, {.create_only = true}); !s.is_ok()) {
    // A retried put whose first attempt was stored after all meets itself:
    // the config holds a fresh random id, so identical bytes are our own.
    if (s.code() != Code::kAlreadyExists) return s.with_context("init repository " + where);
    auto stored = store->get(kConfigKey);
    if (!stored.is_ok() || *stored != text) {
      return Status::already_exists("init repository " + where + ": a repository already exists there");
    }
  }
  return std::unique_ptr<Repository>(new Repository(std::move(store), std::move(check).value()));
}

Result<std::unique_ptr<Repository>> Repository::open(std::unique_ptr<ObjectStore> store) {
  const std::string where = store->describe();
  auto text = store->get(kConfigKey);
  if (!text.is_ok()) {
    if (text.status().code() == Code::kNotFound) {
      // The store's message tells a missing config from, say, a missing bucket.
      return Status::not_found("no repository at " + where + " (" + text.status().message() +
                               "); 'stowctl repo init' creates one");
    }
    return text.status().with_context("open repository " + where);
  }
  auto config = parse_config(*text);
  if (!config.is_ok()) return config.status().with_context("open repository " + where);
  return std::unique_ptr<Repository>(new Repository(std::move(store), std::move(config).value()));
}

Status Repository::put_content_addressed(const std::string& key, std::string_view data) {
  Status s = store_->put(key, data, {.create_only = true});
  if (s.code() != Code::kAlreadyExists) return s.with_context("put " + key);
  // Same name means same SHA-256, so same bytes, unless the object is damaged.
  auto info = store_->head(key);
  if (!info.is_ok()) return info.status().with_context("head " + key);
  if (info->size != data.size()) {
    return Status::corruption(key + " exists with " + std::to_string(info->size) + " bytes, expected " +
                              std::to_string(data.size()));
  }
  return Status::ok();
}

Status Repository::save_pack(const PackWriter::Finished& pack) {
  return put_content_addressed(pack_key(pack.id), pack.data);
}

Result<Hash256> Repository::save_index(const IndexFile& file) {
  const Bytes data = serialize_index_file(file);
  const Hash256 id = sha256(data);
  STOWAGE_RETURN_IF_ERROR(put_content_addressed(index_key(id), data));
  return id;
}

Result<std::vector<Hash256>> Repository::list_ids(std::string_view prefix) {
  auto objects = store_->list(prefix);
  if (!objects.is_ok()) return objects.status().with_context("list " + std::string(prefix));
  std::vector<Hash256> ids;
  for (const auto& o : *objects) {
    if (o.key.size() != prefix.size() + 64) continue;  // not ours (FORMAT.md §1)
    auto id = Hash256::from_hex(std::string_view(o.key).substr(prefix.size()));
    if (id.is_ok()) ids.push_back(*id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

Result<Bytes> Repository::get_verified(const std::string& key, const Hash256& id) {
  auto data = store_->get(key);
  if (!data.is_ok()) return data.status().with_context("get " + key);
  if (sha256(*data) != id) return Status::corruption(key + ": content does not match its name (SHA-256 mismatch)");
  return std::move(data).value();
}

Result<std::map<Hash256, IndexFile>> Repository::load_index_files(std::set<Hash256>* superseded_present) {
  STOWAGE_ASSIGN_OR_RETURN(const std::vector<Hash256> ids, list_ids(kIndexPrefix));
  std::map<Hash256, IndexFile> files;
  std::set<Hash256> superseded;
  for (const auto& id : ids) {
    const std::string key = index_key(id);
    auto data = get_verified(key, id);
    if (!data.is_ok()) {
      // Deleted by a concurrent prune after it was superseded: not needed.
      if (data.status().code() == Code::kNotFound) continue;
      return data.status();
    }
    auto file = parse_index_file(*data);
    if (!file.is_ok()) return file.status().with_context(key);
    superseded.insert(file->supersedes.begin(), file->supersedes.end());
    files.emplace(id, std::move(file).value());
  }
  for (const auto& id : superseded) {
    if (files.erase(id) && superseded_present) superseded_present->insert(id);
  }
  return files;
}

Result<Index> Repository::load_index() {
  STOWAGE_ASSIGN_OR_RETURN(const auto files, load_index_files());
  Index index;
  for (const auto& [id, file] : files) {
    STOWAGE_RETURN_IF_ERROR(index.merge(file).with_context("load index " + index_key(id)));
  }
  return index;
}

Result<Bytes> Repository::read_blob(BlobCodec& codec, const BlobId& id, const BlobLocation& loc) {
  const std::string key = pack_key(loc.pack);
  if (loc.stored_length == 0) return codec.decode(id, loc.compression, loc.raw_length, {});
  auto stored = store_->get(key, loc.offset, loc.stored_length);
  if (!stored.is_ok()) return stored.status().with_context("read blob " + id.hex() + " from " + key);
  return codec.decode(id, loc.compression, loc.raw_length, *stored);
}

Result<std::map<PackId, uint64_t>> Repository::list_packs() {
  auto objects = store_->list(kDataPrefix);
  if (!objects.is_ok()) return objects.status().with_context("list data/");
  std::map<PackId, uint64_t> packs;
  for (const auto& o : *objects) {
    // data/xx/<64 hex>
    if (o.key.size() != kDataPrefix.size() + 3 + 64) continue;
    auto id = Hash256::from_hex(std::string_view(o.key).substr(kDataPrefix.size() + 3));
    if (!id.is_ok() || pack_key(*id) != o.key) continue;
    packs.emplace(*id, o.size);
  }
  return packs;
}

Result<IndexFile> Repository::scan_packs() {
  STOWAGE_ASSIGN_OR_RETURN(const auto packs, list_packs());
  IndexFile file;
  for (const auto& [id, size] : packs) {
    STOWAGE_ASSIGN_OR_RETURN(std::vector<PackBlob> blobs, read_pack_header(*store_, pack_key(id)));
    file.packs.push_back({id, static_cast<uint32_t>(size), std::move(blobs)});
  }
  return file;
}

Result<Hash256> Repository::save_snapshot(std::string_view manifest) {
  const Hash256 id = sha256(manifest);
  STOWAGE_RETURN_IF_ERROR(put_content_addressed(snapshot_key(id), manifest));
  return id;
}

Result<Bytes> Repository::load_snapshot(const Hash256& id) { return get_verified(snapshot_key(id), id); }

Result<std::vector<Hash256>> Repository::list_snapshots() { return list_ids(kSnapshotPrefix); }

}  // namespace stowage
