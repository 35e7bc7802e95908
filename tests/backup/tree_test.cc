#include "stowage/tree.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <tuple>

namespace stowage {
namespace {

TreeEntry file(std::string name) {
  TreeEntry e;
  e.type = NodeType::kFile;
  e.name = std::move(name);
  e.mode = 0644;
  e.uid = 999;
  e.gid = 999;
  e.mtime_ns = 1764170000123456789;
  e.ctime_ns = 1764170000223456789;
  e.inode = 42;
  e.size = 10;
  return e;
}

Tree full_tree() {
  Tree t;
  TreeEntry f = file("base");
  f.size = 1 << 20;
  f.hardlink = 3;
  f.holes = {{0, 4096}, {65536, 8192}};
  f.chunks = {sha256("c1"), sha256("c2")};
  const ChunkSummer sum(sha256("tree test repository"));
  f.chunk_sums = {sum("c1"), sum("c2")};
  f.xattrs = {{"security.selinux", std::string("x\0y", 3)}, {"user.a", "1"}};
  TreeEntry d = file("dir");
  d.type = NodeType::kDir;
  d.size = 0;
  d.mode = 01777;
  d.subtree = {sha256("t1"), sha256("t2")};
  TreeEntry l = file("link");
  l.type = NodeType::kSymlink;
  l.size = 0;
  l.target = "../elsewhere";
  TreeEntry dev = file("null");
  dev.type = NodeType::kCharDev;
  dev.size = 0;
  dev.rdev = 0x103;
  TreeEntry fifo = file("pipe");
  fifo.type = NodeType::kFifo;
  fifo.size = 0;
  TreeEntry latin1 = file(std::string("caf\xe9", 4));  // not UTF-8
  TreeEntry utf8 = file("caf\xc3\xa9");
  // Sorted by raw bytes: "caf\xc3\xa9" < "caf\xe9".
  t.entries = {f, utf8, latin1, d, l, dev, fifo};
  return t;
}

TEST(Tree, RoundTrip) {
  const Tree t = full_tree();
  auto bytes = serialize_tree(t);
  ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
  auto parsed = parse_tree(*bytes);
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  EXPECT_EQ(*parsed, t);
  // Canonical: serialising the parsed tree gives the very same bytes (same id).
  auto again = serialize_tree(*parsed);
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(*again, *bytes);
  EXPECT_NE(bytes->find(R"("name_b64":"Y2Fm6Q==")"), std::string::npos) << *bytes;
  EXPECT_NE(bytes->find("\"name\":\"caf\xc3\xa9\""), std::string::npos);
}

TEST(Tree, CanonicalBytesAreStable) {
  Tree t;
  t.entries = {file("a")};
  auto bytes = serialize_tree(t);
  ASSERT_TRUE(bytes.is_ok());
  EXPECT_EQ(*bytes,
            R"({"entries":[{"type":"file","name":"a","mode":420,"uid":999,"gid":999,)"
            R"("mtime_ns":1764170000123456789,"ctime_ns":1764170000223456789,"inode":42,"size":10}]})");
}

TEST(Tree, UnknownFieldsAreIgnored) {
  auto j = nlohmann::json::parse(*serialize_tree(full_tree()));
  j["future"] = true;
  j["entries"][0]["acl"] = "u::rw-";
  auto parsed = parse_tree(j.dump());
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  EXPECT_EQ(*parsed, full_tree());
}

void expect_refused(const std::function<void(nlohmann::json&)>& edit, const std::string& fragment) {
  auto j = nlohmann::json::parse(*serialize_tree(full_tree()));
  edit(j);
  auto r = parse_tree(j.dump());
  ASSERT_FALSE(r.is_ok()) << "accepted: " << fragment;
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().message();
}

TEST(Tree, HostileTreesAreRefused) {
  using J = nlohmann::json;
  for (const char* bad : {"..", ".", "", "a/b", "/etc"}) {
    expect_refused([&](J& j) { j["entries"][0]["name"] = bad; }, "invalid name");
  }
  expect_refused([](J& j) { j["entries"][0]["name"] = std::string("a\0b", 3); }, "invalid name");
  expect_refused([](J& j) { j["entries"][0]["name"] = "zzz"; }, "not sorted");
  expect_refused([](J& j) { j["entries"][1]["name"] = "base"; }, "not sorted");
  expect_refused([](J& j) { j["entries"][0]["type"] = "door"; }, "unknown entry type");
  expect_refused([](J& j) { j["entries"][0]["mode"] = 0100644; }, "07777");
  expect_refused([](J& j) { j["entries"][3]["chunks"] = {sha256("x").hex()}; }, "non-file");
  expect_refused([](J& j) { j["entries"][0]["subtree"] = {sha256("x").hex()}; }, "non-directory");
  expect_refused([](J& j) { j["entries"][0]["target"] = "x"; }, "non-symlink");
  expect_refused([](J& j) { j["entries"][4].erase("target"); }, "symlink without");
  expect_refused([](J& j) { j["entries"][0]["rdev"] = 5; }, "rdev");
  expect_refused([](J& j) { j["entries"][0]["holes"] = {{0, 4096}, {100, 10}}; }, "holes");
  expect_refused([](J& j) { j["entries"][0]["holes"] = {{0, 0}}; }, "holes");
  expect_refused([](J& j) { j["entries"][0]["holes"] = {{1 << 20, 1}}; }, "holes");
  expect_refused([](J& j) { j["entries"][0]["holes"] = {{1, ~uint64_t{0}}}; }, "holes");
  expect_refused([](J& j) { j["entries"][0]["holes"] = {{1, 2, 3}}; }, "hole");
  // Numbers a cast would quietly turn into other offsets.
  expect_refused([](J& j) { j["entries"][0]["holes"] = {{J(1.5), 4096}}; }, "hole");
  expect_refused([](J& j) { j["entries"][0]["holes"] = {{0, J(-4096)}}; }, "hole");
  expect_refused([](J& j) { j["entries"][0]["holes"] = {{"0", 4096}}; }, "hole");
  expect_refused([](J& j) { j["entries"][0]["holes"] = J::object({{"a", {0, 4096}}}); }, "holes");
  expect_refused([](J& j) { j["entries"][0]["chunks"] = {"nothex"}; }, "chunks");
  expect_refused([](J& j) { j["entries"][0]["chunk_xxh128"] = ChunkSummer(sha256("r"))("c1").hex(); }, "one sum per chunk");
  expect_refused([](J& j) { j["entries"][0]["chunk_xxh128"] = std::string(64, 'z'); }, "chunk_xxh128");
  expect_refused([](J& j) { j["entries"][0]["chunk_xxh128"] = std::string(63, 'a'); }, "chunk_xxh128");
  expect_refused([](J& j) { j["entries"][0]["chunk_xxh128"] = 5; }, "chunk_xxh128");
  expect_refused([](J& j) { j["entries"][3]["chunk_xxh128"] = ChunkSummer(sha256("r"))("c1").hex(); }, "non-file");
  expect_refused([](J& j) { j["entries"][2]["name_b64"] = "!!!!"; }, "base64");
  expect_refused([](J& j) { j["entries"][2]["name_b64"] = "Y2Fm6Q="; }, "base64");
  expect_refused([](J& j) { j["entries"][0]["xattrs"][1]["name"] = "a.first"; }, "xattrs not sorted");
  expect_refused([](J& j) { j["entries"][0]["xattrs"][0]["value_b64"] = "*"; }, "base64");
  expect_refused([](J& j) { j["entries"][0].erase("mode"); }, "mode");
  expect_refused([](J& j) { j["entries"][0]["uid"] = "root"; }, "uid");
  // Integers are taken only when they fit: no wrapping of -1 into uid 4294967295.
  expect_refused([](J& j) { j["entries"][0]["uid"] = -1; }, "uid");
  expect_refused([](J& j) { j["entries"][0]["gid"] = 4294967296ull; }, "gid");
  expect_refused([](J& j) { j["entries"][0]["size"] = 1.5; }, "size");
  expect_refused([](J& j) { j["entries"][0]["mtime_ns"] = 18446744073709551615ull; }, "mtime_ns");
  expect_refused([](J& j) { j["entries"] = "none"; }, "not an array");
  expect_refused([](J& j) { j.erase("entries"); }, "entries");
  EXPECT_EQ(parse_tree("").status().code(), Code::kCorruption);
  EXPECT_EQ(parse_tree("[1,2]").status().code(), Code::kCorruption);
  EXPECT_EQ(parse_tree("{\"entries\":[1]}").status().code(), Code::kCorruption);
  EXPECT_EQ(parse_tree("{\"entries\":[{\"type\":\"file\",\"name\":\"\xff\"}]}").status().code(), Code::kCorruption);
}

// A list element nested deeper or longer than the format allows is refused
// as soon as it is seen, before the document can grow with it.
TEST(Tree, ListElementsOfTheWrongShapeAreRefusedAsTheyAreRead) {
  using J = nlohmann::json;
  expect_refused([](J& j) { j["entries"][0]["holes"] = {{0, {1, 2}}}; }, "an element of holes");
  expect_refused([](J& j) { j["entries"][0]["holes"] = {J(std::vector<int>(100, 0))}; }, "an element of holes");
  expect_refused([](J& j) { j["entries"][0]["chunks"] = J::array({J::array({J::array({1})})}); }, "an element of chunks");
  expect_refused([](J& j) { j["entries"][3]["subtree"] = {J(std::vector<int>(100, 0))}; }, "an element of subtree");
  expect_refused([](J& j) { j["entries"][0]["xattrs"][0]["name"] = {{"deep"}}; }, "an element of xattrs");
  expect_refused([](J& j) { j["entries"][0] = J(std::vector<int>(100, 0)); }, "an entry is not an object");
  expect_refused([](J& j) { j["entries"][1] = 5; }, "an entry is not an object");
  expect_refused([](J& j) { j = J(std::vector<int>(100, 0)); }, "no entries");
  // Values no field reads are dropped, however large: still accepted.
  auto j = J::parse(*serialize_tree(full_tree()));
  j["entries"][0]["future"] = J(std::vector<int>(100000, 0));
  j["later"] = {{"x", J(std::vector<int>(100000, 0))}};
  auto parsed = parse_tree(j.dump());
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  EXPECT_EQ(*parsed, full_tree());
}

// Error messages name entries; a crafted name's NUL, newline or escape
// sequence used to reach the terminal raw.
TEST(Tree, ErrorsShowControlBytesInNamesEscaped) {
  // {entry, name, as shown}: an invalid name, and names out of order (entry 0 is "base").
  const std::tuple<int, std::string, std::string> cases[] = {
      {0, std::string("a\0b", 3), "a\\x00b"},
      {1, "a\nforged: line", "a\\x0aforged: line"},
      {1, "a\x1b[2J\x7f\\", "a\\x1b[2J\\x7f\\x5c"},
  };
  for (const auto& [entry, name, shown] : cases) {
    auto j = nlohmann::json::parse(*serialize_tree(full_tree()));
    j["entries"][entry]["name"] = name;
    auto r = parse_tree(j.dump());
    ASSERT_FALSE(r.is_ok());
    const std::string& m = r.status().message();
    EXPECT_NE(m.find("('" + shown + "')"), std::string::npos) << m;
    EXPECT_TRUE(std::none_of(m.begin(), m.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; })) << m;
  }
}

TEST(Tree, TooManyEntriesAreRefusedBothWays) {
  Tree t;
  for (size_t i = 0; i <= kMaxTreeEntries; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "f%06zu", i);
    t.entries.push_back(file(name));
  }
  auto w = serialize_tree(t);
  ASSERT_FALSE(w.is_ok());
  EXPECT_EQ(w.status().code(), Code::kInvalidArgument);
  t.entries.pop_back();
  auto ok = serialize_tree(t);
  ASSERT_TRUE(ok.is_ok());
  auto j = nlohmann::json::parse(*ok);
  j["entries"].push_back(j["entries"].back());
  j["entries"].back()["name"] = "zzzz";
  auto r = parse_tree(j.dump());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
}

TEST(Tree, WriterRefusesInvalidTrees) {
  Tree t = full_tree();
  t.entries[0].name = "..";
  EXPECT_EQ(serialize_tree(t).status().code(), Code::kInvalidArgument);
  t = full_tree();
  std::swap(t.entries[0], t.entries[1]);
  EXPECT_EQ(serialize_tree(t).status().code(), Code::kInvalidArgument);
}

// Random byte damage to a serialised tree: parsing never crashes; anything it
// accepts obeys the rules (re-serialises without error).
TEST(Tree, RandomDamageNeverCrashes) {
  const std::string good = *serialize_tree(full_tree());
  std::mt19937_64 rng(5);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s = good;
    for (int k = 0; k < 1 + static_cast<int>(rng() % 3); ++k) s[rng() % s.size()] = static_cast<char>(rng() % 128);
    auto r = parse_tree(s);
    if (r.is_ok()) {
      EXPECT_TRUE(serialize_tree(*r).is_ok());
    } else {
      EXPECT_EQ(r.status().code(), Code::kCorruption);
    }
  }
}

}  // namespace
}  // namespace stowage
