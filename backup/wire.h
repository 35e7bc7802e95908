// Little-endian integer encoding for the binary formats (packs, index files).
// Internal to stowage_backup.
#pragma once

#include <cstdint>
#include <string>

namespace stowage::wire {

inline void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

inline uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(p[i]);
  return v;
}

}  // namespace stowage::wire
