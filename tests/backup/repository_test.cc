#include "stowage/repository.h"

#include <gtest/gtest.h>

#include <set>

#include "backup/test_data.h"
#include "stowage/snapshot_manifest.h"
#include "stowage/store_file.h"
#include "stowage/tree.h"
#include "support/test_support.h"

namespace stowage {
namespace {

using test::compressible_bytes;
using test::random_bytes;
using test::TempDir;

std::unique_ptr<ObjectStore> file_store(const TempDir& dir) {
  auto s = open_file_store(dir.path() + "/repo");
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
  return std::move(s).value();
}

RepositoryConfig new_config() {
  RepositoryConfig c;
  c.id = sha256("test repository");
  c.created_ns = 1;
  return c;
}

struct PackWithPlain {
  PackWriter::Finished pack;
  std::vector<std::string> plain;
};

PackWithPlain make_pack(uint64_t seed, int blobs) {
  BlobCodec codec;
  PackWriter writer;
  PackWithPlain out;
  for (int i = 0; i < blobs; ++i) {
    std::string p = i % 2 ? compressible_bytes(5000, seed * 100 + i) : random_bytes(5000, seed * 100 + i);
    auto enc = codec.encode(BlobType::kData, p);
    EXPECT_TRUE(enc.is_ok() && writer.add(*enc).is_ok());
    out.plain.push_back(std::move(p));
  }
  auto f = writer.finish();
  EXPECT_TRUE(f.is_ok());
  out.pack = std::move(f).value();
  return out;
}

IndexFile index_of(const std::vector<const PackWithPlain*>& packs) {
  IndexFile f;
  for (const auto* p : packs) {
    f.packs.push_back({p->pack.id, static_cast<uint32_t>(p->pack.data.size()), p->pack.blobs});
  }
  return f;
}

// A freshly initialised repository in a file store.
class RepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = Repository::init(file_store(dir_), new_config());
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    repo_ = std::move(r).value();
  }
  TempDir dir_;
  std::unique_ptr<Repository> repo_;
};

TEST(Repository, InitThenOpenAndNeverOverwriteConfig) {
  TempDir dir;
  {
    auto missing = Repository::open(file_store(dir));
    ASSERT_FALSE(missing.is_ok());
    EXPECT_EQ(missing.status().code(), Code::kNotFound);
  }
  auto repo = Repository::init(file_store(dir), new_config());
  ASSERT_TRUE(repo.is_ok()) << repo.status().to_string();
  EXPECT_EQ((*repo)->config(), new_config());

  RepositoryConfig other = new_config();
  other.id = sha256("other");
  auto again = Repository::init(file_store(dir), other);
  ASSERT_FALSE(again.is_ok());
  EXPECT_EQ(again.status().code(), Code::kAlreadyExists);

  auto opened = Repository::open(file_store(dir));
  ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
  EXPECT_EQ((*opened)->config(), new_config());

  // A retried create-only put whose first attempt landed although its answer
  // was lost (a timeout) gets "already exists" from its own write: init
  // succeeds, since the config it finds is byte for byte the one it wrote.
  TempDir dir3;
  {
    auto store = file_store(dir3);
    ASSERT_TRUE(store->put(std::string(kConfigKey), serialize_config(new_config()), {.create_only = true}).is_ok());
  }
  auto met_itself = Repository::init(file_store(dir3), new_config());
  ASSERT_TRUE(met_itself.is_ok()) << met_itself.status().to_string();
  auto other_there = Repository::init(file_store(dir3), other);
  ASSERT_FALSE(other_there.is_ok());
  EXPECT_EQ(other_there.status().code(), Code::kAlreadyExists);
  EXPECT_NE(other_there.status().message().find("a repository already exists there"), std::string::npos);

  RepositoryConfig bad = new_config();
  bad.chunker.avg_size = 1000;
  TempDir dir2;
  auto refused = Repository::init(file_store(dir2), bad);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), Code::kInvalidArgument);
}

TEST_F(RepositoryTest, PacksIndexSnapshotsRoundTrip) {
  Repository& repo = *repo_;
  const auto a = make_pack(1, 6), b = make_pack(2, 4);
  ASSERT_TRUE(repo.save_pack(a.pack).is_ok());
  ASSERT_TRUE(repo.save_pack(b.pack).is_ok());
  ASSERT_TRUE(repo.save_pack(a.pack).is_ok());  // idempotent: same content, same key
  auto index_id = repo.save_index(index_of({&a, &b}));
  ASSERT_TRUE(index_id.is_ok()) << index_id.status().to_string();

  auto index = repo.load_index();
  ASSERT_TRUE(index.is_ok()) << index.status().to_string();
  EXPECT_EQ(index->size(), 10u);
  BlobCodec codec;
  for (const auto* p : {&a, &b}) {
    for (size_t i = 0; i < p->pack.blobs.size(); ++i) {
      const BlobId& id = p->pack.blobs[i].id;
      auto loc = index->find(id);
      ASSERT_TRUE(loc.has_value());
      auto plain = repo.read_blob(codec, id, *loc);
      ASSERT_TRUE(plain.is_ok()) << plain.status().to_string();
      EXPECT_EQ(*plain, p->plain[i]);
    }
  }

  // The index can be rebuilt from the packs alone.
  auto scanned = repo.scan_packs();
  ASSERT_TRUE(scanned.is_ok()) << scanned.status().to_string();
  Index rebuilt;
  ASSERT_TRUE(rebuilt.merge(*scanned).is_ok());
  EXPECT_EQ(rebuilt.size(), 10u);
  for (const auto& blob : a.pack.blobs) EXPECT_EQ(rebuilt.find(blob.id)->offset, blob.offset);

  const std::string manifest = R"({"version":1,"volume":"db1","tree":[]})";
  auto snap = repo.save_snapshot(manifest);
  ASSERT_TRUE(snap.is_ok());
  auto listed = repo.list_snapshots();
  ASSERT_TRUE(listed.is_ok());
  EXPECT_EQ(*listed, std::vector<Hash256>{*snap});
  auto loaded = repo.load_snapshot(*snap);
  ASSERT_TRUE(loaded.is_ok());
  EXPECT_EQ(*loaded, manifest);
}

TEST_F(RepositoryTest, SupersededIndexFilesAreIgnored) {
  Repository& repo = *repo_;
  const auto a = make_pack(3, 3), b = make_pack(4, 3);
  ASSERT_TRUE(repo.save_pack(a.pack).is_ok() && repo.save_pack(b.pack).is_ok());
  auto old_id = repo.save_index(index_of({&a, &b}));
  ASSERT_TRUE(old_id.is_ok());
  // Prune phase 2, step 1: a new index keeps only b and supersedes the old one.
  IndexFile replacement = index_of({&b});
  replacement.supersedes = {*old_id};
  ASSERT_TRUE(repo.save_index(replacement).is_ok());
  auto index = repo.load_index();
  ASSERT_TRUE(index.is_ok()) << index.status().to_string();
  EXPECT_EQ(index->size(), 3u);
  EXPECT_FALSE(index->contains(a.pack.blobs[0].id));
  EXPECT_TRUE(index->contains(b.pack.blobs[0].id));
}

TEST_F(RepositoryTest, DamagedObjectsAreReportedAsCorruption) {
  Repository& repo = *repo_;
  const auto a = make_pack(5, 4);
  ASSERT_TRUE(repo.save_pack(a.pack).is_ok());
  auto index_id = repo.save_index(index_of({&a}));
  ASSERT_TRUE(index_id.is_ok());
  auto index = repo.load_index();
  ASSERT_TRUE(index.is_ok());

  // Damage a blob inside the stored pack (same length).
  std::string damaged = a.pack.data;
  const PackBlob& victim = a.pack.blobs[1];
  damaged[victim.offset + 7] ^= 0x40;
  ASSERT_TRUE(repo.store().put(pack_key(a.pack.id), damaged).is_ok());
  BlobCodec codec;
  auto r = repo.read_blob(codec, victim.id, *index->find(victim.id));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_NE(r.status().message().find(victim.id.hex()), std::string::npos);

  // A pack of another length under the same name cannot be "already there".
  ASSERT_TRUE(repo.store().put(pack_key(a.pack.id), damaged.substr(1)).is_ok());
  EXPECT_EQ(repo.save_pack(a.pack).code(), Code::kCorruption);

  // An index file whose bytes do not match its name.
  ASSERT_TRUE(repo.store().put(index_key(*index_id), serialize_index_file(IndexFile{})).is_ok());
  auto bad_index = repo.load_index();
  ASSERT_FALSE(bad_index.is_ok());
  EXPECT_EQ(bad_index.status().code(), Code::kCorruption);
  EXPECT_NE(bad_index.status().message().find(index_id->hex()), std::string::npos);

  // Unknown keys are ignored (FORMAT.md §1).
  ASSERT_TRUE(repo.store().put(index_key(*index_id), serialize_index_file(index_of({&a}))).is_ok());
  ASSERT_TRUE(repo.store().put("index/README", "not an index").is_ok());
  ASSERT_TRUE(repo.store().put("snapshots/tmp-123", "x").is_ok());
  EXPECT_TRUE(repo.load_index().is_ok());
  auto snaps = repo.list_snapshots();
  ASSERT_TRUE(snaps.is_ok());
  EXPECT_TRUE(snaps->empty());
}

// The foundations composed the way the backup pipeline will use them: chunk a
// file, dedup against the index, encode, pack, upload packs → index → tree →
// snapshot (FORMAT.md §8.2), then restore it from a freshly opened repository
// and compare. The second "backup" of a slightly changed file uploads only the
// changed chunks.
TEST_F(RepositoryTest, ChunkPackIndexSnapshotRestoreEndToEnd) {
  const auto chunker = Chunker::create(ChunkerParams::with_average(4096));
  ASSERT_TRUE(chunker.is_ok());
  BlobCodec codec;
  Index index;

  // One backup of one file; returns the snapshot id and the number of new blobs.
  auto backup = [&](const std::string& content) -> std::pair<Hash256, size_t> {
    PackWriter writer;
    IndexFile written;
    size_t new_blobs = 0;
    auto flush = [&] {
      auto pack = writer.finish();
      EXPECT_TRUE(pack.is_ok());
      EXPECT_TRUE(repo_->save_pack(*pack).is_ok());
      written.packs.push_back({pack->id, static_cast<uint32_t>(pack->data.size()), pack->blobs});
    };
    TreeEntry entry;
    entry.type = NodeType::kFile;
    entry.name = "data.bin";
    entry.mode = 0600;
    entry.size = content.size();
    size_t pos = 0;
    StreamChunker stream(*chunker, [&](char* buf, size_t len) -> Result<size_t> {
      const size_t n = std::min(len, content.size() - pos);
      std::copy_n(content.data() + pos, n, buf);
      pos += n;
      return n;
    });
    std::set<BlobId> in_this_pack;
    auto store_blob = [&](BlobType type, std::string_view plain) -> BlobId {
      auto enc = codec.encode(type, plain);
      EXPECT_TRUE(enc.is_ok());
      if (!index.contains(enc->id) && in_this_pack.insert(enc->id).second) {
        EXPECT_TRUE(writer.add(*enc).is_ok());
        ++new_blobs;
        if (writer.blob_bytes() >= 20000) {  // tiny packs so that there are several
          flush();
          in_this_pack.clear();
        }
      }
      return enc->id;
    };
    while (true) {
      auto next = stream.next();
      EXPECT_TRUE(next.is_ok());
      if (!next->has_value()) break;
      entry.chunks.push_back(store_blob(BlobType::kData, **next));
    }
    Tree root;
    root.entries.push_back(entry);
    auto tree_bytes = serialize_tree(root);
    EXPECT_TRUE(tree_bytes.is_ok());
    const BlobId tree_id = store_blob(BlobType::kTree, *tree_bytes);
    if (!writer.empty()) flush();
    EXPECT_TRUE(repo_->save_index(written).is_ok());  // packs → index
    EXPECT_TRUE(index.merge(written).is_ok());
    SnapshotManifest snap;
    snap.volume = "db1";
    snap.hostname = "test";
    snap.tree = {tree_id};
    auto manifest = serialize_snapshot(snap);
    EXPECT_TRUE(manifest.is_ok());
    auto snap_id = repo_->save_snapshot(*manifest);  // → snapshot, last
    EXPECT_TRUE(snap_id.is_ok());
    return {*snap_id, new_blobs};
  };

  std::string v1 = random_bytes(300000, 21);
  std::string v2 = v1;
  for (size_t i = 150000; i < 150100; ++i) v2[i] = 'x';
  const auto [snap1, new1] = backup(v1);
  const auto [snap2, new2] = backup(v2);
  EXPECT_GT(new1, 50u);
  EXPECT_LE(new2, 4u) << "an in-place change should add the changed chunk(s) and the new tree only";

  // Restore both from a freshly opened repository.
  auto reopened = Repository::open(file_store(dir_));
  ASSERT_TRUE(reopened.is_ok());
  Repository& repo = **reopened;
  auto loaded = repo.load_index();
  ASSERT_TRUE(loaded.is_ok());
  for (const auto& [snap_id, expected] : {std::pair{snap1, v1}, std::pair{snap2, v2}}) {
    auto manifest_bytes = repo.load_snapshot(snap_id);
    ASSERT_TRUE(manifest_bytes.is_ok());
    auto manifest = parse_snapshot(*manifest_bytes);
    ASSERT_TRUE(manifest.is_ok());
    ASSERT_EQ(manifest->tree.size(), 1u);
    auto tree_loc = loaded->find(manifest->tree[0]);
    ASSERT_TRUE(tree_loc.has_value());
    EXPECT_EQ(tree_loc->type, BlobType::kTree);
    auto tree_bytes = repo.read_blob(codec, manifest->tree[0], *tree_loc);
    ASSERT_TRUE(tree_bytes.is_ok());
    auto tree = parse_tree(*tree_bytes);
    ASSERT_TRUE(tree.is_ok());
    ASSERT_EQ(tree->entries.size(), 1u);
    std::string restored;
    for (const auto& id : tree->entries[0].chunks) {
      auto loc = loaded->find(id);
      ASSERT_TRUE(loc.has_value());
      auto chunk = repo.read_blob(codec, id, *loc);
      ASSERT_TRUE(chunk.is_ok()) << chunk.status().to_string();
      restored += *chunk;
    }
    EXPECT_EQ(restored.size(), tree->entries[0].size);
    EXPECT_EQ(restored, expected);
  }
  // And the index rebuilt from the packs alone knows every blob.
  auto scanned = repo.scan_packs();
  ASSERT_TRUE(scanned.is_ok());
  Index rebuilt;
  ASSERT_TRUE(rebuilt.merge(*scanned).is_ok());
  EXPECT_EQ(rebuilt.size(), loaded->size());
}

}  // namespace
}  // namespace stowage
