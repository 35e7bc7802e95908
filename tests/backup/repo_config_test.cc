#include "stowage/repo_config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace stowage {
namespace {

RepositoryConfig sample() {
  RepositoryConfig c;
  c.id = sha256("repo");
  c.created_ns = 1764170000123456789;
  c.compression_level = 7;
  return c;
}

TEST(RepositoryConfig, RoundTripWithDocumentedFields) {
  const RepositoryConfig c = sample();
  const Bytes text = serialize_config(c);
  const auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["format"], "stowage-repository");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["chunker"]["avg_size"], 65536);
  EXPECT_EQ(j["chunker"]["gear_seed"], kDefaultGearSeed);
  EXPECT_EQ(j["encryption"]["scheme"], "none");
  auto parsed = parse_config(text);
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  EXPECT_EQ(*parsed, c);
}

TEST(RepositoryConfig, UnknownFieldsAreIgnored) {
  auto j = nlohmann::json::parse(serialize_config(sample()));
  j["added_in_a_later_minor_release"] = {1, 2, 3};
  j["chunker"]["hint"] = "x";
  auto parsed = parse_config(j.dump());
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().to_string();
  EXPECT_EQ(*parsed, sample());
}

Status parse_status_after(const std::function<void(nlohmann::json&)>& edit) {
  auto j = nlohmann::json::parse(serialize_config(sample()));
  edit(j);
  return parse_config(j.dump()).status();
}

Code parse_code_after(const std::function<void(nlohmann::json&)>& edit) { return parse_status_after(edit).code(); }

TEST(RepositoryConfig, RefusesWhatItCannotRead) {
  using J = nlohmann::json;
  EXPECT_EQ(parse_code_after([](J& j) { j["version"] = 2; }), Code::kUnimplemented);
  EXPECT_EQ(parse_code_after([](J& j) { j["encryption"]["scheme"] = "aes-256-gcm"; }), Code::kUnimplemented);
  EXPECT_EQ(parse_code_after([](J& j) { j["required_features"] = {"sparse-v2"}; }), Code::kUnimplemented);
  EXPECT_EQ(parse_code_after([](J& j) { j["hash"] = "blake3"; }), Code::kUnimplemented);
  EXPECT_EQ(parse_code_after([](J& j) { j["chunker"]["algorithm"] = "rabin"; }), Code::kUnimplemented);
  EXPECT_EQ(parse_code_after([](J& j) { j["compression"]["algorithm"] = "lz4"; }), Code::kUnimplemented);
}

TEST(RepositoryConfig, RejectsMalformed) {
  using J = nlohmann::json;
  EXPECT_EQ(parse_config("").status().code(), Code::kCorruption);
  EXPECT_EQ(parse_config("{").status().code(), Code::kCorruption);
  EXPECT_EQ(parse_config("[]").status().code(), Code::kCorruption);
  EXPECT_EQ(parse_code_after([](J& j) { j["format"] = "restic"; }), Code::kCorruption);
  EXPECT_EQ(parse_code_after([](J& j) { j.erase("id"); }), Code::kCorruption);
  EXPECT_EQ(parse_code_after([](J& j) { j["id"] = "ABC"; }), Code::kCorruption);
  EXPECT_EQ(parse_code_after([](J& j) { j["chunker"]["avg_size"] = 1000; }), Code::kCorruption);
  EXPECT_EQ(parse_code_after([](J& j) { j["chunker"]["min_size"] = "big"; }), Code::kCorruption);
  EXPECT_EQ(parse_code_after([](J& j) { j["pack_size"] = 100; }), Code::kCorruption);
  // Not "written by a newer Stowage?": no Stowage writes version 0.
  const Status v0 = parse_status_after([](J& j) { j["version"] = 0; });
  EXPECT_EQ(v0.code(), Code::kCorruption);
  EXPECT_EQ(v0.message().find("newer"), std::string::npos) << v0.message();
}

// Integers that do not fit their field used to be taken modulo 2^32: version
// 4294967297 was read as 1, pack_size 2^32 + 1 MiB as 1 MiB.
TEST(RepositoryConfig, IntegersOutOfRangeAreRefusedNotTruncated) {
  using J = nlohmann::json;
  const uint64_t k2to32 = uint64_t{1} << 32;
  const std::pair<std::function<void(J&)>, std::string> cases[] = {
      {[&](J& j) { j["version"] = k2to32 + 1; }, "version"},
      {[&](J& j) { j["version"] = -1; }, "version"},
      {[&](J& j) { j["pack_size"] = k2to32 + (1u << 20); }, "pack_size"},
      {[&](J& j) { j["chunker"]["max_size"] = k2to32 + (256u << 10); }, "max_size"},
      {[&](J& j) { j["chunker"]["min_size"] = k2to32 + (16u << 10); }, "min_size"},
      {[&](J& j) { j["chunker"]["avg_size"] = k2to32 + (64u << 10); }, "avg_size"},
      {[&](J& j) { j["chunker"]["normalization"] = k2to32 + 2; }, "normalization"},
      {[&](J& j) { j["compression"]["level"] = k2to32 + 3; }, "level"},
      {[&](J& j) { j["created_ns"] = 1.5; }, "created_ns"},
  };
  for (const auto& [edit, field] : cases) {
    const Status s = parse_status_after(edit);
    EXPECT_EQ(s.code(), Code::kCorruption) << field << ": " << s.to_string();
    EXPECT_NE(s.message().find("'" + field + "'"), std::string::npos) << s.to_string();
  }
}

}  // namespace
}  // namespace stowage
