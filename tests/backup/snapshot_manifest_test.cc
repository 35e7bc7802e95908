#include "stowage/snapshot_manifest.h"

#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>

namespace stowage {
namespace {

SnapshotManifest sample_snapshot() {
  SnapshotManifest s;
  s.volume = "db1";
  s.hostname = "node-a";
  s.time_ns = 1764170000123456789;
  s.parent = sha256("parent");
  s.tree = {sha256("root1"), sha256("root2")};
  s.tags = {"daily"};
  s.lease_generation = 7;
  s.stats = {1234, 56, 1500000000, 120, 30000000, 9000000};
  s.program = "stowage 0.1.0";
  s.root = RootMeta{0700, 999, 998, 1764169990000000001, {{"user.a", std::string("\0\xff", 2)}, {"user.b", "x"}}};
  return s;
}

TEST(VolumeName, Rules) {
  for (const char* ok : {"db1", "a", "my_vol.2-x", "A9"}) EXPECT_TRUE(valid_volume_name(ok)) << ok;
  for (const char* bad : {"", ".", "..", "-x", "_x", "a/b", "a b", "../etc"}) {
    EXPECT_FALSE(valid_volume_name(bad)) << bad;
  }
  EXPECT_TRUE(valid_volume_name(std::string(255, 'a')));
  EXPECT_FALSE(valid_volume_name(std::string(256, 'a')));
}

TEST(Rfc3339, Formats) {
  EXPECT_EQ(format_rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
  EXPECT_EQ(format_rfc3339_ns(1764170000123456789), "2025-11-26T15:13:20.123456789Z");
  EXPECT_EQ(format_rfc3339_ns(-1), "1969-12-31T23:59:59.999999999Z");
}

TEST(SnapshotManifest, RoundTripAndFields) {
  auto text = serialize_snapshot(sample_snapshot());
  ASSERT_TRUE(text.is_ok()) << text.status().to_string();
  const auto j = nlohmann::json::parse(*text);
  EXPECT_EQ(j["time"], "2025-11-26T15:13:20.123456789Z");
  EXPECT_EQ(j["parent"], sha256("parent").hex());
  auto parsed = parse_snapshot(*text);
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  EXPECT_EQ(*parsed, sample_snapshot());

  SnapshotManifest first = sample_snapshot();
  first.parent.reset();
  auto t2 = serialize_snapshot(first);
  ASSERT_TRUE(t2.is_ok());
  EXPECT_TRUE(nlohmann::json::parse(*t2)["parent"].is_null());
  auto p2 = parse_snapshot(*t2);
  ASSERT_TRUE(p2.is_ok());
  EXPECT_EQ(*p2, first);

  SnapshotManifest bad = sample_snapshot();
  bad.volume = "../x";
  EXPECT_EQ(serialize_snapshot(bad).status().code(), Code::kInvalidArgument);
  bad = sample_snapshot();
  bad.root->mode = 010000;
  EXPECT_EQ(serialize_snapshot(bad).status().code(), Code::kInvalidArgument);
  bad = sample_snapshot();
  std::swap(bad.root->xattrs[0], bad.root->xattrs[1]);
  EXPECT_EQ(serialize_snapshot(bad).status().code(), Code::kInvalidArgument);
}

TEST(SnapshotManifest, RootRecordIsStoredAndOptional) {
  auto text = serialize_snapshot(sample_snapshot());
  ASSERT_TRUE(text.is_ok());
  const auto j = nlohmann::json::parse(*text);
  EXPECT_EQ(j["root"]["mode"], 0700);
  EXPECT_EQ(j["root"]["uid"], 999);
  EXPECT_EQ(j["root"]["gid"], 998);
  EXPECT_EQ(j["root"]["mtime_ns"], 1764169990000000001);
  ASSERT_EQ(j["root"]["xattrs"].size(), 2u);
  EXPECT_EQ(j["root"]["xattrs"][0]["name"], "user.a");
  EXPECT_EQ(j["root"]["xattrs"][0]["value_b64"], "AP8=");

  // A manifest written before the record existed reads as "no root".
  SnapshotManifest old = sample_snapshot();
  old.root.reset();
  auto t2 = serialize_snapshot(old);
  ASSERT_TRUE(t2.is_ok());
  EXPECT_FALSE(nlohmann::json::parse(*t2).contains("root"));
  auto p2 = parse_snapshot(*t2);
  ASSERT_TRUE(p2.is_ok()) << p2.status().to_string();
  EXPECT_FALSE(p2->root.has_value());
  EXPECT_EQ(*p2, old);
}

Code snapshot_code_after(const std::function<void(nlohmann::json&)>& edit) {
  auto j = nlohmann::json::parse(*serialize_snapshot(sample_snapshot()));
  edit(j);
  return parse_snapshot(j.dump()).status().code();
}

TEST(SnapshotManifest, RefusesBadInput) {
  using J = nlohmann::json;
  EXPECT_EQ(snapshot_code_after([](J& j) { j["extra"] = 1; }), Code::kOk);
  EXPECT_EQ(snapshot_code_after([](J& j) { j["version"] = 2; }), Code::kUnimplemented);
  EXPECT_EQ(snapshot_code_after([](J& j) { j["volume"] = "../../etc"; }), Code::kCorruption);
  EXPECT_EQ(snapshot_code_after([](J& j) { j["tree"] = {"zz"}; }), Code::kCorruption);
  EXPECT_EQ(snapshot_code_after([](J& j) { j["tree"] = {5}; }), Code::kCorruption);
  EXPECT_EQ(snapshot_code_after([](J& j) { j["parent"] = 5; }), Code::kCorruption);
  EXPECT_EQ(snapshot_code_after([](J& j) { j.erase("time_ns"); }), Code::kCorruption);
  EXPECT_EQ(parse_snapshot("not json").status().code(), Code::kCorruption);
  // The root record: every field a restore applies is checked before it is used.
  EXPECT_EQ(snapshot_code_after([](J& j) { j["root"] = nullptr; }), Code::kOk);
  EXPECT_EQ(snapshot_code_after([](J& j) { j["root"]["mode"] = 010000; }), Code::kCorruption);
  EXPECT_EQ(snapshot_code_after([](J& j) { j["root"]["uid"] = -1; }), Code::kCorruption);
  EXPECT_EQ(snapshot_code_after([](J& j) { j["root"].erase("gid"); }), Code::kCorruption);
  EXPECT_EQ(snapshot_code_after([](J& j) { j["root"]["mtime_ns"] = "yesterday"; }), Code::kCorruption);
  EXPECT_EQ(snapshot_code_after([](J& j) { j["root"]["xattrs"] = 3; }), Code::kCorruption);
  EXPECT_EQ(snapshot_code_after([](J& j) { j["root"]["xattrs"][0]["value_b64"] = "!!"; }), Code::kCorruption);
  EXPECT_EQ(snapshot_code_after([](J& j) { j["root"]["xattrs"][1]["name"] = "user.a"; }), Code::kCorruption);
  EXPECT_EQ(snapshot_code_after([](J& j) { j["root"]["xattrs"][0]["name"] = ""; }), Code::kCorruption);
}

Lease sample_lease() {
  Lease l;
  l.volume = "db1";
  l.generation = 7;
  l.holder = {"node-a", "3f00", 4242};
  l.acquired_ns = 1000;
  l.expires_ns = 2000;
  l.nonce = "a1b2";
  l.renewal = 3;
  l.ttl_ns = 1000;
  return l;
}

TEST(Lease, RoundTripKeysAndHeld) {
  auto text = serialize_lease(sample_lease());
  ASSERT_TRUE(text.is_ok());
  auto parsed = parse_lease(*text);
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  EXPECT_EQ(*parsed, sample_lease());

  EXPECT_EQ(lease_key("db1", 7), "leases/db1/00000000000000000007");
  auto g = lease_generation_from_key("db1", lease_key("db1", 18446744073709551615ull));
  ASSERT_TRUE(g.is_ok());
  EXPECT_EQ(*g, 18446744073709551615ull);
  EXPECT_FALSE(lease_generation_from_key("db1", "leases/db10/00000000000000000007").is_ok());
  EXPECT_FALSE(lease_generation_from_key("db1", "leases/db1/0000000000000000000x").is_ok());
  EXPECT_FALSE(lease_generation_from_key("db1", "leases/db1/7").is_ok());
  EXPECT_FALSE(lease_generation_from_key("db1", "leases/db1/99999999999999999999").is_ok());

  Lease l = sample_lease();
  EXPECT_TRUE(l.held_at(1999));
  EXPECT_FALSE(l.held_at(2000));
  l.released = true;
  EXPECT_FALSE(l.held_at(1500));
}

TEST(Lease, RefusesBadInput) {
  Lease l = sample_lease();
  l.generation = 0;
  EXPECT_EQ(serialize_lease(l).status().code(), Code::kInvalidArgument);
  l = sample_lease();
  l.volume = "a/b";
  EXPECT_EQ(serialize_lease(l).status().code(), Code::kInvalidArgument);

  auto j = nlohmann::json::parse(*serialize_lease(sample_lease()));
  j["version"] = 9;
  EXPECT_EQ(parse_lease(j.dump()).status().code(), Code::kUnimplemented);
  j["version"] = 1;
  j["generation"] = 0;
  EXPECT_EQ(parse_lease(j.dump()).status().code(), Code::kCorruption);
  j["generation"] = 3;
  j["released"] = "no";
  EXPECT_EQ(parse_lease(j.dump()).status().code(), Code::kCorruption);
  j["released"] = false;
  j["volume"] = "..";
  EXPECT_EQ(parse_lease(j.dump()).status().code(), Code::kCorruption);
}

}  // namespace
}  // namespace stowage
