// open_object_store(): the one place where a repository URL becomes a store
// and the standard decorators are composed around it.
#include "stowage/object_store.h"
#include "stowage/store_file.h"
#include "stowage/store_retry.h"
#include "stowage/store_s3.h"

namespace stowage {

Result<std::unique_ptr<ObjectStore>> open_object_store(std::string_view url) {
  std::unique_ptr<ObjectStore> base;
  if (url.starts_with("file://")) {
    STOWAGE_ASSIGN_OR_RETURN(base, open_file_store(std::string(url.substr(7))));
  } else if (url.starts_with("s3://")) {
    STOWAGE_ASSIGN_OR_RETURN(S3Config cfg, s3_config_from_env(url, process_env()));
    STOWAGE_ASSIGN_OR_RETURN(base, open_s3_store(std::move(cfg)));
  } else {
    return Status::invalid_argument("unsupported store URL (want file:///path or s3://bucket[/prefix]): " +
                                    std::string(url));
  }
  return std::unique_ptr<ObjectStore>(make_retrying_store(std::move(base)));
}

}  // namespace stowage
