// Quiescing: making a volume's contents consistent for a snapshot by pausing
// the containers that use it (cgroup freezer through the Docker API). A
// paused process cannot be mid-write, so the copy sees what it had written.
#pragma once

#include <string>
#include <vector>

#include "logger.h"
#include "stowage/status.h"

namespace stowage {

class Quiescer {
 public:
  virtual ~Quiescer() = default;
  // Pauses every running container that mounts `volume`; returns their IDs.
  // On error, containers it had already paused are unpaused again.
  [[nodiscard]] virtual Result<std::vector<std::string>> pause(const std::string& volume) = 0;
  // Unpauses `ids`: tries every one, returns the first error.
  [[nodiscard]] virtual Status unpause(const std::vector<std::string>& ids) = 0;
};

// Talks to dockerd's API socket (default /var/run/docker.sock) with libcurl.
class DockerQuiescer final : public Quiescer {
 public:
  DockerQuiescer(std::string docker_socket, Logger& log) : socket_(std::move(docker_socket)), log_(log) {}
  Result<std::vector<std::string>> pause(const std::string& volume) override;
  Status unpause(const std::vector<std::string>& ids) override;

 private:
  Result<std::string> call(const std::string& method, const std::string& path, long* status);
  std::string socket_;
  Logger& log_;
};

}  // namespace stowage
