// The `dir` volume kind: a plain directory `<volume_dir>/_data` on the state
// root's filesystem, exactly like Docker's local driver.
#pragma once

#include "stowage/volume_backend.h"

namespace stowage {

class DirBackend final : public VolumeBackend {
 public:
  std::string kind() const override { return "dir"; }
  Status provision(const std::string& volume_dir, const VolumeOptions& opts) override;
  std::string data_path(const std::string& volume_dir) const override { return volume_dir + "/_data"; }
  Result<VolumeUsage> usage(const std::string& volume_dir, uint64_t max_entries) override;
};

}  // namespace stowage
