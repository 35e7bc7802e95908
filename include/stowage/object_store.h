// ObjectStore: the seam between Stowage and wherever backups live (a local
// directory, an S3 bucket). Objects are immutable named byte strings; keys are
// '/'-separated relative paths. Retry, fault injection and concurrency limits
// are decorators with this same interface (backup/store/).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "stowage/status.h"

namespace stowage {

using Bytes = std::string;  // owned bytes; std::string for cheap interop

// What a store can promise. Callers check these instead of the store's type.
struct StoreCaps {
  bool conditional_create = false;  // put(create_only) is atomic against racers
  bool atomic_replace = true;       // readers never see a partly written object
  bool ranged_get = true;
};

struct PutOptions {
  // Fail with kAlreadyExists instead of overwriting an existing key. Only
  // guaranteed atomic where caps().conditional_create.
  bool create_only = false;
};

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;
};

// Implementations are safe for concurrent use from many threads. Every error
// says whether a retry can help (Status::retryable()); kNotFound and
// kAlreadyExists are never retryable.
class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  // Stores `data` under `key`, replacing any existing object unless
  // opts.create_only (then kAlreadyExists if `key` exists). Readers see either
  // the old or the new object, never a mix.
  [[nodiscard]] virtual Status put(std::string_view key, std::string_view data, PutOptions opts = {}) = 0;

  // Reads `length` bytes starting at `offset`; length 0 means "to the end".
  // kNotFound if absent. A range that starts past the end (offset > size) is
  // kInvalidArgument; offset == size gives empty bytes; a range that runs past
  // the end returns the bytes that exist.
  [[nodiscard]] virtual Result<Bytes> get(std::string_view key, uint64_t offset = 0, uint64_t length = 0) = 0;

  // Size of `key`, or kNotFound.
  [[nodiscard]] virtual Result<ObjectInfo> head(std::string_view key) = 0;

  // Every object whose key starts with `prefix`, sorted by key. Pagination is
  // the store's business.
  [[nodiscard]] virtual Result<std::vector<ObjectInfo>> list(std::string_view prefix) = 0;

  // Deletes `key`. Deleting a missing key is OK (idempotent).
  [[nodiscard]] virtual Status remove(std::string_view key) = 0;

  virtual StoreCaps caps() const = 0;

  // A short description for logs, never containing credentials ("file:///x", "s3://bucket/prefix").
  virtual std::string describe() const = 0;
};

// Checks that `key` is a valid object key for every store: 1..1024 bytes, no
// leading or trailing '/', no empty, "." or ".." segments, no control
// characters (bytes < 0x20 or 0x7f), and a first segment that is not
// ".stowage-tmp" (reserved by the file store). Anything else is allowed,
// including spaces, '+', '=', '%', '~' and UTF-8. kInvalidArgument otherwise.
[[nodiscard]] Status validate_object_key(std::string_view key);

// Opens a store from a URL: "file:///abs/path" or "s3://bucket[/prefix]" (endpoint,
// region and credentials come from the environment / config; see docs/STORES.md).
// Wrapped in the standard retry decorator (RetryPolicy defaults, real clock).
[[nodiscard]] Result<std::unique_ptr<ObjectStore>> open_object_store(std::string_view url);

}  // namespace stowage
