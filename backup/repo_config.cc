#include "stowage/repo_config.h"

#include <nlohmann/json.hpp>

#include "json_util.h"

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
    // Integers through get_field: range-checked, where a bare get<uint32_t>()
    // would take 4294967297 as 1.
    using json_util::get_field;
    const auto j = json_util::Json::parse(text);
    if (!j.is_object()) return corrupt("not a JSON object");
    if (j.at("format").get<std::string>() != kFormatName) return corrupt("not a Stowage repository config");
    c.version = get_field<uint32_t>(j, "version");
    if (c.version == 0) return corrupt("format version 0 (versions start at 1)");
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
    c.created_ns = get_field<int64_t>(j, "created_ns");
    c.chunker.gear_seed = get_field<uint64_t>(ch, "gear_seed");
    c.chunker.normalization = get_field<uint32_t>(ch, "normalization");
    c.chunker.min_size = get_field<uint32_t>(ch, "min_size");
    c.chunker.avg_size = get_field<uint32_t>(ch, "avg_size");
    c.chunker.max_size = get_field<uint32_t>(ch, "max_size");
    c.compression_level = get_field<int>(comp, "level");
    c.pack_size = get_field<uint32_t>(j, "pack_size");
  } catch (const nlohmann::json::exception& e) {
    return corrupt(e.what());
  } catch (const std::invalid_argument& e) {
    return corrupt(e.what());
  }
  if (Status s = c.chunker.validate(); !s.is_ok()) return corrupt(s.message());
  if (c.pack_size < kMinPackSize || c.pack_size > kMaxPackSize) {
    return corrupt("pack_size " + std::to_string(c.pack_size) + " outside [1 MiB, 1 GiB]");
  }
  return c;
}

}  // namespace stowage
