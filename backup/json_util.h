// JSON helpers shared by the JSON formats (trees, snapshots, leases).
// Internal to stowage_backup.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "stowage/hash.h"

namespace stowage::json_util {

// Insertion-ordered, so the stored key order is the documented one.
using Json = nlohmann::ordered_json;

inline Json ids_to_json(const std::vector<Hash256>& ids) {
  Json a = Json::array();
  for (const auto& id : ids) a.push_back(id.hex());
  return a;
}

// Parses one hex id; throws std::invalid_argument naming `what` so that the
// parser's catch turns it into kCorruption.
inline Hash256 id_from_json(const Json& v, std::string_view what) {
  if (!v.is_string()) throw std::invalid_argument(std::string(what) + ": an id is not a string");
  auto id = Hash256::from_hex(v.get<std::string>());
  if (!id.is_ok()) throw std::invalid_argument(std::string(what) + ": " + id.status().message());
  return *id;
}

}  // namespace stowage::json_util
