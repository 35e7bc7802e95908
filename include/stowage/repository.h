// Repository: the on-store format of docs/FORMAT.md over any ObjectStore —
// config, packs, index files, snapshot manifests — with create-only writes of
// content-addressed objects. It does not chunk, walk or schedule anything: the
// backup/restore pipelines, prune and check are built on top of it.
#pragma once

#include <map>
#include <set>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "stowage/blob.h"
#include "stowage/index.h"
#include "stowage/object_store.h"
#include "stowage/pack.h"
#include "stowage/repo_config.h"
#include "stowage/status.h"

namespace stowage {

// "snapshots/<64 hex>".
std::string snapshot_key(const Hash256& id);

// Safe for concurrent use from many threads (it holds no mutable state besides
// the store, which is thread-safe).
class Repository {
 public:
  // Creates a repository in `store` by writing `config` with a create-only
  // put. kAlreadyExists if the store already holds a config (never
  // overwritten); kInvalidArgument if `config` is not one this build would
  // accept from parse_config().
  [[nodiscard]] static Result<std::unique_ptr<Repository>> init(std::unique_ptr<ObjectStore> store,
                                                                const RepositoryConfig& config);

  // Opens an existing repository: reads and validates its config.
  // kNotFound if there is none; parse_config() errors otherwise.
  [[nodiscard]] static Result<std::unique_ptr<Repository>> open(std::unique_ptr<ObjectStore> store);

  const RepositoryConfig& config() const { return config_; }
  ObjectStore& store() { return *store_; }

  // Stores a finished pack under pack_key(pack.id), create-only. A pack that
  // already exists with the same length is the same pack (content-addressed):
  // OK. A different length there is kCorruption (a damaged object).
  [[nodiscard]] Status save_pack(const PackWriter::Finished& pack);

  // Stores an index file (create-only) and returns its id. Callers write it
  // only after every pack it lists is stored (FORMAT.md §8.2).
  [[nodiscard]] Result<Hash256> save_index(const IndexFile& file);

  // Reads every index file under index/, verifies each against its name,
  // drops those superseded by another present index file, and merges the rest.
  // Holds all parsed files in memory while loading. kCorruption names the bad
  // object; keys under index/ that are not 64-hex names are ignored.
  [[nodiscard]] Result<Index> load_index();
  // The index files load_index() merges (present and not superseded), by id.
  // Prune and check need to know which file lists which pack. With
  // `superseded`, also returns the ids of present files that a present file
  // supersedes: left by a prune interrupted before it deleted them. They stay
  // out of the index only while their superseding file exists, so whoever
  // replaces that file must supersede them again (or delete them first).
  [[nodiscard]] Result<std::map<Hash256, IndexFile>> load_index_files(std::set<Hash256>* superseded = nullptr);

  // Reads the blob at `loc` with one ranged GET and decodes it, verifying its
  // id. kCorruption if it does not match (a damaged pack or a wrong index).
  [[nodiscard]] Result<Bytes> read_blob(BlobCodec& codec, const BlobId& id, const BlobLocation& loc);

  // Rebuilds index contents from the pack headers alone (list data/, one
  // ranged read per pack): what `rebuild-index` writes and `check` compares.
  [[nodiscard]] Result<IndexFile> scan_packs();
  // Every pack object under data/ (well-formed keys only) with its length.
  [[nodiscard]] Result<std::map<PackId, uint64_t>> list_packs();

  // Stores a snapshot manifest (JSON bytes, FORMAT.md §6.1) create-only under
  // snapshot_key(sha256(manifest)) and returns the id. Callers write it last,
  // after the index files covering every blob it references.
  [[nodiscard]] Result<Hash256> save_snapshot(std::string_view manifest);
  // Reads a snapshot manifest and verifies it against its id.
  [[nodiscard]] Result<Bytes> load_snapshot(const Hash256& id);
  // Ids of all snapshots, sorted.
  [[nodiscard]] Result<std::vector<Hash256>> list_snapshots();

 private:
  Repository(std::unique_ptr<ObjectStore> store, RepositoryConfig config)
      : store_(std::move(store)), config_(std::move(config)) {}

  // Create-only put of a content-addressed object; an existing object of the
  // same size under that key counts as success.
  [[nodiscard]] Status put_content_addressed(const std::string& key, std::string_view data);
  // Lists `prefix` and returns the ids of keys "<prefix><64 hex>".
  [[nodiscard]] Result<std::vector<Hash256>> list_ids(std::string_view prefix);
  // Gets `key` and checks SHA-256 of the bytes equals `id`.
  [[nodiscard]] Result<Bytes> get_verified(const std::string& key, const Hash256& id);

  std::unique_ptr<ObjectStore> store_;
  RepositoryConfig config_;
};

}  // namespace stowage
