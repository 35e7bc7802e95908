// The repository config object (docs/FORMAT.md §2): format version, repository
// id, chunker parameters, compression and pack size, fixed at init. Parsing
// refuses what this build cannot read correctly (newer versions, encryption,
// unknown required features) instead of guessing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "stowage/blob.h"
#include "stowage/chunker.h"
#include "stowage/hash.h"
#include "stowage/pack.h"
#include "stowage/status.h"

namespace stowage {

inline constexpr uint32_t kRepositoryVersion = 1;
inline constexpr std::string_view kConfigKey = "config";

struct RepositoryConfig {
  uint32_t version = kRepositoryVersion;
  Hash256 id;  // random, chosen at init by the caller
  int64_t created_ns = 0;
  ChunkerParams chunker;
  int compression_level = kDefaultZstdLevel;
  uint32_t pack_size = kDefaultPackSize;
  std::string encryption = "none";
  std::vector<std::string> required_features;
  bool operator==(const RepositoryConfig&) const = default;
};

// The stored JSON (FORMAT.md §2).
Bytes serialize_config(const RepositoryConfig& config);

// Parses and validates a stored config. kUnimplemented for a version,
// algorithm, encryption scheme or required feature this build does not
// support; kCorruption for malformed JSON, missing fields or invalid values.
[[nodiscard]] Result<RepositoryConfig> parse_config(std::string_view json);

}  // namespace stowage
