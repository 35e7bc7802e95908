// FileStore: an ObjectStore in a local directory, one file per object. Used as
// the embedded default repository (file:///var/lib/stowage/repo) and as the
// reference implementation in the conformance suite.
#pragma once

#include <memory>
#include <string>

#include "stowage/object_store.h"

namespace stowage {

// Opens (and creates, with parents, if missing) a store rooted at the absolute
// directory `root`. Writes are atomic and durable before put() returns: a temp
// file under <root>/.stowage-tmp is written, fsynced, then renamed (or, for
// create_only, hard-linked, which fails with EEXIST if the key exists) into
// place, and the target directory is fsynced. Keys map to relative paths under
// root and can never escape it (validate_object_key()). kInvalidArgument if
// `root` is not absolute; errno-derived statuses if it cannot be created.
//
// Caps: conditional_create, atomic_replace, ranged_get all true. A key cannot
// be both an object and a "directory" of other keys ("a" and "a/b"): the second
// put fails with kFailedPrecondition.
[[nodiscard]] Result<std::unique_ptr<ObjectStore>> open_file_store(const std::string& root);

}  // namespace stowage
