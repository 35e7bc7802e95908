// Heap memory aligned for O_DIRECT, freed with std::free. One copy for the
// file object store's bounce buffer and restore's direct writes.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>

namespace stowage {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using AlignedBytes = std::unique_ptr<char[], FreeDeleter>;

// `n` bytes (rounded up to a multiple of `align`, a power of two) at an
// address that is a multiple of `align`; null when out of memory.
inline AlignedBytes aligned_bytes(size_t align, size_t n) {
  return AlignedBytes(static_cast<char*>(std::aligned_alloc(align, (n + align - 1) / align * align)));
}

}  // namespace stowage
