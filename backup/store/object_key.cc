// validate_object_key(): the one definition of a legal key, shared by every
// store so that a key accepted by one is accepted by all.
#include <string>

#include "stowage/object_store.h"

namespace stowage {

Status validate_object_key(std::string_view key) {
  auto bad = [&](std::string_view why) {
    return Status::invalid_argument("invalid object key '" + std::string(key) + "': " + std::string(why));
  };
  if (key.empty()) return bad("empty");
  if (key.size() > 1024) return bad("longer than 1024 bytes");
  for (unsigned char c : key) {
    if (c < 0x20 || c == 0x7f) return bad("control character");
  }
  size_t start = 0;
  bool first = true;
  while (true) {
    size_t slash = key.find('/', start);
    std::string_view seg = key.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (seg.empty()) return bad("empty path segment (leading, trailing or double '/')");
    if (seg == "." || seg == "..") return bad("'.' or '..' segment");
    if (first && seg == ".stowage-tmp") return bad("reserved first segment");
    first = false;
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return Status::ok();
}

}  // namespace stowage
