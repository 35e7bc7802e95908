// Deterministic inputs for the backup-format tests.
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace stowage::test {

// `n` pseudo-random bytes; mt19937_64 is specified bit-exactly by the C++
// standard, so the same seed gives the same bytes everywhere.
inline std::string random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    for (int b = 0; b < 8; ++b) s[i + b] = static_cast<char>(v >> (8 * b));
  }
  for (; i < n; ++i) s[i] = static_cast<char>(rng());
  return s;
}

// Text-like, compressible bytes.
inline std::string compressible_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  static constexpr const char* kWords[] = {"stowage ", "volume ", "backup ", "chunk ", "pack ", "index\n"};
  std::string s;
  while (s.size() < n) s += kWords[rng() % 6];
  s.resize(n);
  return s;
}

}  // namespace stowage::test
