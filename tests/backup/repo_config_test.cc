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

Code parse_code_after(const std::function<void(nlohmann::json&)>& edit) {
  auto j = nlohmann::json::parse(serialize_config(sample()));
  edit(j);
  return parse_config(j.dump()).status().code();
}

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
}

}  // namespace
}  // namespace stowage
