// JSON helpers shared by the JSON formats (trees, snapshots, leases).
// Internal to stowage_backup.
#pragma once

#include <nlohmann/json.hpp>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <string>
#include <string_view>
#include <vector>

#include "stowage/hash.h"
#include "stowage/tree.h"

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

// j[name] as T; a missing field gives `fallback` if one is given, otherwise
// an error naming the field (nlohmann's own messages do not). Integers must
// be whole numbers that fit T (nlohmann would wrap -1 into a uint32_t).
template <typename T>
T get_field(const Json& j, const char* name, const T* fallback = nullptr) {
  if (!j.is_object() || !j.contains(name)) {
    if (fallback != nullptr) return *fallback;
    throw std::invalid_argument(std::string("missing field '") + name + "'");
  }
  const Json& v = j.at(name);
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    const bool fits = std::is_unsigned_v<T>
                          ? v.is_number_unsigned() && v.get<uint64_t>() <= std::numeric_limits<T>::max()
                          : v.is_number_integer() &&
                                !(v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{INT64_MAX}) &&
                                v.get<int64_t>() >= std::numeric_limits<T>::min() &&
                                v.get<int64_t>() <= std::numeric_limits<T>::max();
    if (!fits) throw std::invalid_argument(std::string("field '") + name + "' is not a whole number in range");
  }
  try {
    return v.get<T>();
  } catch (const nlohmann::json::exception&) {
    throw std::invalid_argument(std::string("field '") + name + "' has the wrong type");
  }
}

template <typename T>
T get_optional(const Json& j, const char* name) {
  const T zero{};
  return get_field<T>(j, name, &zero);
}

// An entry's xattr list as FORMAT.md §6.2 stores it (also a snapshot's
// root, §6.1). Defined in tree.cc. The reader throws std::invalid_argument on
// a malformed list; the order and uniqueness rules are the caller's to check.
Json xattrs_to_json(const std::vector<Xattr>& xattrs);
std::vector<Xattr> xattrs_from_json(const Json& list);
// One element of that list.
Xattr xattr_from_json(const Json& xj);
// "" when the list is sorted by name, unique and every name valid.
std::string xattrs_problem(const std::vector<Xattr>& xattrs);

}  // namespace stowage::json_util
