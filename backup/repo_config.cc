#include "stowage/repo_config.h"

#include <nlohmann/json.hpp>

namespace stowage {

namespace {

constexpr std::string_view kFormatName = "stowage-repository";
constexpr std::string_view kChunkerAlgorithm = "fastcdc-2020";
constexpr uint32_t kMinPackSize = 1u << 20;
constexpr uint32_t kMaxPackSize = 1u << 30;

}  // namespace

Bytes serialize_config(const RepositoryConfig& c) {
  // ordered_json keeps the documented field order, for people reading it.
  nlohmann::ordered_json j;
  j["format"] = kFormatName;
  j["version"] = c.version;
  j["id"] = c.id.hex();
  j["created_ns"] = c.created_ns;
  j["hash"] = "sha256";
  j["chunker"] = {{"algorithm", kChunkerAlgorithm},     {"gear_seed", c.chunker.gear_seed},
                  {"normalization", c.chunker.normalization}, {"min_size", c.chunker.min_size},
                  {"avg_size", c.chunker.avg_size},         {"max_size", c.chunker.max_size}};
  j["compression"] = {{"algorithm", "zstd"}, {"level", c.compression_level}};
  j["pack_size"] = c.pack_size;
  j["encryption"] = {{"scheme", c.encryption}};
  j["required_features"] = c.required_features;
  return j.dump(2) + "\n";
}

Result<RepositoryConfig> parse_config(std::string_view text) {
  auto corrupt = [](const std::string& why) { return Status::corruption("repository config: " + why); };
  auto unsupported = [](const std::string& why) {
    return Status::unimplemented("repository config: " + why + " (written by a newer Stowage?)");
  };
  RepositoryConfig c;
  try {
    const auto j = nlohmann::json::parse(text);
    if (!j.is_object()) return corrupt("not a JSON object");
    if (j.at("format").get<std::string>() != kFormatName) return corrupt("not a Stowage repository config");
    c.version = j.at("version").get<uint32_t>();
    if (c.version != kRepositoryVersion) return unsupported("format version " + std::to_string(c.version));
    // Refusals that matter for correctness come before anything else is trusted.
    c.encryption = j.at("encryption").at("scheme").get<std::string>();
    if (c.encryption != "none") return unsupported("encryption scheme '" + c.encryption + "'");
    c.required_features = j.at("required_features").get<std::vector<std::string>>();
    if (!c.required_features.empty()) return unsupported("required feature '" + c.required_features[0] + "'");
    if (j.at("hash").get<std::string>() != "sha256") return unsupported("hash '" + j.at("hash").get<std::string>() + "'");
    const auto& ch = j.at("chunker");
    if (ch.at("algorithm").get<std::string>() != kChunkerAlgorithm) {
      return unsupported("chunker '" + ch.at("algorithm").get<std::string>() + "'");
    }
    const auto& comp = j.at("compression");
    if (comp.at("algorithm").get<std::string>() != "zstd") {
      return unsupported("compression '" + comp.at("algorithm").get<std::string>() + "'");
    }
    auto id = Hash256::from_hex(j.at("id").get<std::string>());
    if (!id.is_ok()) return corrupt(id.status().message());
    c.id = *id;
    c.created_ns = j.at("created_ns").get<int64_t>();
    c.chunker.gear_seed = ch.at("gear_seed").get<uint64_t>();
    c.chunker.normalization = ch.at("normalization").get<uint32_t>();
    c.chunker.min_size = ch.at("min_size").get<uint32_t>();
    c.chunker.avg_size = ch.at("avg_size").get<uint32_t>();
    c.chunker.max_size = ch.at("max_size").get<uint32_t>();
    c.compression_level = comp.at("level").get<int>();
    c.pack_size = j.at("pack_size").get<uint32_t>();
  } catch (const nlohmann::json::exception& e) {
    return corrupt(e.what());
  }
  if (Status s = c.chunker.validate(); !s.is_ok()) return corrupt(s.message());
  if (c.pack_size < kMinPackSize || c.pack_size > kMaxPackSize) {
    return corrupt("pack_size " + std::to_string(c.pack_size) + " outside [1 MiB, 1 GiB]");
  }
  return c;
}

}  // namespace stowage
